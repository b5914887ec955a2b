"""The adaptive circuit breaker: its threshold follows the success rate; half-open
lets exactly one probe through; the gauge shows half-open as it happens."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from app.backends.base import JSONRequest
from app.backends.guard import CircuitBreaker, GuardedBackend, RetryPolicy
from app.errors import BackendResponseError, BackendUnavailableError, CircuitOpenError
from app.metrics import Metrics
from tests.conftest import FakeSleep
from tests.doubles import FakeClock, ScriptedBackend, guarded, until

REQUEST = JSONRequest(task="npc_profile", messages=[], schema={}, inputs={})
DOWN = BackendUnavailableError("scripted:test", "cannot reach the server")


def _breaker(clock: FakeClock, **options: int) -> CircuitBreaker:
    values = {"min_failures": 2, "max_failures": 10, "start_failures": 5, "window": 20}
    values.update(options)
    return CircuitBreaker("scripted:test", reset_seconds=30, clock=clock, **values)


def _failures_to_open(breaker: CircuitBreaker) -> int:
    count = 0
    while breaker.state == "closed":
        breaker.record_failure(DOWN)
        count += 1
    return count


def test_a_fresh_breaker_opens_at_the_starting_threshold() -> None:
    breaker = _breaker(FakeClock())
    assert breaker.threshold == 5
    assert _failures_to_open(breaker) == 5


def test_a_healthy_history_earns_more_patience_a_sick_one_less() -> None:
    healthy = _breaker(FakeClock())
    for _ in range(20):
        healthy.record_success()
    sick = _breaker(FakeClock())
    for _ in range(5):  # one success in four: runs of failures too short to open
        sick.record_success()
        for _ in range(3):
            sick.record_failure(DOWN)
    sick.record_success()
    assert sick.state == "closed"
    patient, fresh, impatient = (
        _failures_to_open(healthy),
        _failures_to_open(_breaker(FakeClock())),
        _failures_to_open(sick),
    )
    assert impatient < fresh < patient
    assert impatient >= 2 and patient <= 10  # within the configured bounds


def test_the_threshold_stays_within_its_bounds() -> None:
    breaker = _breaker(FakeClock(), min_failures=3, max_failures=4, start_failures=3, window=10)
    for _ in range(50):
        breaker.record_success()
    assert breaker.threshold == 4
    for _ in range(50):
        breaker.record_success()
        breaker.record_failure(DOWN)
        breaker.record_failure(DOWN)
    breaker.record_success()
    assert breaker.threshold == 3


def _circuit_gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(
        "npc_forge_circuit_state", {"backend": "scripted:test"}
    )


async def _open(guard: GuardedBackend, backend: ScriptedBackend, failures: int) -> None:
    backend.enqueue(*(DOWN for _ in range(failures)))
    for _ in range(failures):
        with pytest.raises(BackendUnavailableError):
            await guard.complete_json(REQUEST)
    assert guard.breaker.state == "open"


def _guard(
    backend: ScriptedBackend, sleep: FakeSleep, clock: FakeClock, metrics: Metrics
) -> GuardedBackend:
    return guarded(
        backend,
        sleep,
        retry=RetryPolicy(max_retries=0),
        breaker_threshold=2,
        breaker_reset_seconds=30,
        clock=clock,
        metrics=metrics,
    )


async def test_half_open_lets_exactly_one_probe_through(fake_sleep: FakeSleep) -> None:
    clock = FakeClock()
    metrics = Metrics(CollectorRegistry())
    backend = ScriptedBackend()
    guard = _guard(backend, fake_sleep, clock, metrics)
    assert _circuit_gauge(metrics) == 0
    await _open(guard, backend, 2)
    assert _circuit_gauge(metrics) == 2
    clock.now += 31
    # No call has happened since: the gauge reads the state when it is read.
    assert _circuit_gauge(metrics) == 1
    backend.hold = asyncio.Event()
    probe = asyncio.create_task(guard.complete_json(REQUEST))
    await until(lambda: backend.in_flight == 1)
    for _ in range(3):
        with pytest.raises(CircuitOpenError, match="probe call"):
            await guard.complete_json(REQUEST)
    assert len(backend.history) == 3 and _circuit_gauge(metrics) == 1
    backend.hold.set()
    assert (await probe).ok
    assert guard.breaker.state == "closed" and _circuit_gauge(metrics) == 0
    assert (await guard.complete_json(REQUEST)).ok


async def test_a_failed_probe_opens_the_circuit_again(fake_sleep: FakeSleep) -> None:
    clock = FakeClock()
    metrics = Metrics(CollectorRegistry())
    backend = ScriptedBackend()
    guard = _guard(backend, fake_sleep, clock, metrics)
    await _open(guard, backend, 2)
    clock.now += 31
    backend.enqueue(DOWN)
    with pytest.raises(BackendUnavailableError):
        await guard.complete_json(REQUEST)
    assert guard.breaker.state == "open" and _circuit_gauge(metrics) == 2
    with pytest.raises(CircuitOpenError, match="not calling it for another 30 s"):
        await guard.complete_json(REQUEST)
    clock.now += 31
    assert guard.breaker.state == "half-open"
    assert (await guard.complete_json(REQUEST)).ok
    assert guard.breaker.state == "closed"


async def test_a_probe_without_a_verdict_lets_the_next_call_probe(fake_sleep: FakeSleep) -> None:
    """A 4xx (or a cancelled probe) says nothing about health: the next call probes."""
    clock = FakeClock()
    backend = ScriptedBackend()
    guard = _guard(backend, fake_sleep, clock, Metrics(CollectorRegistry()))
    await _open(guard, backend, 2)
    clock.now += 31
    backend.enqueue(BackendResponseError("scripted:test", "HTTP 400", status=400))
    with pytest.raises(BackendResponseError):
        await guard.complete_json(REQUEST)
    assert guard.breaker.state == "half-open"
    backend.hold = asyncio.Event()
    cancelled = asyncio.create_task(guard.complete_json(REQUEST))
    await until(lambda: backend.in_flight == 1)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    backend.hold = None
    assert (await guard.complete_json(REQUEST)).ok
    assert guard.breaker.state == "closed"


async def test_a_probe_may_use_its_retries(fake_sleep: FakeSleep) -> None:
    clock = FakeClock()
    backend = ScriptedBackend()
    guard = guarded(
        backend,
        fake_sleep,
        retry=RetryPolicy(max_retries=2),
        breaker_threshold=1,
        breaker_reset_seconds=30,
        clock=clock,
    )
    backend.enqueue(*(DOWN for _ in range(3)))
    with pytest.raises(BackendUnavailableError):
        await guard.complete_json(REQUEST)
    clock.now += 31
    backend.enqueue(DOWN, DOWN)
    reply = await guard.complete_json(REQUEST)
    assert reply.ok and reply.stats["attempts"] == 3
    assert guard.breaker.state == "closed"


async def test_the_open_message_names_the_count_and_the_last_error(
    fake_sleep: FakeSleep,
) -> None:
    clock = FakeClock()
    backend = ScriptedBackend()
    guard = _guard(backend, fake_sleep, clock, Metrics(CollectorRegistry()))
    await _open(guard, backend, 2)
    with pytest.raises(CircuitOpenError) as caught:
        await guard.complete_json(REQUEST)
    message = str(caught.value)
    assert "2 calls failed in a row" in message and "cannot reach the server" in message
    assert "pick another backend" in message
