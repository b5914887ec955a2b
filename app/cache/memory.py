"""Tier 1: an in-memory LRU of responses."""

from __future__ import annotations

import logging
import threading
from typing import Any

from cachetools import LRUCache

from app.cache.stats import CacheStats, Validator, rejection
from config import setting_default
from utils.counters import Counters

log = logging.getLogger(__name__)


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

    def __init__(
        self, maxsize: int = setting_default("cache_memory_entries"), name: str = "responses.memory"
    ) -> None:
        self.name = name
        self.maxsize = maxsize
        self.counters = Counters()
        self._data = _CountingLRU(maxsize, self.counters)
        self._lock = threading.Lock()

    def get(self, key: str, validate: Validator | None = None) -> Any:
        """The value, or None (a miss). A value ``validate`` rejects is dropped
        and counted as a miss, so the caller recomputes it."""
        with self._lock:
            value = self._data.get(key)
        problem = None if value is None else rejection(validate, value)
        if problem is not None:
            # Validated outside the lock (it may be slow); drop only the value we
            # checked, not one a writer put there since.
            with self._lock:
                if self._data.get(key) is value:
                    del self._data[key]
            log.warning("cached value %s has the wrong shape (%s); dropped", key[:12], problem)
            value = None
        if value is None:
            self.counters.miss()
        else:
            self.counters.hit()
        return value

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value

    def put_if_absent(self, key: str, value: Any) -> bool:
        """Store unless the key holds a value; True when stored. A value read from
        a slower tier must not overwrite one written while it was being read."""
        with self._lock:
            if self._data.get(key) is not None:
                return False
            self._data[key] = value
            return True

    def discard(self, key: str) -> None:
        """Forget one key (no error when absent)."""
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> CacheStats:
        hits, misses, evictions = self.counters.snapshot()
        return CacheStats(self.name, hits, misses, len(self._data), self.maxsize, evictions)
