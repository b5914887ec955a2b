"""Metrics: Prometheus counters and histograms, plus exact recent percentiles.

Everything takes its own ``CollectorRegistry`` (tests make a fresh one). The
histograms feed ``/metrics``; the ``LatencyWindow`` keeps the last samples so
the Stats tab can show exact p50/p95/p99 and a plot over time.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app.cache.stats import CacheStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STAGES = ("queue", "backend", "parse", "repair", "store", "total")
CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks
    (numpy's default); NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # wall-clock time, for plots
    seconds: float


class LatencyWindow:
    """The most recent samples per series, for exact percentiles and plots."""

    def __init__(self, maxlen: int = 2048, clock: Callable[[], float] = time.time) -> None:
        self._series: dict[tuple[str, ...], deque[Sample]] = {}
        self._maxlen = maxlen
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, key: tuple[str, ...], seconds: float) -> None:
        with self._lock:
            series = self._series.setdefault(key, deque(maxlen=self._maxlen))
            series.append(Sample(self._clock(), seconds))

    def series(self) -> list[tuple[str, ...]]:
        with self._lock:
            return sorted(self._series)

    def samples(self, key: tuple[str, ...]) -> list[Sample]:
        with self._lock:
            return list(self._series.get(key, ()))

    def summary(self, key: tuple[str, ...]) -> dict[str, float]:
        values = [sample.seconds for sample in self.samples(key)]
        return {
            "count": len(values),
            "p50_ms": percentile(values, 50) * 1000,
            "p95_ms": percentile(values, 95) * 1000,
            "p99_ms": percentile(values, 99) * 1000,
        }


class CacheCollector(Collector):
    """Exposes every cache in the stats registry as Prometheus metrics."""

    def __init__(self, snapshot: Callable[[], Iterable[CacheStats]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        requests = CounterMetricFamily(
            "npc_forge_cache_requests", "Cache lookups by result", labels=["cache", "result"]
        )
        evictions = CounterMetricFamily(
            "npc_forge_cache_evictions", "Entries evicted", labels=["cache"]
        )
        size = GaugeMetricFamily("npc_forge_cache_size", "Entries held", labels=["cache"])
        hit_ratio = GaugeMetricFamily(
            "npc_forge_cache_hit_ratio", "Hits / lookups since start", labels=["cache"]
        )
        for stats in self._snapshot():
            requests.add_metric([stats.name, "hit"], stats.hits)
            requests.add_metric([stats.name, "miss"], stats.misses)
            evictions.add_metric([stats.name], stats.evictions)
            size.add_metric([stats.name], stats.size)
            hit_ratio.add_metric([stats.name], stats.hit_rate)
        yield from (requests, evictions, size, hit_ratio)


class Metrics:
    """The app's metrics on one registry; pass it to whatever records."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        cache_stats: Callable[[], Iterable[CacheStats]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.npcs = Counter("npc_forge_npcs", "NPCs generated", ["backend", "status"], registry=r)
        self.backend_requests = Counter(
            "npc_forge_backend_requests",
            "Backend calls by outcome: ok, retried, rate_limited, failed; repaired NPCs",
            ["backend", "operation", "status"],
            registry=r,
        )

        def seconds(name: str, documentation: str, labels: list[str]) -> Histogram:
            return Histogram(name, documentation, labels, buckets=LATENCY_BUCKETS, registry=r)

        self.backend_latency = seconds(
            "npc_forge_backend_latency_seconds", "Backend call latency", ["backend", "operation"]
        )
        self.ttft = seconds(
            "npc_forge_time_to_first_token_seconds",
            "Time to first token of streamed calls",
            ["backend", "operation"],
        )
        self.batch_seconds = seconds(
            "npc_forge_batch_seconds", "Whole cast generation time", ["backend"]
        )
        self.stage_seconds = seconds(
            "npc_forge_npc_stage_seconds",
            "Per-NPC time by stage (queue, backend, parse, repair, store, total)",
            ["backend", "stage"],
        )
        self.in_flight = Gauge(
            "npc_forge_backend_in_flight", "Backend calls in flight", ["backend"], registry=r
        )
        self.concurrency_limit = Gauge(
            "npc_forge_backend_concurrency_limit", "Concurrency limit", ["backend"], registry=r
        )
        self.circuit_state = Gauge(
            "npc_forge_circuit_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            ["backend"],
            registry=r,
        )
        if cache_stats is not None:
            r.register(CacheCollector(cache_stats))
        # Exact recent figures for the Stats tab.
        self.latency = LatencyWindow(clock=clock)
        self.ttft_window = LatencyWindow(clock=clock)
        self.last_batch: list[dict[str, float | str]] = []

    # -- recording ------------------------------------------------------------------
    def backend_call(
        self, backend: str, operation: str, status: str, seconds: float, ttft: float | None
    ) -> None:
        self.backend_requests.labels(backend, operation, status).inc()
        if status == "ok":
            self.backend_latency.labels(backend, operation).observe(seconds)
            self.latency.add((backend, operation), seconds)
            if ttft is not None:
                self.ttft.labels(backend, operation).observe(ttft)
                self.ttft_window.add((backend, operation), ttft)

    def npc_done(self, backend: str, ok: bool, stages_ms: dict[str, float] | None) -> None:
        self.npcs.labels(backend, "ok" if ok else "failed").inc()
        for stage, ms in (stages_ms or {}).items():
            self.stage_seconds.labels(backend, stage).observe(ms / 1000)

    def store_done(self, backend: str, seconds: float, count: int) -> None:
        """One batched library write: each NPC's share is its store stage."""
        if count:
            share = seconds / count
            for _ in range(count):
                self.stage_seconds.labels(backend, "store").observe(share)

    def batch_done(
        self, backend: str, seconds: float, breakdown: list[dict[str, float | str]]
    ) -> None:
        """A finished cast; ``breakdown`` is one row per NPC: name and stage ms."""
        self.batch_seconds.labels(backend).observe(seconds)
        self.last_batch = breakdown
