"""Painted portraits and spoken lines through an OpenAI-compatible media server
(tests/fake_media_server.py); the offline portrait and voice stay the fallback."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from app.models import NPC
from app.services.voices import API_VOICES
from app.wiring import Services
from tests.conftest import MakeServices, make_settings
from tests.fake_media_server import FakeMediaServer
from tests.test_portraits import npc

SECRET = "sk-media-secret-456"


@pytest.fixture(scope="module")
def media_server() -> Iterator[FakeMediaServer]:
    with FakeMediaServer() as server:
        yield server


@pytest.fixture
def media(media_server: FakeMediaServer, tmp_path: Path, make_services: MakeServices) -> Services:
    media_server.reset()
    settings = make_settings(
        tmp_path,
        media_base_url=media_server.base_url,
        openai_api_key=SECRET,
        images_model="fake-image",
        speech_model="fake-tts",
    )
    return make_services(settings)


async def test_a_painted_portrait_is_asked_with_the_appearance_and_cached(
    media: Services, media_server: FakeMediaServer
) -> None:
    first = await media.portraits.png(npc())
    again = await media.portraits.png(npc(backstory="Not drawn from this."))
    assert first.painted and first.source == "computed" and again.source == "memory"
    assert media_server.paths() == ["/v1/images/generations"]
    body = media_server.requests[0][1]
    assert "bristling grey beard" in body["prompt"] and "Ashmere Vale" in body["prompt"]
    assert body["model"] == "fake-image" and body["response_format"] == "b64_json"
    assert media_server.headers[0]["authorization"] == f"Bearer {SECRET}"
    with Image.open(io.BytesIO(first.png)) as image:
        assert image.size == (512, 512)  # the server's 1024 square, scaled
    assert first.png != media.portraits.procedural_png(npc())


async def test_a_failed_painting_falls_back_to_the_drawn_portrait(
    media: Services, media_server: FakeMediaServer
) -> None:
    media_server.fail(500)
    image = await media.portraits.png(npc())
    assert not image.painted and "HTTP 500" in image.note and SECRET not in image.note
    assert image.png == media.portraits.procedural_png(npc())
    assert (await media.portraits.png(npc(), kind="procedural")).source == "memory"


async def test_lines_are_spoken_by_the_speech_api_then_cached(
    media: Services, media_server: FakeMediaServer
) -> None:
    speech = await media.voices.say(npc(), "Mind the anvil.")
    again = await media.voices.say(npc(), "Mind the anvil.")
    assert speech.remote and speech.audio.startswith(b"OggS") and again.source == "memory"
    ((path, body),) = media_server.requests
    assert path == "/v1/audio/speech" and body["response_format"] == "opus"
    assert body["voice"] in API_VOICES["m"] and body["input"] == "Mind the anvil."


async def test_a_failed_speech_call_speaks_offline(
    media: Services, media_server: FakeMediaServer
) -> None:
    media_server.fail(503)
    speech = await media.voices.say(npc(), "Mind the anvil.")
    assert not speech.remote and speech.audio.startswith(b"OggS")
    assert speech.voice.startswith("espeak:")


async def test_chat_shows_the_drawn_portrait_while_the_painting_runs(
    media: Services, media_server: FakeMediaServer, tmp_path: Path
) -> None:
    from app.ui.media_panel import MediaHandlers
    from app.ui.media_routes import CardMedia

    one = npc()

    async def get(npc_id: str) -> NPC:
        return one

    media.library.get = get  # type: ignore[method-assign]
    handlers = MediaHandlers(CardMedia(media.portraits, media.voices), media.library, tmp_path)
    shown = [Path(face).read_bytes() async for face, _ in handlers.portrait(one.id)]
    assert shown[0] == media.portraits.procedural_png(one)
    assert len(shown) == 2 and shown[1] != shown[0]
    assert media_server.paths() == ["/v1/images/generations"]
