"""Per-user quotas: NPCs per hour, chat messages per minute, dialogue lines per
hour, jobs at a time.

Each user (the signed-in name, or the client's address without sign-in) has a
sliding window per kind. A request that would pass the limit is refused with
the time when it would fit; nothing is half-charged. The windows are kept in
one small JSON file under the data directory, so a restart does not reset
them; the file is written by a background writer (never on the caller's time,
one write for a burst of charges) and flushed by ``aclose()``. Jobs (casts)
are bounded per user: ``jobs_running`` run, up to ``jobs_queued`` more wait
their turn, any further one is refused at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app.errors import InputError
from utils.jsonio import atomic_write_bytes
from utils.latest_writer import LatestWriter

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)

Kind = Literal["npcs", "chat", "lines"]
WINDOWS: dict[Kind, float] = {"npcs": 3600.0, "chat": 60.0, "lines": 3600.0}
WHAT: dict[Kind, str] = {
    "npcs": "NPCs per hour",
    "chat": "chat messages per minute",
    "lines": "dialogue lines per hour",
}
# The Stats tab's column for each kind's window.
COLUMN: dict[Kind, str] = {
    "npcs": "npcs last hour",
    "chat": "chat last minute",
    "lines": "lines last hour",
}
ROW_COLUMNS = ("user", *COLUMN.values(), "jobs running", "jobs waiting")


class QuotaExceededError(InputError):
    """A request over a user's quota; the message says when to try again."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    npcs_per_hour: int  # 0 = no limit
    chat_per_minute: int
    jobs_running: int
    jobs_queued: int
    lines_per_hour: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> QuotaLimits:
        return cls(
            settings.quota_npcs_per_hour,
            settings.quota_chat_per_minute,
            settings.quota_jobs_running,
            settings.quota_jobs_queued,
            settings.quota_lines_per_hour,
        )

    def of(self, kind: Kind) -> int:
        return {
            "npcs": self.npcs_per_hour,
            "chat": self.chat_per_minute,
            "lines": self.lines_per_hour,
        }[kind]


def _wait_text(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, math.ceil(seconds))} s"
    return f"{math.ceil(seconds / 60)} min"


class _Jobs:
    """One user's job slots: who runs, how many wait."""

    def __init__(self, running: int) -> None:
        self.slots = asyncio.Semaphore(running)
        self.holding = 0
        self.waiting = 0


class Quotas:
    """The quota book of every user; ``path`` None keeps it in memory only."""

    def __init__(
        self,
        limits: QuotaLimits,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        # kind -> user -> (time, amount), oldest first
        self._used: dict[Kind, dict[str, deque[tuple[float, int]]]] = {
            kind: defaultdict(deque) for kind in WINDOWS
        }
        self._jobs: dict[str, _Jobs] = {}
        self.refusals: Counter[str] = Counter()
        self._load()
        self._writer = LatestWriter(self._save, name="quotas-writer")

    @classmethod
    def from_settings(cls, settings: Settings) -> Quotas:
        return cls(QuotaLimits.from_settings(settings), settings.data_dir / "quotas.json")

    # -- the windows -----------------------------------------------------------
    def _load(self) -> None:
        if self._path is None or not self._path.is_file():
            return
        try:
            saved = orjson.loads(self._path.read_bytes())
            for kind in WINDOWS:
                for user, events in saved.get(kind, {}).items():
                    self._used[kind][str(user)] = deque((float(t), int(n)) for t, n in events)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("quotas: starting afresh, cannot read %s (%s)", self._path, exc)

    def _save(self) -> None:
        """Write the windows as they are now (on the writer's thread)."""
        if self._path is None:
            return
        with self._lock:
            data = {
                kind: {u: list(e) for u, e in users.items() if e}
                for kind, users in self._used.items()
            }
        try:
            atomic_write_bytes(self._path, orjson.dumps(data), durable=False)
        except OSError as exc:
            log.warning("quotas: cannot save %s (%s)", self._path, exc)

    def _changed(self) -> None:
        if self._path is not None:
            self._writer.changed()

    @property
    def writes(self) -> int:
        """How many times the file was written (a burst of charges is one write)."""
        return self._writer.writes

    async def aclose(self) -> None:
        """Write the last charges and stop the writer (the app shuts down)."""
        await self._writer.flush()
        await asyncio.to_thread(self._writer.close)

    def _prune(self, kind: Kind, user: str, now: float) -> deque[tuple[float, int]]:
        events = self._used[kind][user]
        while events and events[0][0] <= now - WINDOWS[kind]:
            events.popleft()
        return events

    def used(self, kind: Kind, user: str) -> int:
        with self._lock:
            return sum(n for _, n in self._prune(kind, user, self._clock()))

    def charge(self, kind: Kind, user: str, amount: int = 1) -> None:
        """Count ``amount`` against ``user``'s window, or refuse all of it."""
        limit = self.limits.of(kind)
        if limit <= 0 or amount <= 0:
            return
        with self._lock:
            now = self._clock()
            events = self._prune(kind, user, now)
            used = sum(n for _, n in events)
            if used + amount > limit:
                self.refusals[kind] += 1
                raise QuotaExceededError(self._refusal(kind, events, used, amount, limit, now), 0.0)
            events.append((now, amount))
        self._changed()

    def _refusal(
        self, kind: Kind, events: deque[tuple[float, int]], used: int, amount: int, limit: int,
        now: float,
    ) -> str:  # fmt: skip
        if amount > limit:
            return (
                f"That asks for {amount} and the quota is {limit} {WHAT[kind]}; "
                f"ask for at most {limit}."
            )
        # When enough of the window has expired for this request to fit.
        freed, wait = 0, WINDOWS[kind]
        for at, n in events:
            freed += n
            if used - freed + amount <= limit:
                wait = at + WINDOWS[kind] - now
                break
        left = max(0, limit - used)
        return (
            f"Quota reached: {limit} {WHAT[kind]} ({used} used, {left} left). "
            f"Try again in {_wait_text(wait)}, or ask for fewer."
        )

    def refund(self, kind: Kind, user: str, amount: int) -> None:
        """Give back what was charged but not used (a cast stopped early)."""
        if amount <= 0:
            return
        with self._lock:
            events = self._used[kind][user]
            while amount > 0 and events:
                at, n = events.pop()
                if n > amount:
                    events.append((at, n - amount))
                amount -= n
        self._changed()

    # -- jobs ------------------------------------------------------------------
    @asynccontextmanager
    async def job(self, user: str) -> AsyncIterator[None]:
        """Hold one of ``user``'s job slots for the body; wait in a short line
        for it, and refuse when the line is full."""
        jobs = self._jobs.setdefault(user, _Jobs(max(1, self.limits.jobs_running)))
        if jobs.slots.locked() and jobs.waiting >= self.limits.jobs_queued:
            self.refusals["jobs"] += 1
            raise QuotaExceededError(
                f"You have {jobs.holding} job(s) running and {jobs.waiting} waiting, the most "
                "allowed; wait for one to finish or stop it.",
                0.0,
            )
        jobs.waiting += 1
        try:
            await jobs.slots.acquire()
        finally:
            jobs.waiting -= 1
        jobs.holding += 1
        try:
            yield
        finally:
            jobs.holding -= 1
            jobs.slots.release()

    # -- what the Stats tab and /metrics show ----------------------------------
    def rows(self) -> list[dict[str, Any]]:
        users = {u for kind in WINDOWS for u in self._used[kind]} | set(self._jobs)
        rows = []
        for user in sorted(users):
            jobs = self._jobs.get(user)
            rows.append(
                {
                    "user": user,
                    **{
                        COLUMN[kind]: f"{self.used(kind, user)} / {self._shown(kind)}"
                        for kind in WINDOWS
                    },
                    "jobs running": jobs.holding if jobs else 0,
                    "jobs waiting": jobs.waiting if jobs else 0,
                }
            )
        return rows

    def _shown(self, kind: Kind) -> str:
        limit = self.limits.of(kind)
        return str(limit) if limit > 0 else "no limit"

    def totals(self) -> dict[str, int]:
        """Usage summed over users, per kind, for /metrics."""
        return {kind: sum(self.used(kind, u) for u in list(self._used[kind])) for kind in WINDOWS}


class QuotaCollector(Collector):
    """The quotas on /metrics: usage in the current windows and refusals."""

    def __init__(self, quotas: Quotas) -> None:
        self._quotas = quotas

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        used = GaugeMetricFamily(
            "npc_forge_quota_used", "Usage in the current window, all users", labels=["kind"]
        )
        for kind, total in self._quotas.totals().items():
            used.add_metric([kind], total)
        refused = CounterMetricFamily(
            "npc_forge_quota_refusals", "Requests refused over a quota", labels=["kind"]
        )
        for kind in (*WINDOWS, "jobs"):
            refused.add_metric([kind], self._quotas.refusals[kind])
        yield used
        yield refused
