"""GuardedBackend.from_settings: the one place settings become a guard's limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from app.backends.base import JSONRequest
from app.backends.guard import GuardedBackend, RetryPolicy
from app.errors import RateLimitedError
from app.metrics import Metrics
from config import DEFAULT_CONCURRENCY, DEFAULT_REQUESTS_PER_MINUTE, Settings
from tests.conftest import FakeSleep, make_settings
from tests.doubles import FakeClock, ScriptedBackend

REQUEST = JSONRequest(task="npc_profile", messages=[], schema={}, inputs={})


class LocalBackend(ScriptedBackend):
    kind = "local"


def test_defaults_by_backend_kind(settings: Settings) -> None:
    remote = GuardedBackend.from_settings(ScriptedBackend(), settings)
    local = GuardedBackend.from_settings(LocalBackend(), settings)
    assert remote.concurrency == remote.max_concurrency == DEFAULT_CONCURRENCY["remote"]
    assert remote.requests_per_minute == DEFAULT_REQUESTS_PER_MINUTE["remote"]
    assert local.concurrency == DEFAULT_CONCURRENCY["local"]
    assert local.requests_per_minute == DEFAULT_REQUESTS_PER_MINUTE["local"]


def test_every_guard_setting_is_mapped(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        max_concurrency=3,
        requests_per_minute=90,
        max_retries=5,
        retry_base_delay=0.25,
        retry_max_delay=7,
        rate_limit_deadline=42,
        circuit_failure_threshold=4,
        circuit_min_failures=2,
        circuit_max_failures=9,
        circuit_window=12,
        circuit_reset_seconds=11,
    )
    metrics = Metrics(CollectorRegistry())
    guard = GuardedBackend.from_settings(ScriptedBackend(), settings, metrics=metrics)
    assert (guard.concurrency, guard.max_concurrency, guard.requests_per_minute) == (3, 3, 90)
    assert guard.retry == RetryPolicy(max_retries=5, base_delay=0.25, max_delay=7)
    assert guard.rate_limit_deadline == 42
    breaker = guard.breaker
    assert (breaker.min_failures, breaker.max_failures, breaker.reset_seconds) == (2, 9, 11)
    assert breaker.threshold == 4  # where it starts, before any call
    assert guard.metrics is metrics
    assert (
        metrics.registry.get_sample_value(
            "npc_forge_backend_concurrency_limit", {"backend": "scripted:test"}
        )
        == 3
    )


async def test_clock_and_sleep_are_passed_through(tmp_path: Path, fake_sleep: FakeSleep) -> None:
    settings = make_settings(tmp_path, rate_limit_deadline=5, retry_max_delay=2)
    backend = ScriptedBackend()
    backend.enqueue(*(RateLimitedError("scripted:test", "429", retry_after=2) for _ in range(10)))
    clock = FakeClock()
    guard = GuardedBackend.from_settings(backend, settings, clock=clock, sleep=fake_sleep)
    with pytest.raises(RateLimitedError, match="kept rate limiting"):
        await guard.complete_json(REQUEST)
    assert fake_sleep.delays == [2, 2]  # a third wait would pass the 5 s deadline
