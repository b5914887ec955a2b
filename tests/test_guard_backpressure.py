"""Rate limits are back-pressure: the guard slows down instead of failing.

One failure per call for the breaker, never for 429 or another 4xx; AIMD
concurrency; 429s retried within a deadline, not within max_retries.
"""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from prometheus_client import CollectorRegistry

from app.backends.base import JSONReply, JSONRequest
from app.backends.guard import RetryPolicy
from app.errors import BackendResponseError, CircuitOpenError, RateLimitedError
from app.metrics import Metrics
from tests.conftest import FakeSleep
from tests.doubles import ClockedSleep, FakeClock, ScriptedBackend, guarded, until

REQUEST = JSONRequest(task="npc_profile", messages=[], schema={}, inputs={})


def _request(name: str) -> JSONRequest:
    return JSONRequest(task="npc_profile", messages=[], schema={}, inputs={"name": name})


def _rate_limited(retry_after: float | None = 1.0) -> RateLimitedError:
    return RateLimitedError("scripted:test", "rate limited (HTTP 429)", retry_after=retry_after)


class RateLimitingBackend(ScriptedBackend):
    """Answers 429 (Retry-After: 1) to a seeded share of calls; yields once per call
    so calls overlap as they would over HTTP."""

    def __init__(self, share: float, seed: int = 9) -> None:
        super().__init__()
        self.share = share
        self._rng = random.Random(seed)

    async def complete_json(self, request: JSONRequest) -> JSONReply:
        self.history.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self._rng.random() < self.share:
                raise _rate_limited()
            return self.default_reply(request)
        finally:
            self.in_flight -= 1


def _requests_counted(metrics: Metrics, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "npc_forge_backend_requests_total",
        {"backend": "scripted:test", "operation": "npc_profile", "status": status},
    )
    return value or 0.0


async def test_a_cast_mostly_rate_limited_still_completes() -> None:
    """60% of calls answered 429 at concurrency 8: every NPC arrives, none fails."""
    clock = FakeClock()
    sleep = ClockedSleep(clock)
    metrics = Metrics(CollectorRegistry())
    backend = RateLimitingBackend(share=0.6)
    guard = guarded(
        backend, sleep, concurrency=8, breaker_threshold=6, clock=clock, metrics=metrics
    )
    replies = await asyncio.gather(*(guard.complete_json(_request(f"N{i}")) for i in range(30)))
    assert all(reply.ok for reply in replies)
    assert guard.breaker.state == "closed" and guard.breaker.failures == 0
    assert set(sleep.delays) == {1.0}  # waited as the server asked
    assert _requests_counted(metrics, "ok") == 30
    assert _requests_counted(metrics, "rate_limited") == guard.rate_limits > 0
    assert _requests_counted(metrics, "failed") == 0


async def test_a_burst_of_429s_with_retries_off_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """8 calls in flight all answered 429: the limit halves once, all 20 NPCs arrive."""
    clock = FakeClock()
    backend = ScriptedBackend()
    backend.enqueue(*(_rate_limited() for _ in range(8)))
    backend.hold = asyncio.Event()
    guard = guarded(
        backend,
        ClockedSleep(clock),
        concurrency=8,
        retry=RetryPolicy(max_retries=0),
        breaker_threshold=3,
        clock=clock,
    )
    caplog.set_level(logging.INFO, logger="app.backends.guard")
    calls = [asyncio.create_task(guard.complete_json(_request(f"N{i}"))) for i in range(20)]
    await until(lambda: backend.in_flight == 8)
    backend.hold.set()
    replies = await asyncio.gather(*calls)
    assert all(reply.ok for reply in replies)
    assert guard.breaker.failures == 0 and guard.breaker.state == "closed"
    changes = [r.getMessage() for r in caplog.records if "concurrency" in r.getMessage()]
    # One burst, one decrease (not 8 -> 4 -> 2 -> 1), then growth back up.
    assert "concurrency 8 -> 4" in changes[0]
    assert not any("-> 2" in change or "-> 1 " in change for change in changes)


async def test_rate_limit_retries_do_not_use_up_max_retries(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.enqueue(*(_rate_limited(2.0) for _ in range(5)))
    guard = guarded(backend, fake_sleep, retry=RetryPolicy(max_retries=0))
    reply = await guard.complete_json(REQUEST)
    assert reply.ok and reply.stats["attempts"] == 6
    assert fake_sleep.delays == [2.0] * 5


async def test_rate_limits_retry_until_the_deadline_then_say_what_to_do() -> None:
    clock = FakeClock()
    sleep = ClockedSleep(clock)
    backend = ScriptedBackend()
    backend.enqueue(*(_rate_limited(10.0) for _ in range(100)))
    guard = guarded(
        backend,
        sleep,
        retry=RetryPolicy(max_retries=1),
        rate_limit_deadline=60,
        breaker_threshold=1,
        clock=clock,
    )
    with pytest.raises(RateLimitedError, match="kept rate limiting") as caught:
        await guard.complete_json(REQUEST)
    message = str(caught.value)
    assert "NPC_FORGE_MAX_CONCURRENCY" in message and "NPC_FORGE_REQUESTS_PER_MINUTE" in message
    # Waits of 10 s fit six times into 60 s; the seventh 429 ends the call.
    assert len(backend.history) == 7 and sleep.delays == [10.0] * 6
    # Not a failure of the backend's health: the next call goes through.
    assert guard.breaker.failures == 0
    backend.queue.clear()
    assert (await guard.complete_json(REQUEST)).ok


async def test_the_deadline_holds_when_the_clock_does_not_move(fake_sleep: FakeSleep) -> None:
    """The waits asked for count, so a fake (or early-returning) sleep cannot loop forever."""
    backend = ScriptedBackend()
    backend.enqueue(*(_rate_limited(10.0) for _ in range(100)))
    guard = guarded(backend, fake_sleep, rate_limit_deadline=60, clock=FakeClock())
    with pytest.raises(RateLimitedError, match="kept rate limiting"):
        await guard.complete_json(REQUEST)
    assert len(backend.history) == 7


async def test_rate_limits_without_retry_after_back_off_with_jitter(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.enqueue(*(_rate_limited(None) for _ in range(4)))
    guard = guarded(backend, fake_sleep, retry=RetryPolicy(max_retries=0, base_delay=0.5))
    assert (await guard.complete_json(REQUEST)).ok
    assert len(fake_sleep.delays) == 4
    assert all(0 <= d <= 0.5 * 2**i for i, d in enumerate(fake_sleep.delays))


async def test_the_breaker_counts_one_failure_per_call(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.enqueue(*(BackendResponseError("scripted", "HTTP 500", status=500) for _ in range(8)))
    guard = guarded(backend, fake_sleep, retry=RetryPolicy(max_retries=3), breaker_threshold=2)
    with pytest.raises(BackendResponseError):
        await guard.complete_json(REQUEST)
    assert len(backend.history) == 4  # one call, four attempts
    assert guard.breaker.failures == 1 and guard.breaker.state == "closed"
    with pytest.raises(BackendResponseError):
        await guard.complete_json(REQUEST)
    assert guard.breaker.failures == 2 and guard.breaker.state == "open"


async def test_a_retry_that_succeeds_is_no_failure(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.enqueue(BackendResponseError("scripted", "HTTP 502", status=502))
    guard = guarded(backend, fake_sleep, breaker_threshold=1)
    assert (await guard.complete_json(REQUEST)).ok
    assert guard.breaker.failures == 0 and guard.breaker.state == "closed"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_never_open_the_circuit(fake_sleep: FakeSleep, status: int) -> None:
    backend = ScriptedBackend()
    backend.enqueue(
        *(BackendResponseError("scripted", f"HTTP {status}", status=status) for _ in range(6))
    )
    guard = guarded(backend, fake_sleep, breaker_threshold=2)
    for _ in range(6):
        with pytest.raises(BackendResponseError) as caught:
            await guard.complete_json(REQUEST)
        assert not isinstance(caught.value, CircuitOpenError)
    assert guard.breaker.failures == 0 and guard.breaker.state == "closed"


async def test_aimd_halves_on_429_and_grows_back(
    fake_sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(CollectorRegistry())
    backend = ScriptedBackend()
    backend.enqueue(_rate_limited())
    guard = guarded(backend, fake_sleep, concurrency=8, metrics=metrics)

    def gauge() -> float | None:
        return metrics.registry.get_sample_value(
            "npc_forge_backend_concurrency_limit", {"backend": "scripted:test"}
        )

    caplog.set_level(logging.INFO, logger="app.backends.guard")
    assert gauge() == 8
    await guard.complete_json(REQUEST)
    assert guard.concurrency == 4 and guard.max_concurrency == 8 and gauge() == 4
    assert any("concurrency 8 -> 4" in r.getMessage() for r in caplog.records)
    # +1 after each full round of successes: 4 + 5 + 6 + 7 calls.
    for _ in range(4 + 5 + 6 + 7 - 1):  # the retried call already counted once
        await guard.complete_json(REQUEST)
    assert guard.concurrency == 8 and gauge() == 8
    assert any("concurrency 7 -> 8" in r.getMessage() for r in caplog.records)
    await guard.complete_json(REQUEST)
    assert guard.concurrency == 8  # never above the configured limit


async def test_concurrency_never_drops_below_one(fake_sleep: FakeSleep) -> None:
    backend = ScriptedBackend()
    backend.enqueue(*(_rate_limited() for _ in range(5)))
    guard = guarded(backend, fake_sleep, concurrency=1)
    async with asyncio.timeout(5):  # a limit of 0 would admit nobody: fail, not hang
        assert (await guard.complete_json(REQUEST)).ok
    assert guard.concurrency == 1


async def test_a_lower_limit_holds_calls_back() -> None:
    """After a 429 halves the limit, the server sees no more than the new limit."""
    backend = ScriptedBackend()
    backend.enqueue(_rate_limited())
    guard = guarded(backend, FakeSleep(), concurrency=4)
    await guard.complete_json(REQUEST)
    assert guard.concurrency == 2
    backend.hold = asyncio.Event()
    calls = [asyncio.create_task(guard.complete_json(REQUEST)) for _ in range(6)]
    await until(lambda: guard.waiting == 4)
    assert backend.in_flight == 2
    backend.hold.set()
    assert all(reply.ok for reply in await asyncio.gather(*calls))
