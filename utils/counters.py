"""Thread-safe hit/miss/eviction counters for caches."""

from __future__ import annotations

import threading


class Counters:
    """What a cache counts; ``snapshot`` gives a consistent triple."""

    __slots__ = ("_lock", "evictions", "hits", "misses")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def hit(self) -> None:
        with self._lock:
            self.hits += 1

    def miss(self) -> None:
        with self._lock:
            self.misses += 1

    def evicted(self, count: int = 1) -> None:
        with self._lock:
            self.evictions += count

    def snapshot(self) -> tuple[int, int, int]:
        with self._lock:
            return self.hits, self.misses, self.evictions
