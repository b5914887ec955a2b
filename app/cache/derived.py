"""Values built from parsed files, rebuilt only when a source file changed.

The JSON file cache hands back the same object until a file changes, so
"changed" is an identity check on the source objects: no hashing, no
re-parsing, and a broken edit (which keeps the old object) keeps the old value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from cachetools import LRUCache

from app.cache.stats import CacheStats
from utils.counters import Counters

T = TypeVar("T")


class DerivedCache(Generic[T]):
    def __init__(self, name: str, maxsize: int = 128) -> None:
        self.name = name
        self.maxsize = maxsize
        self._entries: LRUCache[Hashable, tuple[tuple[Any, ...], T]] = LRUCache(maxsize)
        self._lock = threading.Lock()
        self.counters = Counters()

    def get(self, key: Hashable, sources: tuple[Any, ...], build: Callable[[], T]) -> T:
        """``build()``, unless the same ``sources`` objects built the value for ``key``."""
        with self._lock:
            entry = self._entries.get(key)
        if (
            entry is not None
            and len(entry[0]) == len(sources)
            and all(old is new for old, new in zip(entry[0], sources, strict=True))
        ):
            self.counters.hit()
            return entry[1]
        self.counters.miss()
        value = build()
        with self._lock:
            self._entries[key] = (sources, value)
        return value

    def stats(self) -> CacheStats:
        hits, misses, evictions = self.counters.snapshot()
        return CacheStats(self.name, hits, misses, len(self._entries), self.maxsize, evictions)
