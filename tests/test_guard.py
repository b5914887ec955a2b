"""Concurrency, retries with backoff, Retry-After and the circuit breaker."""

from __future__ import annotations

import asyncio

import pytest

from app.backends.base import JSONReply, JSONRequest
from app.backends.guard import RetryPolicy
from app.errors import (
    BackendResponseError,
    BackendUnavailableError,
    CircuitOpenError,
    RateLimitedError,
)
from tests.conftest import FakeSleep
from tests.doubles import FakeClock, ScriptedBackend, guarded
from tests.gated import GateBackend

REQUEST = JSONRequest(task="npc_profile", messages=[], schema={}, inputs={})


async def test_retries_retryable_errors_with_growing_backoff(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.enqueue(
        BackendUnavailableError("scripted", "timeout"),
        BackendResponseError("scripted", "HTTP 500", status=500),
    )
    guard = guarded(backend, fake_sleep)
    reply = await guard.complete_json(REQUEST)
    assert reply.ok and reply.stats["attempts"] == 3
    assert len(backend.history) == 3
    assert len(fake_sleep.delays) == 2
    assert 0 <= fake_sleep.delays[0] <= 0.5 and 0 <= fake_sleep.delays[1] <= 1.0


async def test_retry_after_is_honoured(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.enqueue(RateLimitedError("scripted", "429", retry_after=7.5))
    await guarded(backend, fake_sleep).complete_json(REQUEST)
    assert fake_sleep.delays == [7.5]


async def test_retry_after_is_capped_by_max_delay(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.enqueue(RateLimitedError("scripted", "429", retry_after=3600))
    guard = guarded(backend, fake_sleep, retry=RetryPolicy(max_retries=1, max_delay=20))
    await guard.complete_json(REQUEST)
    assert fake_sleep.delays == [20]


async def test_client_errors_are_not_retried(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.enqueue(BackendResponseError("scripted", "HTTP 401", status=401))
    with pytest.raises(BackendResponseError):
        await guarded(backend, fake_sleep).complete_json(REQUEST)
    assert len(backend.history) == 1 and fake_sleep.delays == []


async def test_gives_up_after_max_retries(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.enqueue(*(BackendUnavailableError("scripted", "down") for _ in range(10)))
    guard = guarded(backend, fake_sleep, retry=RetryPolicy(max_retries=2))
    with pytest.raises(BackendUnavailableError):
        await guard.complete_json(REQUEST)
    assert len(backend.history) == 3


async def test_circuit_opens_fails_fast_and_recovers(fake_sleep: FakeSleep) -> None:
    clock = FakeClock()
    backend = ScriptedBackend()
    backend.enqueue(*(BackendResponseError("scripted", "HTTP 503", status=503) for _ in range(3)))
    guard = guarded(
        backend,
        fake_sleep,
        retry=RetryPolicy(max_retries=0),
        breaker_threshold=3,
        breaker_reset_seconds=30,
        clock=clock,
    )
    for _ in range(3):
        with pytest.raises(BackendResponseError):
            await guard.complete_json(REQUEST)
    with pytest.raises(CircuitOpenError, match="3 calls failed in a row") as caught:
        await guard.complete_json(REQUEST)
    assert "HTTP 503" in str(caught.value)
    assert len(backend.history) == 3  # the open circuit did not call the backend
    clock.now += 31
    assert guard.breaker.state == "half-open"
    assert (await guard.complete_json(REQUEST)).ok
    assert guard.breaker.state == "closed"


async def test_concurrency_limit_holds() -> None:
    class Held(GateBackend):
        """Signals when the limit's worth of calls is inside."""

        def __init__(self) -> None:
            super().__init__()
            self.full = asyncio.Event()
            self.max_in_flight = 0

        async def complete_json(self, request: JSONRequest) -> JSONReply:
            self.max_in_flight = max(self.max_in_flight, self.in_flight + 1)
            if self.in_flight + 1 == 3:
                self.full.set()
            return await super().complete_json(request)

    backend = Held()
    guard = guarded(backend, asyncio.sleep, concurrency=3)
    calls = asyncio.gather(*(guard.complete_json(REQUEST) for _ in range(12)))
    await backend.full.wait()
    assert backend.calls == 3 and guard.in_flight == 3  # the other 9 wait for a slot
    backend.gate.set()
    await calls
    assert backend.max_in_flight == 3 and guard.max_in_flight == 3
    assert backend.calls == 12


async def test_limits_work_across_event_loops() -> None:
    """The UI, CLI and tests each run their own loop; one guard serves them all."""
    backend = ScriptedBackend()
    guard = guarded(backend, asyncio.sleep, concurrency=2)
    await guard.complete_json(REQUEST)

    def other_loop() -> bool:
        return asyncio.run(guard.complete_json(REQUEST)).ok

    assert await asyncio.to_thread(other_loop)
