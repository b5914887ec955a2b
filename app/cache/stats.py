"""What every cache shares: one registry of statistics (every cache reports
the same figures) and the ``validate`` hook the response tiers accept."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from utils.text_table import format_table

# A caller's check of a cached value's shape: it raises one of REJECTIONS for a
# value it cannot use (pydantic's ValidationError is a ValueError); whatever it
# returns is ignored.
Validator = Callable[[Any], object]
REJECTIONS: tuple[type[Exception], ...] = (ValueError, TypeError, LookupError)
_PROBLEM_CHARS = 200  # pydantic's messages run to pages; a log line needs the start


def rejection(validate: Validator | None, value: Any) -> str | None:
    """Why ``validate`` rejects ``value``, or None when it accepts it (or there is
    no validator). Any other exception is a bug in the validator and propagates."""
    if validate is None:
        return None
    try:
        validate(value)
    except REJECTIONS as exc:
        problem = " ".join(f"{type(exc).__name__}: {exc}".split())
        return problem[:_PROBLEM_CHARS]
    return None


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of one cache."""

    name: str
    hits: int
    misses: int
    size: int
    maxsize: int | None
    evictions: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hit_rate": round(self.hit_rate, 4)}


TABLE_COLUMNS = ("name", "hits", "misses", "hit_rate", "size", "maxsize", "evictions")
StatsSource = Callable[[], CacheStats]


class StatsRegistry:
    """Caches register a ``stats()`` callable under a unique name."""

    def __init__(self) -> None:
        self._sources: dict[str, StatsSource] = {}
        self._lock = threading.Lock()

    def register(self, name: str, source: StatsSource) -> None:
        with self._lock:
            self._sources[name] = source

    def names(self) -> list[str]:
        return sorted(self._sources)

    def snapshot(self) -> list[CacheStats]:
        with self._lock:
            sources = list(self._sources.values())
        return sorted((source() for source in sources), key=lambda stats: stats.name)

    def table(self) -> str:
        """The snapshot as an aligned text table (CLI)."""
        rows = [{**s.as_dict(), "hit_rate": f"{s.hit_rate:.1%}"} for s in self.snapshot()]
        return format_table(rows, TABLE_COLUMNS)
