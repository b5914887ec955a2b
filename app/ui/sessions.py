"""Who sent a plain HTTP request to the routes beside Gradio's (Gradio guards
only its own): a signed-in browser (Gradio's session cookie) or, for scripts,
scrapers and ``curl``, HTTP Basic credentials of an account."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from cachetools import TTLCache
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app.services.accounts import Accounts

# The user of a request: "" when nobody signs in, the user's name, or None (not signed in).
Session = Callable[[Request], Awaitable[str | None]]
# Basic credentials checked once are trusted this long: a scrape every 15 s must
# not pay a password hash (hundreds of milliseconds) every time.
VERIFIED_FOR_S = 300.0


async def nobody_signs_in(request: Request) -> str | None:
    return ""


def _cookie_user(app: Any, request: Request) -> str | None:
    cookie_id = getattr(app, "cookie_id", "")
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
        f"access-token-unsecure-{cookie_id}"
    )
    name = getattr(app, "tokens", {}).get(token) if token is not None else None
    return str(name) if name else None


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        name, colon, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, ValueError):  # not base64, or not UTF-8
        return None
    return (name, password) if colon else None


def signed_in(app: Any, accounts: Accounts) -> Session:
    """The signed-in user of a request to ``app`` (a Gradio app)."""
    verified: TTLCache[str, str] = TTLCache(maxsize=64, ttl=VERIFIED_FOR_S)

    async def user(request: Request) -> str | None:
        if getattr(app, "auth", None) is None:
            return ""
        name = _cookie_user(app, request)
        credentials = _basic(request) if name is None else None
        if credentials is None:
            return name
        digest = hashlib.sha256(repr(credentials).encode()).hexdigest()
        if digest not in verified:
            # The hash takes a while: off the event loop that streams everyone's NPCs.
            if not await asyncio.to_thread(accounts.check, *credentials):
                return None
            verified[digest] = credentials[0]
        return verified[digest]

    return user


def refusal() -> Response:
    """What a request gets before it signs in (a browser asks for credentials)."""
    return PlainTextResponse(
        "Sign in first: open the app and sign in, or send an account's credentials (HTTP Basic).",
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="NPC Forge"'},
    )
