"""Calls to a backend under limits: concurrency, rate, retries, circuit breaker.

Every call a service makes goes through one ``GuardedBackend`` per backend,
so two batches running at once share the same limits.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from app.backends.base import Backend, JSONReply, JSONRequest
from app.errors import BackendError, CircuitOpenError
from app.metrics import CIRCUIT_STATES, Metrics

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After wins."""

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2**attempt))


class CircuitBreaker:
    """Opens after ``threshold`` failures in a row; lets calls through again
    after ``reset_seconds``, and one more failure then opens it again."""

    def __init__(self, backend: str, threshold: int, reset_seconds: float, clock: Clock) -> None:
        self.backend = backend
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.last_error: str = ""

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self._clock() - self.opened_at >= self.reset_seconds:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        if self.state == "open":
            assert self.opened_at is not None
            wait = self.reset_seconds - (self._clock() - self.opened_at)
            raise CircuitOpenError(
                self.backend,
                f"{self.failures} calls failed in a row (last: {self.last_error}); not calling "
                f"it for another {wait:.0f} s. Check the server, or pick another backend.",
            )

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def record_failure(self, error: BackendError) -> None:
        self.failures += 1
        self.last_error = str(error)
        if self.failures >= self.threshold:
            self.opened_at = self._clock()


@dataclass(slots=True)
class _LoopLimits:
    semaphore: asyncio.Semaphore
    limiter: AsyncLimiter | None


class GuardedBackend:
    """A backend wrapped in its limits. Use ``complete_json`` like the backend's."""

    def __init__(
        self,
        backend: Backend,
        *,
        concurrency: int,
        requests_per_minute: float | None,
        retry: RetryPolicy,
        breaker_threshold: int = 5,
        breaker_reset_seconds: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.concurrency = concurrency
        self.requests_per_minute = requests_per_minute
        self.retry = retry
        self.breaker = CircuitBreaker(backend.name, breaker_threshold, breaker_reset_seconds, clock)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self.retries = 0
        # asyncio primitives belong to one event loop; the UI, the CLI and tests
        # each run their own, so keep one set of limits per loop.
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopLimits] = (
            weakref.WeakKeyDictionary()
        )
        if metrics is not None:
            metrics.concurrency_limit.labels(backend.name).set(concurrency)
            self._publish()

    def _publish(self) -> None:
        """Push the gauges (in-flight calls, circuit state) to the metrics."""
        if self.metrics is not None:
            self.metrics.in_flight.labels(self.name).set(self.in_flight)
            self.metrics.circuit_state.labels(self.name).set(CIRCUIT_STATES[self.breaker.state])

    @property
    def name(self) -> str:
        return self.backend.name

    def _loop_limits(self) -> _LoopLimits:
        loop = asyncio.get_running_loop()
        limits = self._limits.get(loop)
        if limits is None:
            limiter = None
            if self.requests_per_minute:
                limiter = AsyncLimiter(self.requests_per_minute, time_period=60)
            limits = _LoopLimits(asyncio.Semaphore(self.concurrency), limiter)
            self._limits[loop] = limits
        return limits

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        limits = self._loop_limits()
        async with limits.semaphore:
            if limits.limiter is not None:
                await limits.limiter.acquire()
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._publish()
            try:
                yield
            finally:
                self.in_flight -= 1
                self._publish()

    async def complete_json(self, request: JSONRequest) -> JSONReply:
        """Call the backend with limits and retries.

        The reply's ``stats`` gain ``queue_ms`` (waiting for a slot) and
        ``attempts``. Retries wait outside the slot so others can use it.
        """
        queued = 0.0
        attempt = 0
        operation = "repair" if request.inputs.get("repair") else request.task
        while True:
            self.breaker.before_call()
            start = self._clock()
            async with self._slot():
                queued += self._clock() - start
                self.calls += 1
                called = self._clock()
                try:
                    reply = await self.backend.complete_json(request)
                except BackendError as exc:
                    error = exc
                else:
                    self.breaker.record_success()
                    reply.stats["queue_ms"] = queued * 1000
                    reply.stats["attempts"] = attempt + 1
                    self._record(operation, "ok", self._clock() - called, reply.stats)
                    return reply
            self.breaker.record_failure(error)
            retrying = error.retryable and attempt < self.retry.max_retries
            self._record(operation, "retried" if retrying else "failed", 0.0, {})
            if not retrying:
                raise error
            self.retries += 1
            await self._sleep(self.retry.delay(attempt, error.retry_after, self._rng))
            attempt += 1

    def _record(self, operation: str, status: str, seconds: float, stats: dict[str, float]) -> None:
        if self.metrics is None:
            return
        ttft_ms = stats.get("ttft_ms")
        self.metrics.backend_call(
            self.name, operation, status, seconds, None if ttft_ms is None else ttft_ms / 1000
        )
        self._publish()
