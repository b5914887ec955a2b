"""Plain HTTP routes next to the UI: /metrics (Prometheus), /stats.json, /healthz."""

from __future__ import annotations

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from app.clients import Services
from app.services.observability import stats_snapshot


def build_routes(services: Services) -> list[Route]:
    async def metrics(request: Request) -> Response:
        body = generate_latest(services.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def stats(request: Request) -> Response:
        return Response(orjson.dumps(stats_snapshot(services)), media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status": "ok"}', media_type="application/json")

    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/stats.json", stats, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]


def add_routes(app: ASGIApp, services: Services) -> None:
    """Put our routes first, ahead of Gradio's catch-all ones."""
    for route in reversed(build_routes(services)):
        app.router.routes.insert(0, route)  # type: ignore[attr-defined]
