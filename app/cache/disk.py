"""Tier 2: responses as JSON files, shared by every process on the machine.

Layout: ``<dir>/<2 hex>/<64 hex>.json`` holding ``{"k": key, "t": time, "v": value}``.
Writes are atomic (temp file in the same directory, fsync, rename), so a
reader sees a whole old file or a whole new one; a file lock serialises
writers and eviction across processes. A file that does not parse, or holds
another key, is moved to ``quarantine/`` and counted as a miss: a bad file
never crashes anything. Temp files left by a killed writer are swept up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock

from app.cache.stats import CacheStats
from utils.counters import Counters
from utils.jsonio import atomic_write_bytes, dumps

log = logging.getLogger(__name__)

QUARANTINE = "quarantine"
# A temp file older than this belongs to a writer that died.
STALE_TEMP_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class DiskUsage:
    entries: int
    bytes: int


class DiskTier:
    """``get``/``put`` of JSON values by hex key under a directory."""

    def __init__(
        self,
        directory: Path,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 256 * 1024 * 1024,
        pretty: bool = False,
        name: str = "responses.disk",
    ) -> None:
        self.directory = directory
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.pretty = pretty
        self.name = name
        self.counters = Counters()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file_lock = FileLock(str(self.directory / ".lock"))
        self._thread_lock = threading.Lock()  # FileLock is reentrant per object, not per thread
        self._usage: DiskUsage | None = None  # lazily counted, then kept up to date

    # -- paths ------------------------------------------------------------------
    def path_for(self, key: str) -> Path:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are lowercase hex digests, not {key[:20]!r}")
        return self.directory / key[:2] / f"{key}.json"

    def _entry_files(self) -> Iterator[Path]:
        for shard in self.directory.iterdir():
            if shard.is_dir() and len(shard.name) == 2:
                yield from shard.glob("*.json")

    # -- reading ----------------------------------------------------------------
    def get(self, key: str) -> Any:
        """The stored value, or None (a miss) when absent or unreadable."""
        path = self.path_for(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self.counters.miss()
            return None
        try:
            record = orjson.loads(raw)
            if not isinstance(record, dict) or record.get("k") != key or "v" not in record:
                raise ValueError("not a cache record for this key")
        except ValueError as exc:
            self._quarantine(path, str(exc))
            self.counters.miss()
            return None
        if record["v"] is None:  # None means "miss" to every tier
            self.counters.miss()
            return None
        self.counters.hit()
        return record["v"]

    def _quarantine(self, path: Path, problem: str) -> None:
        target = self.directory / QUARANTINE / f"{path.stem}.{time.time_ns()}.json"
        target.parent.mkdir(exist_ok=True)
        try:
            path.replace(target)
        except FileNotFoundError:
            return  # another process moved it first
        log.warning("cache file %s is corrupt (%s); moved to %s", path.name, problem, target)
        with self._thread_lock:
            self._usage = None  # recount on the next write

    # -- writing ----------------------------------------------------------------
    def put(self, key: str, value: Any) -> None:
        """Store atomically; evicts the oldest entries when over the bounds."""
        path = self.path_for(key)
        data = dumps({"k": key, "t": time.time(), "v": value}, pretty=self.pretty)
        with self._thread_lock, self._file_lock:
            usage = self._usage or self._count()  # counted before this write
            existed = path.exists()
            old_size = path.stat().st_size if existed else 0
            atomic_write_bytes(path, data)
            usage = DiskUsage(
                usage.entries + (0 if existed else 1), usage.bytes + len(data) - old_size
            )
            if usage.entries > self.max_entries or usage.bytes > self.max_bytes:
                usage = self._evict()
            self._usage = usage

    def _count(self) -> DiskUsage:
        entries = total = 0
        for path in self._entry_files():
            try:
                total += path.stat().st_size
                entries += 1
            except FileNotFoundError:
                continue
        return DiskUsage(entries, total)

    def _evict(self) -> DiskUsage:
        """Drop the oldest files until under 90% of both bounds (hysteresis keeps
        a full cache from rescanning on every write). Caller holds the locks."""
        files = []
        for path in self._entry_files():
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            files.append((info.st_mtime_ns, info.st_size, path))
        files.sort()
        entries, total = len(files), sum(size for _, size, _ in files)
        target_entries, target_bytes = int(self.max_entries * 0.9), int(self.max_bytes * 0.9)
        evicted = 0
        for _, size, path in files:
            if entries <= target_entries and total <= target_bytes:
                break
            path.unlink(missing_ok=True)
            entries, total, evicted = entries - 1, total - size, evicted + 1
        self.counters.evicted(evicted)
        self.sweep_temp_files()
        return DiskUsage(entries, total)

    def sweep_temp_files(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Delete temp files that a killed writer left behind."""
        cutoff = time.time() - older_than
        removed = 0
        for shard in self.directory.iterdir():
            if not shard.is_dir():
                continue
            for temp in shard.glob(".*.tmp"):
                try:
                    if temp.stat().st_mtime < cutoff:
                        temp.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    def clear(self) -> int:
        """Delete every entry; returns how many."""
        with self._thread_lock, self._file_lock:
            removed = 0
            for path in list(self._entry_files()):
                path.unlink(missing_ok=True)
                removed += 1
            self._usage = DiskUsage(0, 0)
        return removed

    def newest(self, limit: int) -> list[tuple[str, Any]]:
        """The most recently written entries (for warming the memory tier)."""
        files = []
        for path in self._entry_files():
            try:
                files.append((path.stat().st_mtime_ns, path))
            except FileNotFoundError:
                continue
        files.sort(reverse=True)
        found = []
        for _, path in files[:limit]:
            value = self.get(path.stem)
            if value is not None:
                found.append((path.stem, value))
        return found

    def usage(self) -> DiskUsage:
        with self._thread_lock:
            if self._usage is None:
                self._usage = self._count()
            return self._usage

    def stats(self) -> CacheStats:
        hits, misses, evictions = self.counters.snapshot()
        return CacheStats(
            self.name, hits, misses, self.usage().entries, self.max_entries, evictions
        )


def describe_usage(usage: DiskUsage) -> str:
    return f"{usage.entries} entries, {usage.bytes / 1024:.1f} KiB"


__all__ = ["DiskTier", "DiskUsage", "describe_usage"]
