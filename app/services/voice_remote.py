"""Speech through an OpenAI-compatible ``/v1/audio/speech`` endpoint (Ogg Opus)."""

from __future__ import annotations

from app.errors import BackendError
from app.services.portrait_remote import MediaClient

OGG_MAGIC = b"OggS"


class RemoteSpeaker:
    def __init__(self, client: MediaClient, model: str) -> None:
        self.client = client
        self.model = model
        self.name = f"speech:{model}"

    @property
    def identity(self) -> str:
        return f"{self.client.base_url}|{self.model}"

    async def speak(self, text: str, voice: str, speed: float) -> bytes:
        payload = {
            "model": self.model,
            "input": text,
            "voice": voice,
            "response_format": "opus",
            "speed": round(speed, 2),
        }
        response = await self.client.post(self.name, "/audio/speech", payload)
        audio = response.content
        if not audio.startswith(OGG_MAGIC):
            raise BackendError(self.name, "the server did not answer with Ogg Opus audio")
        return audio
