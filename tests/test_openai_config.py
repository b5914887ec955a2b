"""A missing API key fails once, at construction, with one line saying what to set."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.backends.base import JSONRequest
from app.backends.openai_compat import PLACEHOLDER_API_KEY, OpenAIBackend
from app.errors import ConfigError
from config import Settings
from tests.conftest import make_settings
from tests.fake_openai import FakeOpenAIServer

REQUEST = JSONRequest(task="npc_profile", messages=[], schema={"type": "object"}, inputs={})


def test_no_key_and_no_server_fails_at_construction(settings: Settings) -> None:
    with pytest.raises(ConfigError) as caught:
        OpenAIBackend(settings)
    message = str(caught.value)
    assert "\n" not in message
    assert "OPENAI_API_KEY" in message and "NPC_FORGE_OPENAI_BASE_URL" in message


def test_an_empty_key_counts_as_none(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIBackend(make_settings(tmp_path, openai_api_key=""))


def test_the_environment_is_read_by_settings_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend takes the key from its settings; a variable set later is not seen."""
    settings = make_settings(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-set-after-the-settings")
    with pytest.raises(ConfigError):
        OpenAIBackend(settings)


async def _authorization(backend: OpenAIBackend, server: FakeOpenAIServer) -> str:
    try:
        await backend.complete_json(REQUEST)
    finally:
        await backend.aclose()
    return server.headers[-1]["authorization"]


async def test_the_key_from_settings_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAIServer
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")  # config.py maps it
    backend = OpenAIBackend(make_settings(tmp_path, openai_base_url=openai_server.base_url))
    assert await _authorization(backend, openai_server) == "Bearer sk-from-the-environment"


async def test_a_local_server_needs_no_key(tmp_path: Path, openai_server: FakeOpenAIServer) -> None:
    backend = OpenAIBackend(make_settings(tmp_path, openai_base_url=openai_server.base_url))
    assert await _authorization(backend, openai_server) == f"Bearer {PLACEHOLDER_API_KEY}"
