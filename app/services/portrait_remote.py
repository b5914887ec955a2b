"""OpenAI-compatible media endpoints: ``/v1/images/generations`` (portraits) and the
HTTP client that ``voice_remote`` shares for ``/v1/audio/speech``.

httpx is imported on first use. Errors become ``BackendError`` subclasses with
the API key redacted, so a failed call can be shown and logged; the callers
fall back to the offline portrait or voice.
"""

from __future__ import annotations

import base64
import contextlib
import io
from typing import TYPE_CHECKING, Any

from app.errors import BackendError, BackendResponseError, BackendUnavailableError
from app.logs import redact

if TYPE_CHECKING:
    import httpx

PORTRAIT_SIZE = 512


class MediaClient:
    """POSTs JSON to one OpenAI-compatible server; one httpx pool per event loop."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._timeout = timeout
        self._clients: dict[int, httpx.AsyncClient] = {}

    def _client(self) -> httpx.AsyncClient:
        import asyncio

        import httpx

        loop = id(asyncio.get_running_loop())
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
            client = httpx.AsyncClient(timeout=self._timeout, headers=headers)
            self._clients[loop] = client
        return client

    def _secrets(self) -> list[str]:
        return [self._key] if self._key else []

    async def post(self, name: str, path: str, payload: dict[str, Any]) -> httpx.Response:
        """The server's answer to a POST of ``payload``; raises BackendError on failure."""
        import httpx

        try:
            response = await self._client().post(f"{self.base_url}{path}", json=payload)
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(name, redact(f"{exc!r}", self._secrets())) from None
        if response.status_code >= 400:
            text = redact(response.text[:300], self._secrets())
            raise BackendResponseError(
                name, f"HTTP {response.status_code}: {text}", status=response.status_code
            )
        return response

    async def get_bytes(self, name: str, url: str) -> bytes:
        import httpx

        try:
            response = await self._client().get(url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(name, redact(f"{exc!r}", self._secrets())) from None
        return response.content

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing to close
                await client.aclose()


def normalised_png(data: bytes, name: str) -> bytes:
    """Any image the server sent, as a square 512x512 PNG (centre-cropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        image = image.resize((PORTRAIT_SIZE, PORTRAIT_SIZE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise BackendError(name, f"the server's image cannot be read ({exc})") from None


class ImagePainter:
    """Paints a portrait from a prompt through ``/v1/images/generations``."""

    def __init__(self, client: MediaClient, model: str, size: str) -> None:
        self.client = client
        self.model = model
        self.size = size
        self.name = f"images:{model}"

    @property
    def identity(self) -> str:
        """What makes two paintings of one prompt differ (part of the cache key)."""
        return f"{self.client.base_url}|{self.model}|{self.size}"

    async def paint(self, prompt: str) -> bytes:
        payload: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": 1, "size": self.size}
        if not self.model.startswith("gpt-image"):  # those answer b64 only and refuse the key
            payload["response_format"] = "b64_json"
        response = await self.client.post(self.name, "/images/generations", payload)
        try:
            item = response.json()["data"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendError(self.name, "the answer has no image in data[0]") from None
        if item.get("b64_json"):
            try:
                raw = base64.b64decode(item["b64_json"])
            except ValueError:
                raise BackendError(self.name, "b64_json is not base64") from None
        elif item.get("url"):
            raw = await self.client.get_bytes(self.name, str(item["url"]))
        else:
            raise BackendError(self.name, "the answer has neither b64_json nor url")
        return normalised_png(raw, self.name)
