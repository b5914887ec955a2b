"""A small thread-safe LRU memo that reports to the stats registry.

For values derived from loaded data (genre detection, a cast's names): owned
by the object whose data they derive from, so they die with it instead of
keeping old tables alive the way a module-level ``lru_cache`` would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

from app.cache.stats import CacheStats
from utils.counters import Counters

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """``get(key, build)``: the remembered value, or ``build()`` stored under ``key``."""

    def __init__(self, name: str, maxsize: int) -> None:
        self.name = name
        self.maxsize = maxsize
        self.counters = Counters()
        self._entries: LRUCache[K, V] = LRUCache(maxsize)
        self._lock = threading.Lock()

    def get(self, key: K, build: Callable[[], V]) -> V:
        with self._lock:
            if key in self._entries:
                self.counters.hit()
                return self._entries[key]
        self.counters.miss()
        value = build()  # outside the lock: builds may be slow; a race builds twice, harmlessly
        with self._lock:
            evicting = key not in self._entries and len(self._entries) >= self.maxsize
            self._entries[key] = value
        if evicting:
            self.counters.evicted()
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> CacheStats:
        hits, misses, evictions = self.counters.snapshot()
        return CacheStats(self.name, hits, misses, len(self._entries), self.maxsize, evictions)
