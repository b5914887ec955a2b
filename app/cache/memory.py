"""Tier 1: an in-memory LRU of responses."""

from __future__ import annotations

import threading
from typing import Any

from cachetools import LRUCache

from app.cache.stats import CacheStats
from utils.counters import Counters


class _CountingLRU(LRUCache[str, Any]):
    def __init__(self, maxsize: int, counters: Counters) -> None:
        super().__init__(maxsize)
        self._counters = counters

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self._counters.evicted()
        return item


class MemoryTier:
    """A thread-safe LRU; ``get`` returns None on a miss."""

    def __init__(self, maxsize: int = 256, name: str = "responses.memory") -> None:
        self.name = name
        self.maxsize = maxsize
        self.counters = Counters()
        self._data = _CountingLRU(maxsize, self.counters)
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            value = self._data.get(key)
        if value is None:
            self.counters.miss()
        else:
            self.counters.hit()
        return value

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> CacheStats:
        hits, misses, evictions = self.counters.snapshot()
        return CacheStats(self.name, hits, misses, len(self._data), self.maxsize, evictions)
