"""Chat replies through the guard: limits held while streaming, retries only before text."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import pytest

from app.backends.base import Backend, ChatRequest, JSONReply, JSONRequest
from app.errors import BackendUnavailableError, RateLimitedError
from tests.conftest import FakeSleep
from tests.doubles import guarded

REQUEST = ChatRequest([{"role": "user", "content": "hello"}])


class Talker(Backend):
    """Streams scripted replies: a list of deltas, or an exception raised after
    the deltas before it in the list."""

    kind = "remote"
    can_stream = True

    def __init__(self, *scripts: list[str | Exception]) -> None:
        self.scripts = deque(scripts)
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    @property
    def name(self) -> str:
        return "talker:test"

    async def complete_json(self, request: JSONRequest) -> JSONReply:
        raise NotImplementedError

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[str]:
        self.calls += 1
        self.started.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for item in self.scripts.popleft() if self.scripts else ["Well ", "met."]:
                await self.release.wait()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.in_flight -= 1


async def _text(stream: AsyncIterator[str]) -> str:
    return "".join([part async for part in stream])


async def test_a_failure_before_any_text_is_retried(fake_sleep: FakeSleep) -> None:
    backend = Talker([BackendUnavailableError("talker", "refused")], ["Hello ", "there."])
    guard = guarded(backend, fake_sleep)
    assert await _text(guard.stream_chat(REQUEST)) == "Hello there."
    assert backend.calls == 2 and len(fake_sleep.delays) == 1


async def test_a_rate_limit_before_any_text_waits_as_asked(fake_sleep: FakeSleep) -> None:
    backend = Talker([RateLimitedError("talker", "429", retry_after=2)], ["Fine."])
    guard = guarded(backend, fake_sleep)
    assert await _text(guard.stream_chat(REQUEST)) == "Fine."
    assert fake_sleep.delays == [2] and guard.breaker.failures == 0


async def test_a_failure_after_text_is_not_retried(fake_sleep: FakeSleep) -> None:
    backend = Talker(["Half a ", BackendUnavailableError("talker", "cut")])
    guard = guarded(backend, fake_sleep)
    seen = []
    with pytest.raises(BackendUnavailableError, match="cut"):
        async for part in guard.stream_chat(REQUEST):
            seen.append(part)
    assert seen == ["Half a "] and backend.calls == 1  # the reader never sees it start twice


async def test_the_slot_is_held_while_a_reply_streams(fake_sleep: FakeSleep) -> None:
    backend = Talker()
    backend.release.clear()
    guard = guarded(backend, fake_sleep, concurrency=1)
    first = asyncio.create_task(_text(guard.stream_chat(REQUEST)))
    await backend.started.wait()  # the first holds the only slot, mid-reply
    second = asyncio.create_task(_text(guard.stream_chat(REQUEST)))
    await asyncio.sleep(0)  # let the second one take its first step: it queues
    assert guard.waiting == 1 and backend.calls == 1  # the second waits for the slot
    backend.release.set()
    assert await asyncio.gather(first, second) == ["Well met.", "Well met."]
    assert backend.max_in_flight == 1 and guard.in_flight == 0


async def test_leaving_a_stream_early_frees_its_slot(fake_sleep: FakeSleep) -> None:
    guard = guarded(Talker(["a", "b", "c"], ["d"]), fake_sleep, concurrency=1)
    stream = guard.stream_chat(REQUEST)
    assert await anext(stream) == "a"
    await stream.aclose()  # type: ignore[attr-defined]
    assert guard.in_flight == 0
    assert await _text(guard.stream_chat(REQUEST)) == "d"
