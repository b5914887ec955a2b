"""A scripted backend for tests that need failures on cue (cf. llm's MockModel),
and a fake clock with a sleep that moves it, for the guard's deadlines."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Callable
from typing import Any

from app.backends.base import Backend, JSONReply, JSONRequest
from app.backends.guard import GuardedBackend, RetryPolicy
from tests.npc_fixtures import valid_profile

Item = JSONReply | Exception | Callable[[JSONRequest], JSONReply]


class ScriptedBackend(Backend):
    """Replies from a queue (``enqueue``), else a valid profile; records ``history``."""

    kind = "remote"
    supports_schema = True

    def __init__(self, name: str = "scripted:test", delay: float = 0.0) -> None:
        self._name = name
        self.delay = delay
        # When set, every call waits in flight until the event is set: tests hold
        # calls to see who waits for a slot, then let them go.
        self.hold: asyncio.Event | None = None
        self.queue: deque[Item] = deque()
        self.history: list[JSONRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._numbers = itertools.count(1)

    @property
    def name(self) -> str:
        return self._name

    def enqueue(self, *items: Item) -> None:
        self.queue.extend(items)

    def default_reply(self, request: JSONRequest) -> JSONReply:
        profile = valid_profile(request.inputs.get("name") or f"Scripted {next(self._numbers)}")
        return JSONReply(raw=json.dumps(profile), data=profile)

    async def complete_json(self, request: JSONRequest) -> JSONReply:
        self.history.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.hold is not None:
                await self.hold.wait()
            item = self.queue.popleft() if self.queue else self.default_reply
            if isinstance(item, Exception):
                raise item
            if isinstance(item, JSONReply):
                return item
            return item(request)
        finally:
            self.in_flight -= 1


def invalid_reply(raw: str = '{"name": "Half an NPC"}') -> JSONReply:
    try:
        data: Any = json.loads(raw)
        error = None
    except json.JSONDecodeError as exc:
        data, error = None, f"not valid JSON: {exc.msg}"
    return JSONReply(raw=raw, data=data, parse_error=error)


def guarded(backend: Backend, sleep: Callable[[float], Any], **options: Any) -> GuardedBackend:
    values: dict[str, Any] = {
        "concurrency": 4,
        "requests_per_minute": None,
        "retry": RetryPolicy(max_retries=3, base_delay=0.5, max_delay=30),
    }
    values.update(options)
    return GuardedBackend(backend, sleep=sleep, **values)


class FakeClock:
    """A monotonic clock that only moves when told (or when ClockedSleep sleeps)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ClockedSleep:
    """Records the delays asked for, moves the fake clock by them and yields once
    (so other calls run), instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.now += seconds
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool], steps: int = 1000) -> None:
    """Let other tasks run until ``condition()`` holds (no wall-clock waiting)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")
