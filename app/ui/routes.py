"""Plain HTTP routes next to the UI: /metrics (Prometheus), /stats.json, /healthz.

Collecting reads cache directories, so it runs in a thread: a scrape never
blocks the event loop that streams NPCs. With sign-in on, the figures (which
name the users in their quota rows) answer only a signed-in user: a browser
session, or an account's HTTP Basic credentials (Prometheus ``basic_auth``,
``python main.py stats --auth``); /healthz answers everyone.
"""

from __future__ import annotations

import asyncio

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from app.services.observability import ObservabilityService
from app.ui.sessions import Session, nobody_signs_in, refusal


def build_routes(
    observability: ObservabilityService, session: Session = nobody_signs_in
) -> list[Route]:
    async def metrics(request: Request) -> Response:
        if await session(request) is None:
            return refusal()
        body = await asyncio.to_thread(observability.prometheus)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def stats(request: Request) -> Response:
        if await session(request) is None:
            return refusal()
        snapshot = await asyncio.to_thread(observability.snapshot)
        return Response(orjson.dumps(snapshot), media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status": "ok"}', media_type="application/json")

    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/stats.json", stats, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]


def add_routes(
    app: ASGIApp, observability: ObservabilityService, session: Session = nobody_signs_in
) -> None:
    """Put our routes first, ahead of Gradio's catch-all ones."""
    for route in reversed(build_routes(observability, session)):
        app.router.routes.insert(0, route)  # type: ignore[attr-defined]
