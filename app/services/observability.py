"""The figures the Stats tab, the ``stats`` API and ``/stats.json`` show."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from app.backends.pool import BackendPool
from app.cache.stats import StatsRegistry
from app.metrics import Metrics, percentile
from app.services.quotas import Quotas

LATENCY_COLUMNS = (
    "backend", "operation", "count", "p50_ms", "p95_ms", "p99_ms", "ttft_p50_ms", "ttft_p95_ms",
)  # fmt: skip
CONCURRENCY_COLUMNS = (
    "backend", "in_flight", "limit", "max_in_flight", "calls", "retries", "circuit",
    "dialogue_limit",
)  # fmt: skip


def _finite(value: float) -> float | None:
    """JSON has no NaN: an empty series has no percentile."""
    return None if math.isnan(value) else round(value, 3)


class ObservabilityService:
    """Cache, latency and concurrency figures, read from where they are kept."""

    def __init__(
        self,
        stats: StatsRegistry,
        metrics: Metrics,
        backends: BackendPool,
        quotas: Quotas | None = None,
        dialogue_limits: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.stats = stats
        self.metrics = metrics
        self.backends = backends
        self.quotas = quotas
        # Dialogue calls at once per backend name (they also pass the backend's limit).
        self.dialogue_limits = dialogue_limits or dict

    def cache_rows(self) -> list[dict[str, Any]]:
        return [stats.as_dict() for stats in self.stats.snapshot()]

    def latency_rows(self) -> list[dict[str, Any]]:
        metrics = self.metrics
        rows = []
        for key in metrics.latency.series():
            backend, operation = key
            summary = metrics.latency.summary(key)
            ttft = [sample.seconds for sample in metrics.ttft_window.samples(key)]
            rows.append(
                {
                    "backend": backend,
                    "operation": operation,
                    "count": int(summary["count"]),
                    "p50_ms": _finite(summary["p50_ms"]),
                    "p95_ms": _finite(summary["p95_ms"]),
                    "p99_ms": _finite(summary["p99_ms"]),
                    "ttft_p50_ms": _finite(percentile(ttft, 50) * 1000),
                    "ttft_p95_ms": _finite(percentile(ttft, 95) * 1000),
                }
            )
        return rows

    def concurrency_rows(self) -> list[dict[str, Any]]:
        dialogue = self.dialogue_limits()
        return [
            {
                "backend": guarded.name,
                "in_flight": guarded.in_flight,
                "limit": guarded.concurrency,
                "max_in_flight": guarded.max_in_flight,
                "requests_per_minute": guarded.requests_per_minute,
                "calls": guarded.calls,
                "retries": guarded.retries,
                "circuit": guarded.breaker.state,
                "dialogue_limit": dialogue.get(guarded.name),
            }
            for guarded in self.backends.active()
        ]

    def latency_series(self) -> list[dict[str, Any]]:
        """Recent call latencies with their time, for the plot over time."""
        metrics = self.metrics
        return [
            {
                "time": sample.at,
                "latency_ms": round(sample.seconds * 1000, 3),
                "series": "/".join(key),
            }
            for key in metrics.latency.series()
            for sample in metrics.latency.samples(key)
        ]

    @property
    def last_batch(self) -> list[dict[str, float | str]]:
        return self.metrics.last_batch

    def snapshot(self) -> dict[str, Any]:
        """Every figure at one moment, as plain JSON."""
        return {
            "generated_at": time.time(),
            "caches": self.cache_rows(),
            "latency": self.latency_rows(),
            "concurrency": self.concurrency_rows(),
            "last_batch": self.last_batch,
            "quotas": self.quota_rows(),
        }

    def quota_rows(self) -> list[dict[str, Any]]:
        """Each user's use of their quotas (none without quotas)."""
        return self.quotas.rows() if self.quotas is not None else []

    def prometheus(self) -> bytes:
        """The metrics in Prometheus' text format (reads files: call it in a thread)."""
        from prometheus_client import generate_latest

        return generate_latest(self.metrics.registry)
