"""Calls to a backend under limits: concurrency, rate, retries, back-pressure, breaker.

Every call a service makes goes through one ``GuardedBackend`` per backend,
so two batches running at once share the same limits.

- Rate limits (HTTP 429) are back-pressure, not failures: the guard halves its
  concurrency (AIMD), waits as the server asks and keeps trying until the
  call's ``rate_limit_deadline``; successes win the concurrency back, one slot
  at a time.
- Other retryable errors (5xx, timeouts, cut streams) retry up to
  ``max_retries`` times with exponential backoff and full jitter.
- The circuit breaker counts at most one failure per call, when the call has
  finally failed, and only failures that say the backend is unhealthy (never a
  429 or another 4xx). Its threshold moves with the recent success rate;
  half-open lets exactly one probe call through.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from app.backends.base import Backend, ChatRequest, JSONReply, JSONRequest
from app.errors import (
    BackendCapabilityError,
    BackendError,
    BackendResponseError,
    CircuitOpenError,
    RateLimitedError,
)
from app.logs import redact
from app.metrics import CIRCUIT_STATES, Metrics
from config import DEFAULT_CONCURRENCY, DEFAULT_REQUESTS_PER_MINUTE, Settings
from config import setting_default as _setting_default

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

logger = logging.getLogger(__name__)

# Slot priorities: a repair call finishes an NPC that already cost a call, so
# it goes before first calls that are still waiting.
REPAIR, FIRST = 0, 1
# The starting threshold counts as this many calls of evidence, so a handful of
# calls cannot swing the breaker's threshold to either bound.
PRIOR_CALLS = 4


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After wins."""

    max_retries: int = _setting_default("max_retries")
    base_delay: float = _setting_default("retry_base_delay")
    max_delay: float = _setting_default("retry_max_delay")

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        # The exponent is capped: 2**attempt overflows a float after ~1000 retries.
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** min(attempt, 32)))


def counts_against_health(error: BackendError) -> bool:
    """Whether a call that finally failed with ``error`` says the backend is unwell.

    429 is back-pressure; another 4xx is the request's fault (401/404 are config
    errors the user sees as they are); an open circuit is not new evidence.
    5xx, timeouts, connection errors and cut streams count.
    """
    if isinstance(error, RateLimitedError | CircuitOpenError | BackendCapabilityError):
        return False
    return not (isinstance(error, BackendResponseError) and error.status < 500)


class CircuitBreaker:
    """Opens after ``threshold`` calls failed in a row; after ``reset_seconds``
    it is half-open and lets one probe call through, whose outcome closes or
    re-opens it.

    The threshold lies between ``min_failures`` and ``max_failures``: it is set
    by the success rate of the last ``window`` calls before the current run of
    failures (a backend that was healthy gets more patience), starting at
    ``start_failures``. State is computed where it is read, from the clock.
    """

    def __init__(
        self,
        backend: str,
        *,
        min_failures: int,
        max_failures: int,
        reset_seconds: float,
        clock: Clock,
        start_failures: int | None = None,
        window: int = _setting_default("circuit_window"),
    ) -> None:
        self.backend = backend
        self.min_failures = max(1, min_failures)
        self.max_failures = max(self.min_failures, max_failures)
        start = self.min_failures if start_failures is None else start_failures
        start = min(max(start, self.min_failures), self.max_failures)
        span = self.max_failures - self.min_failures
        # The success rate at which the threshold equals the starting threshold.
        self._prior_rate = (start - self.min_failures) / span if span else 1.0
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._outcomes: deque[bool] = deque(maxlen=max(1, window))
        self.failures = 0
        self.opened_at: float | None = None
        self.last_error: str = ""
        self._probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self._clock() - self.opened_at >= self.reset_seconds:
            return "half-open"
        return "open"

    @property
    def threshold(self) -> int:
        """Failures in a row that open the circuit, from the recent success rate."""
        # The current run of failures is what is being judged, not evidence.
        before_run = len(self._outcomes) - min(self.failures, len(self._outcomes))
        successes = sum(self._outcomes)
        rate = (successes + self._prior_rate * PRIOR_CALLS) / (before_run + PRIOR_CALLS)
        span = self.max_failures - self.min_failures
        return self.min_failures + round(span * rate)

    def admit(self, probe: bool = False) -> bool:
        """Raise CircuitOpenError unless a call may go ahead; True if it is the probe.

        ``probe`` says the caller already holds the probe (its own retries).
        """
        if probe:
            return True
        state = self.state
        if state == "closed":
            return False
        if state == "half-open" and not self._probing:
            self._probing = True
            logger.info("circuit half-open for %s: one probe call goes through", self.backend)
            return True
        if state == "half-open":
            reason = "a probe call is checking whether it recovered; failing fast until it answers"
        else:
            assert self.opened_at is not None
            wait = self.reset_seconds - (self._clock() - self.opened_at)
            reason = f"not calling it for another {wait:.0f} s"
        raise CircuitOpenError(
            self.backend,
            f"{self.failures} calls failed in a row (last: {self.last_error}); {reason}. "
            "Check the server, or pick another backend.",
        )

    def record_success(self, probe: bool = False) -> None:
        self._outcomes.append(True)
        if self.opened_at is not None:
            logger.info("circuit closed for %s: calls succeed again", self.backend)
        self.failures = 0
        self.opened_at = None
        if probe:
            self._probing = False

    def record_failure(self, error: BackendError, probe: bool = False) -> None:
        """One call that finally failed with an error that counts against health."""
        self._outcomes.append(False)
        self.failures += 1
        self.last_error = redact(str(error))
        if probe:
            self._probing = False
            self._open("the probe call failed")
        elif self.opened_at is None and self.failures >= self.threshold:
            self._open(f"{self.failures} calls failed in a row")

    def release_probe(self) -> None:
        """The probe ended without a verdict (4xx, 429, cancelled): let another probe."""
        self._probing = False

    def _open(self, why: str) -> None:
        self.opened_at = self._clock()
        logger.warning(
            "circuit open for %s: %s (last: %s); failing fast for %g s",
            self.backend,
            why,
            self.last_error,
            self.reset_seconds,
        )


class PriorityGate:
    """Up to ``limit()`` holders at once; waiters are admitted repairs first, FIFO
    within a priority. Belongs to one event loop; the limit may change any time.
    """

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self.holders = 0
        self._queues: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._queues)

    async def acquire(self, priority: int) -> None:
        ahead = any(self._queues[p] for p in range(priority + 1))
        if not ahead and self.holders < self._limit():
            self.holders += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues[priority]
        queue.append(future)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                # The slot was handed over just as we were cancelled: pass it on.
                self.release()
            elif future in queue:
                queue.remove(future)
            raise

    def release(self) -> None:
        """Free a slot; it is handed on at the loop's next turn, not at once.

        The caller that just released may follow up right away (an NPC whose
        reply was invalid asks for its repair): waiting that one turn lets its
        repair take the slot before the first calls queued behind it, so an NPC
        that already cost a call is finished first even at concurrency 1.
        """
        self.holders -= 1
        asyncio.get_running_loop().call_soon(self.wake)

    def wake(self) -> None:
        """Hand free slots to waiters (after a release or a higher limit)."""
        for queue in self._queues:
            while queue and self.holders < self._limit():
                future = queue.popleft()
                if future.done():  # cancelled while waiting
                    continue
                future.set_result(None)
                self.holders += 1


# The operation label chat replies carry in metrics and the Stats tab.
CHAT_OPERATION = "chat"


@dataclass(slots=True)
class _Call:
    """One call's progress through its retries."""

    started: float
    queued: float = 0.0
    attempt: int = 0  # retries spent on errors other than 429
    rate_limited: int = 0  # 429 answers to this call
    waited: float = 0.0  # seconds this call asked to wait for 429s
    probe: bool = False  # this call is the half-open circuit's probe


@dataclass(slots=True)
class _LoopLimits:
    gate: PriorityGate
    limiter: AsyncLimiter | None


class GuardedBackend:
    """A backend wrapped in its limits. Use ``complete_json`` like the backend's.

    ``concurrency`` is the current limit (lowered on 429s, grown back on
    successes); ``max_concurrency`` is the configured one. Build it from
    settings with ``from_settings``.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        concurrency: int,
        requests_per_minute: float | None,
        retry: RetryPolicy,
        breaker_threshold: int = _setting_default("circuit_failure_threshold"),
        breaker_min_failures: int | None = None,
        breaker_max_failures: int | None = None,
        breaker_window: int = _setting_default("circuit_window"),
        breaker_reset_seconds: float = _setting_default("circuit_reset_seconds"),
        rate_limit_deadline: float = _setting_default("rate_limit_deadline"),
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """Without ``breaker_min_failures``/``breaker_max_failures`` the threshold
        stays at ``breaker_threshold``."""
        self.backend = backend
        self.metrics = metrics
        self.max_concurrency = max(1, concurrency)
        self.concurrency = self.max_concurrency
        self.requests_per_minute = requests_per_minute
        self.retry = retry
        self.rate_limit_deadline = rate_limit_deadline
        low, high = breaker_min_failures, breaker_max_failures
        self.breaker = CircuitBreaker(
            backend.name,
            min_failures=breaker_threshold if low is None else low,
            max_failures=breaker_threshold if high is None else high,
            start_failures=breaker_threshold,
            window=breaker_window,
            reset_seconds=breaker_reset_seconds,
            clock=clock,
        )
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self.retries = 0
        self.rate_limits = 0  # 429 answers seen
        # AIMD bookkeeping: calls sent before the last decrease carry an older
        # epoch, so one burst of 429s halves the limit once, not once per call.
        self._epoch = 0
        self._successes = 0
        # asyncio primitives belong to one event loop; the UI, the CLI and tests
        # each run their own, so keep one set of limits per loop.
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopLimits] = (
            weakref.WeakKeyDictionary()
        )
        if metrics is not None:
            metrics.concurrency_limit.labels(backend.name).set(self.concurrency)
            # Read at scrape time, so half-open shows although no call marks it.
            metrics.circuit_state.labels(backend.name).set_function(
                lambda: CIRCUIT_STATES[self.breaker.state]
            )
            self._publish()

    @classmethod
    def from_settings(
        cls,
        backend: Backend,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> GuardedBackend:
        """The guard for ``backend`` as the settings say: the one place settings
        become limits (defaults by backend kind from config)."""
        kind = backend.kind
        return cls(
            backend,
            concurrency=settings.max_concurrency or DEFAULT_CONCURRENCY[kind],
            requests_per_minute=settings.requests_per_minute or DEFAULT_REQUESTS_PER_MINUTE[kind],
            retry=RetryPolicy(
                settings.max_retries, settings.retry_base_delay, settings.retry_max_delay
            ),
            breaker_threshold=settings.circuit_failure_threshold,
            breaker_min_failures=settings.circuit_min_failures,
            breaker_max_failures=settings.circuit_max_failures,
            breaker_window=settings.circuit_window,
            breaker_reset_seconds=settings.circuit_reset_seconds,
            rate_limit_deadline=settings.rate_limit_deadline,
            clock=clock,
            sleep=sleep,
            rng=rng,
            metrics=metrics,
        )

    def _publish(self) -> None:
        """Push the in-flight gauge to the metrics."""
        if self.metrics is not None:
            self.metrics.in_flight.labels(self.name).set(self.in_flight)

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def waiting(self) -> int:
        """Calls of the running event loop waiting for a slot."""
        try:
            limits = self._limits.get(asyncio.get_running_loop())
        except RuntimeError:
            return 0
        return limits.gate.waiting if limits is not None else 0

    def _loop_limits(self) -> _LoopLimits:
        loop = asyncio.get_running_loop()
        limits = self._limits.get(loop)
        if limits is None:
            limiter = None
            if self.requests_per_minute:
                limiter = AsyncLimiter(self.requests_per_minute, time_period=60)
            limits = _LoopLimits(PriorityGate(lambda: self.concurrency), limiter)
            self._limits[loop] = limits
        return limits

    # -- adaptive concurrency (AIMD) ------------------------------------------------
    def _set_limit(self, limit: int, why: str) -> None:
        previous, self.concurrency = self.concurrency, limit
        logger.info(
            "%s: concurrency %d -> %d (%s; configured %d)",
            self.name,
            previous,
            limit,
            why,
            self.max_concurrency,
        )
        if self.metrics is not None:
            self.metrics.concurrency_limit.labels(self.name).set(limit)

    def _slow_down(self, epoch: int) -> None:
        """Halve the limit, once per round of calls sent under the current limit."""
        if epoch != self._epoch:
            return
        self._epoch += 1
        self._successes = 0
        if self.concurrency > 1:
            self._set_limit(max(1, self.concurrency // 2), "rate limited")

    def _speed_up(self, epoch: int) -> None:
        """One more slot after a full round (``concurrency`` calls) of successes."""
        if epoch != self._epoch or self.concurrency >= self.max_concurrency:
            return
        self._successes += 1
        if self._successes >= self.concurrency:
            self._successes = 0
            self._set_limit(self.concurrency + 1, "calls succeed again")
            # Waiters of other loops are woken by their next release: a loop with
            # waiters always has a call holding a slot.
            limits = self._limits.get(asyncio.get_running_loop())
            if limits is not None:
                limits.gate.wake()

    @asynccontextmanager
    async def _slot(self, priority: int) -> AsyncIterator[None]:
        limits = self._loop_limits()
        await limits.gate.acquire(priority)
        try:
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
        finally:
            limits.gate.release()

    async def complete_json(self, request: JSONRequest) -> JSONReply:
        """Call the backend with limits, retries and back-pressure.

        The reply's ``stats`` gain ``queue_ms`` (waiting for a slot) and
        ``attempts``. Waits happen outside the slot so others can use it.
        """
        repair = bool(request.inputs.get("repair"))
        operation = "repair" if repair else request.task
        priority = REPAIR if repair else FIRST
        call = _Call(started=self._clock())
        try:
            while True:
                call.probe = self.breaker.admit(call.probe)
                epoch = self._epoch
                slot_wanted = self._clock()
                async with self._slot(priority):
                    call.queued += self._clock() - slot_wanted
                    self.calls += 1
                    called = self._clock()
                    try:
                        reply = await self.backend.complete_json(request)
                    except BackendError as exc:
                        error = exc
                    else:
                        self._succeeded(call, epoch)
                        reply.stats["queue_ms"] = call.queued * 1000
                        reply.stats["attempts"] = call.attempt + call.rate_limited + 1
                        self._record(operation, "ok", self._clock() - called, reply.stats)
                        return reply
                await self._back_off(error, call, operation, epoch)
        finally:
            if call.probe:  # ended without a verdict: 4xx, an open circuit, cancelled
                self.breaker.release_probe()

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[str]:
        """Stream a chat reply under the same limits and back-pressure.

        The slot is held while the reply streams. A call is retried only until
        its first text arrives, so a reader never sees a reply start twice.
        """
        call = _Call(started=self._clock())
        try:
            while True:
                call.probe = self.breaker.admit(call.probe)
                epoch = self._epoch
                async with self._slot(FIRST):
                    self.calls += 1
                    called = self._clock()
                    first: float | None = None
                    try:
                        async for delta in self.backend.stream_chat(request):
                            if first is None:
                                first = self._clock()
                            yield delta
                    except BackendError as exc:
                        if first is not None:  # text was shown: no retry
                            if counts_against_health(exc):
                                self.breaker.record_failure(exc, call.probe)
                                call.probe = False
                            self._record(CHAT_OPERATION, "failed", 0.0, {})
                            raise
                        error = exc
                    else:
                        self._succeeded(call, epoch)
                        ttft = {} if first is None else {"ttft_ms": (first - called) * 1000}
                        self._record(CHAT_OPERATION, "ok", self._clock() - called, ttft)
                        return
                await self._back_off(error, call, CHAT_OPERATION, epoch)
        finally:
            if call.probe:
                self.breaker.release_probe()

    def _succeeded(self, call: _Call, epoch: int) -> None:
        self.breaker.record_success(call.probe)
        call.probe = False
        self._speed_up(epoch)

    async def _back_off(self, error: BackendError, call: _Call, operation: str, epoch: int) -> None:
        """After a failed attempt: wait as a 429 asks, back off before a retry,
        or raise when the call is out of time or retries."""
        if isinstance(error, RateLimitedError):
            self.rate_limits += 1
            self._slow_down(epoch)
            if call.probe:  # the backend answered: no verdict on its health
                self.breaker.release_probe()
                call.probe = False
            delay = self.retry.delay(call.rate_limited, error.retry_after, self._rng)
            # The waits asked for count as well as the clock, so the deadline
            # holds even when sleep and clock disagree (a fake sleep in tests).
            used = max(self._clock() - call.started, call.waited)
            if used + delay > self.rate_limit_deadline:
                self._record(operation, "failed", 0.0, {})
                raise self._rate_limit_exhausted(used, call.rate_limited + 1, error) from None
            call.rate_limited += 1
            call.waited += delay
            self.retries += 1
            self._record(operation, "rate_limited", 0.0, {})
            await self._sleep(delay)
            return
        if not (error.retryable and call.attempt < self.retry.max_retries):
            if counts_against_health(error):
                self.breaker.record_failure(error, call.probe)
                call.probe = False
            self._record(operation, "failed", 0.0, {})
            raise error
        self.retries += 1
        self._record(operation, "retried", 0.0, {})
        await self._sleep(self.retry.delay(call.attempt, error.retry_after, self._rng))
        call.attempt += 1

    def _rate_limit_exhausted(
        self, used: float, tries: int, last: RateLimitedError
    ) -> RateLimitedError:
        rpm = f"{self.requests_per_minute:g}" if self.requests_per_minute else "unlimited"
        return RateLimitedError(
            self.name,
            f"the server kept rate limiting (HTTP 429) for {used:.0f} s over {tries} tries. "
            f"Lower NPC_FORGE_MAX_CONCURRENCY (now {self.max_concurrency}) or "
            f"NPC_FORGE_REQUESTS_PER_MINUTE (now {rpm}), or raise "
            f"NPC_FORGE_RATE_LIMIT_DEADLINE (now {self.rate_limit_deadline:g} s).",
            retry_after=last.retry_after,
        )

    def _record(self, operation: str, status: str, seconds: float, stats: dict[str, float]) -> None:
        if self.metrics is None:
            return
        ttft_ms = stats.get("ttft_ms")
        self.metrics.backend_call(
            self.name, operation, status, seconds, None if ttft_ms is None else ttft_ms / 1000
        )
        self._publish()
