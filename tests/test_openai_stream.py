"""The openai backend's streams: a whole-call deadline, cut and truncated streams
as retryable transport errors, and json_object only when the server says so."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.backends.base import ChatRequest, JSONRequest
from app.backends.openai_compat import (
    OpenAIBackend,
    StreamEnd,
    _content_deltas,
    rejects_json_schema,
)
from app.errors import BackendError, BackendResponseError, BackendUnavailableError
from config import Settings
from tests.conftest import FakeSleep, make_settings
from tests.doubles import guarded
from tests.fake_openai import Action, FakeOpenAIServer
from tests.npc_fixtures import valid_profile

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
REQUEST = JSONRequest(
    task="npc_profile",
    messages=[{"role": "system", "content": "You write NPCs."}],
    schema=SCHEMA,
    inputs={"name": "Ada"},
)
PROFILE = json.dumps(valid_profile("Ada"))


@pytest.fixture
async def backend(openai_settings: Settings) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(openai_settings)
    yield backend
    await backend.aclose()


async def test_the_timeout_bounds_a_trickling_stream(
    tmp_path: Path, openai_server: FakeOpenAIServer
) -> None:
    """Whitespace one byte at a time for seconds: each read is quick, the call is not."""
    settings = make_settings(
        tmp_path, backend="openai", openai_base_url=openai_server.base_url, openai_timeout=0.3
    )
    openai_server.enqueue(Action(content=" " * 400, chunk_size=1, chunk_delay=0.02))
    backend = OpenAIBackend(settings)
    try:
        with pytest.raises(BackendUnavailableError, match=r"within 0\.3 s") as caught:
            await backend.complete_json(REQUEST)
    finally:
        await backend.aclose()
    assert caught.value.retryable


@pytest.mark.parametrize(
    "action",
    [
        Action(content=PROFILE, stop_after_chunks=3, stream_end="truncated"),
        Action(content=PROFILE, stop_after_chunks=3, stream_end="none"),
        Action(content=PROFILE, stop_after_chunks=3, stream_end="cut"),
    ],
    ids=["truncated-last-event", "no-end-marker", "connection-cut"],
)
async def test_a_stream_cut_short_is_retryable_not_invalid_output(
    backend: OpenAIBackend, openai_server: FakeOpenAIServer, action: Action
) -> None:
    openai_server.enqueue(action)
    with pytest.raises(BackendUnavailableError) as caught:
        await backend.complete_json(REQUEST)
    assert caught.value.retryable


async def test_a_complete_object_is_kept_when_only_the_end_marker_is_lost(
    backend: OpenAIBackend, openai_server: FakeOpenAIServer
) -> None:
    openai_server.enqueue(Action(content=PROFILE, stream_end="truncated"))
    reply = await backend.complete_json(REQUEST)
    assert reply.ok and reply.data["name"] == "Ada"


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_only_the_last_event_may_be_cut_off() -> None:
    """A broken event with more after it is the server's bug, not a cut in transit."""
    end = StreamEnd()
    deltas = _content_deltas(_lines('data: {"choices": [', "", "data: [DONE]"), "b", (), end)
    with pytest.raises(BackendError, match="malformed stream event") as caught:
        async for _ in deltas:
            pass
    assert not isinstance(caught.value, BackendUnavailableError)
    end = StreamEnd()
    async for _ in _content_deltas(_lines('data: {"choices": ['), "b", (), end):
        pass
    assert end.truncated and not end.finished


async def test_an_error_event_stays_an_error(
    backend: OpenAIBackend, openai_server: FakeOpenAIServer
) -> None:
    openai_server.enqueue(Action(content=PROFILE, stop_after_chunks=2, stream_error="overloaded"))
    with pytest.raises(BackendResponseError, match="error during the stream: overloaded"):
        await backend.complete_json(REQUEST)


async def test_the_guard_retries_a_cut_stream_instead_of_repairing(
    backend: OpenAIBackend, openai_server: FakeOpenAIServer, fake_sleep: FakeSleep
) -> None:
    openai_server.enqueue(Action(content=PROFILE, stop_after_chunks=3, stream_end="truncated"))
    reply = await guarded(backend, fake_sleep).complete_json(REQUEST)
    # Retried as a transport error, not handed back as invalid output to repair.
    assert reply.ok and reply.stats["attempts"] == 2
    assert len(openai_server.requests) == 2


async def test_a_chat_stream_cut_short_says_so(
    backend: OpenAIBackend, openai_server: FakeOpenAIServer
) -> None:
    openai_server.enqueue(
        Action(content="Well met, stranger.", stop_after_chunks=1, stream_end="none")
    )
    parts: list[str] = []
    with pytest.raises(BackendUnavailableError, match="ended before the reply"):
        async for part in backend.stream_chat(ChatRequest([{"role": "user", "content": "hi"}])):
            parts.append(part)
    assert parts == ["Well met"]


def _formats(server: FakeOpenAIServer) -> list[str]:
    return [body["response_format"]["type"] for body in server.requests]


async def test_one_server_error_does_not_switch_to_json_object(
    backend: OpenAIBackend, openai_server: FakeOpenAIServer
) -> None:
    openai_server.fail(500)
    with pytest.raises(BackendResponseError, match="HTTP 500") as caught:
        await backend.complete_json(REQUEST)
    assert caught.value.retryable
    assert (await backend.complete_json(REQUEST)).ok
    assert _formats(openai_server) == ["json_schema", "json_schema"]


@pytest.mark.parametrize("status", [400, 422, 500])
async def test_a_clear_no_to_json_schema_switches_to_json_object_with_the_schema(
    backend: OpenAIBackend, openai_server: FakeOpenAIServer, status: int
) -> None:
    openai_server.enqueue(
        Action(status=status, error_message="response_format json_schema is not supported")
    )
    assert (await backend.complete_json(REQUEST)).ok
    assert (await backend.complete_json(REQUEST)).ok
    assert _formats(openai_server) == ["json_schema", "json_object", "json_object"]
    body = openai_server.requests[1]
    assert body["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert "JSON schema" in body["messages"][0]["content"]  # and in the prompt


@pytest.mark.parametrize(
    ("status", "message", "rejects"),
    [
        (500, "response_format json_schema is not supported", True),
        (400, "Unsupported value: 'response_format.type' json_schema", True),
        (422, "unknown field json_schema", True),
        # llama-cpp-python 0.3.36, as it answers
        (
            500,
            "{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
            "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}",
            True,
        ),
        (500, "fake server error", False),
        (500, "CUDA out of memory while sampling", False),
        (400, "Invalid schema for response_format 'npc_profile': missing required", False),
        (503, "response_format json_schema is not supported", False),
    ],
)
def test_what_counts_as_a_clear_no(status: int, message: str, rejects: bool) -> None:
    assert rejects_json_schema(status, message) is rejects
