"""Portraits and play buttons on cards, and the routes that serve them.

``CardMedia`` is what the card renderer is handed: the portrait as an inline
SVG data URI (no request, no lookup, shown with the card) and, per sample
line, the URL of ``/media/voice.ogg?voice=KEY&text=LINE``, a route that needs
nothing but its query: the voice key says how to speak, the response cache
holds what was spoken. ``/media/portrait/NPC_ID.png|.svg`` serves a library
NPC's portrait (painted when configured). With sign-in on, both answer only
a signed-in user (see ``sessions``), as the UI does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from app.errors import NPCForgeError
from app.models import NPC
from app.services.admission import Admission
from app.services.library import Library
from app.services.portraits import Portraits
from app.services.voices import Voices, parse_voice_key
from app.ui.sessions import Session, nobody_signs_in, refusal

VOICE_ROUTE = "/media/voice.ogg"
# Spoken lines and portraits are content-addressed: a URL always means the same bytes.
CACHE_CONTROL = "public, max-age=86400"


class CardMedia:
    """The portrait and the play-button URLs of a card."""

    def __init__(self, portraits: Portraits, voices: Voices) -> None:
        self.portraits = portraits
        self.voices = voices

    def portrait_uri(self, npc: NPC) -> str:
        return self.portraits.procedural(npc).data_uri()

    def line_url(self, npc: NPC, line: str) -> str:
        voice = self.voices.voice_for(npc)
        return f"{VOICE_ROUTE}?voice={quote(voice.key, safe='')}&text={quote(line, safe='')}"

    def cast_finished(self, npcs: Sequence[NPC]) -> None:
        """Speak the new NPCs' sample lines in the background (the cards are out)."""
        self.voices.warm_soon(npcs)


# The library as that user sees it.
Scope = Callable[[Library, str, Request], Library]


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def ranged(request: Request, data: bytes, media_type: str) -> Response:
    """``data``, or the one byte range asked for (206). A browser learns an Ogg
    file's length by reading its last page: without ranges the player shows
    0:00 / 0:00 until the whole line has played."""
    headers = {"Cache-Control": CACHE_CONTROL, "Accept-Ranges": "bytes"}
    found = _RANGE.fullmatch(request.headers.get("range", "").strip())
    if found is None or not any(found.groups()):
        return Response(data, media_type=media_type, headers=headers)
    first, last = found.groups()
    if not first:  # "bytes=-500": the last 500 bytes
        start, end = max(0, len(data) - int(last)), len(data) - 1
    else:
        start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
    if start >= len(data) or start > end:
        return Response(
            status_code=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"}
        )
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return Response(data[start : end + 1], status_code=206, media_type=media_type, headers=headers)


def admission_scope(admission: Admission) -> Scope:
    def scope(library: Library, user: str, request: Request) -> Library:
        host = request.client.host if request.client else None
        return library.as_seen_by(admission.viewer(admission.caller(user or None, host)))

    return scope


def build_media_routes(
    portraits: Portraits,
    voices: Voices,
    library: Library,
    session: Session = nobody_signs_in,
    scope: Scope = lambda library, user, request: library,
) -> list[Route]:
    async def voice(request: Request) -> Response:
        if await session(request) is None:
            return refusal()
        try:
            speech = await voices.say_as(
                parse_voice_key(request.query_params.get("voice", "")),
                request.query_params.get("text"),
            )
        except NPCForgeError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return ranged(request, speech.audio, speech.mime)

    async def portrait(request: Request) -> Response:
        user = await session(request)
        if user is None:
            return refusal()
        npc_id, kind = request.path_params["npc_id"], request.path_params["kind"]
        try:
            npc = await scope(library, user, request).get(npc_id)
            if kind == "svg":
                return Response(portraits.svg(npc), media_type="image/svg+xml")
            image = await portraits.png(npc)
        except NPCForgeError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return Response(image.png, media_type="image/png")

    return [
        Route(VOICE_ROUTE, voice, methods=["GET"]),
        Route("/media/portrait/{npc_id}.{kind:str}", portrait, methods=["GET"]),
    ]


def add_media_routes(
    app: ASGIApp,
    portraits: Portraits,
    voices: Voices,
    library: Library,
    admission: Admission | None = None,
    session: Session = nobody_signs_in,
) -> None:
    """Put the media routes ahead of Gradio's catch-all ones; a portrait is served
    to whoever may see its NPC in the library."""
    if admission is None:
        routes = build_media_routes(portraits, voices, library, session)
    else:
        routes = build_media_routes(portraits, voices, library, session, admission_scope(admission))
    for route in reversed(routes):
        app.router.routes.insert(0, route)  # type: ignore[attr-defined]
