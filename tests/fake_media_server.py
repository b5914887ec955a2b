"""A fake OpenAI-compatible media server on 127.0.0.1: ``POST /v1/images/generations``
(a real PNG, coloured by the prompt, as ``b64_json``) and ``POST /v1/audio/speech``
(real Ogg Opus: a tone as long as the text would take to say). Tests queue failures
with ``fail(status)``; every request body and its headers are recorded."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections import deque
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.threaded_server import ThreadedServer


def painted_png(prompt: str, size: int = 1024) -> bytes:
    from PIL import Image

    colour = tuple(hashlib.blake2b(prompt.encode(), digest_size=3).digest())
    image = Image.new("RGB", (size, size), colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def spoken_ogg(text: str) -> bytes:
    import numpy as np
    import soundfile

    seconds = max(0.3, len(text) / 15)
    t = np.arange(int(24_000 * seconds)) / 24_000
    tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, tone, 24_000, format="OGG", subtype="OPUS")
    return buffer.getvalue()


class FakeMediaServer:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.failures: deque[int] = deque()
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route("/v1/images/generations", self._images, methods=["POST"]),
                Route("/v1/audio/speech", self._speech, methods=["POST"]),
            ]
        )
        self.http = ThreadedServer(app, "fake media server")
        self.port = self.http.port

    @property
    def base_url(self) -> str:
        return self.http.base_url

    def fail(self, status: int, *, times: int = 1) -> None:
        with self._lock:
            self.failures.extend([status] * times)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self.failures.clear()

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    async def _record(self, request: Request) -> tuple[dict[str, Any], int | None]:
        body = await request.json()
        with self._lock:
            self.requests.append((request.url.path, body))
            self.headers.append(dict(request.headers))
            failure = self.failures.popleft() if self.failures else None
        return body, failure

    async def _images(self, request: Request) -> Response:
        body, failure = await self._record(request)
        if failure:
            return JSONResponse({"error": {"message": "fake image failure"}}, status_code=failure)
        width = int(str(body.get("size", "1024x1024")).split("x")[0])
        png = painted_png(str(body["prompt"]), width)
        return JSONResponse({"created": 0, "data": [{"b64_json": base64.b64encode(png).decode()}]})

    async def _speech(self, request: Request) -> Response:
        body, failure = await self._record(request)
        if failure:
            return JSONResponse({"error": {"message": "fake speech failure"}}, status_code=failure)
        return Response(spoken_ogg(str(body["input"])), media_type="audio/ogg")

    def __enter__(self) -> FakeMediaServer:
        self.http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.stop()
