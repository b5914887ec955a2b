"""The API key never leaves through error text, even when the server echoes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.backends.base import ChatRequest, JSONRequest
from app.backends.guard import GuardedBackend, RetryPolicy
from app.backends.openai_compat import OpenAIBackend
from app.errors import BackendError, BackendResponseError, CircuitOpenError
from config import Settings
from tests.conftest import FakeSleep, make_settings
from tests.fake_openai import Action, FakeOpenAIServer

REQUEST = JSONRequest(
    task="npc_profile",
    messages=[{"role": "user", "content": "An NPC, please."}],
    schema={"type": "object"},
    inputs={},
)
# One key that looks like a key, one that only the configured value can catch.
KEYS = ("sk-test-secret-123", "plain-local-token-4711")


def _settings(tmp_path: Path, server: FakeOpenAIServer, key: str) -> Settings:
    return make_settings(
        tmp_path,
        backend="openai",
        openai_base_url=server.base_url,
        openai_api_key=key,
        openai_model="fake-model",
        openai_timeout=5.0,
    )


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("status", [400, 500, 503])
async def test_an_echoed_key_is_not_in_the_error(
    tmp_path: Path, openai_server: FakeOpenAIServer, key: str, status: int
) -> None:
    openai_server.enqueue(Action(status=status, echo_headers=True))
    backend = OpenAIBackend(_settings(tmp_path, openai_server, key))
    try:
        with pytest.raises(BackendResponseError) as caught:
            await backend.complete_json(REQUEST)
    finally:
        await backend.aclose()
    message = str(caught.value)
    assert f"HTTP {status}" in message and "request headers" in message  # the body was there
    assert key not in message and "Bearer" not in message.replace("Bearer ***", "")


@pytest.mark.parametrize("key", KEYS)
async def test_an_echoed_key_is_not_in_a_stream_error(
    tmp_path: Path, openai_server: FakeOpenAIServer, key: str
) -> None:
    openai_server.enqueue(Action(stream_error="model crashed", echo_headers=True))
    backend = OpenAIBackend(_settings(tmp_path, openai_server, key))
    try:
        with pytest.raises(BackendResponseError, match="model crashed") as caught:
            await backend.complete_json(REQUEST)
        openai_server.enqueue(Action(stream_error="model crashed", echo_headers=True))
        with pytest.raises(BackendResponseError) as chat_caught:
            async for _ in backend.stream_chat(ChatRequest([{"role": "user", "content": "hi"}])):
                pass
    finally:
        await backend.aclose()
    assert key not in str(caught.value) and key not in str(chat_caught.value)


@pytest.mark.parametrize("key", KEYS)
async def test_an_echoed_key_is_not_in_the_circuit_open_message(
    tmp_path: Path, openai_server: FakeOpenAIServer, fake_sleep: FakeSleep, key: str
) -> None:
    openai_server.enqueue(*(Action(status=500, echo_headers=True) for _ in range(2)))
    backend = OpenAIBackend(_settings(tmp_path, openai_server, key))
    guard = GuardedBackend(
        backend,
        concurrency=1,
        requests_per_minute=None,
        retry=RetryPolicy(max_retries=0),
        breaker_threshold=2,
        sleep=fake_sleep,
    )
    try:
        for _ in range(2):
            with pytest.raises(BackendResponseError):
                await guard.complete_json(REQUEST)
        with pytest.raises(CircuitOpenError) as caught:
            await guard.complete_json(REQUEST)
    finally:
        await backend.aclose()
    assert "request headers" in str(caught.value)  # the last error is quoted...
    assert key not in str(caught.value)  # ...without the key
    assert key not in guard.breaker.last_error


def test_backend_errors_mask_key_like_text_by_construction() -> None:
    error = BackendError(
        "openai:x", 'HTTP 500: {"authorization": "Bearer abc.def-123456", "api_key=sk-12345678"}'
    )
    message = str(error)
    assert "abc.def-123456" not in message and "sk-12345678" not in message
    assert message.startswith("openai:x: HTTP 500")
