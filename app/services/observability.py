"""The figures the Stats tab, the ``stats`` API and ``/stats.json`` show."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from app.metrics import percentile

if TYPE_CHECKING:
    from app.clients import Services


LATENCY_COLUMNS = (
    "backend", "operation", "count", "p50_ms", "p95_ms", "p99_ms", "ttft_p50_ms", "ttft_p95_ms",
)  # fmt: skip
CONCURRENCY_COLUMNS = (
    "backend", "in_flight", "limit", "max_in_flight", "calls", "retries", "circuit",
)  # fmt: skip


def _finite(value: float) -> float | None:
    """JSON has no NaN: an empty series has no percentile."""
    return None if math.isnan(value) else round(value, 3)


def latency_rows(services: Services) -> list[dict[str, Any]]:
    metrics = services.metrics
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


def concurrency_rows(services: Services) -> list[dict[str, Any]]:
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
        }
        for guarded in services.active_backends()
    ]


def latency_series(services: Services) -> list[dict[str, Any]]:
    """Recent call latencies with their time, for the plot over time."""
    metrics = services.metrics
    return [
        {"time": sample.at, "latency_ms": round(sample.seconds * 1000, 3), "series": "/".join(key)}
        for key in metrics.latency.series()
        for sample in metrics.latency.samples(key)
    ]


def stats_snapshot(services: Services) -> dict[str, Any]:
    """Every figure at one moment, as plain JSON."""
    return {
        "generated_at": time.time(),
        "caches": [stats.as_dict() for stats in services.stats.snapshot()],
        "latency": latency_rows(services),
        "concurrency": concurrency_rows(services),
        "last_batch": services.metrics.last_batch,
    }
