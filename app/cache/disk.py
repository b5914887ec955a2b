"""Tier 2: responses as JSON files, shared by every process on the machine.

Layout: ``<dir>/<2 hex>/<64 hex>.json`` holding ``{"k": key, "t": time, "v": value}``,
and ``<dir>/.usage`` holding the directory's ``{"entries": n, "bytes": n}``.

Writes are atomic (temp file in the same directory, fsync, rename), so a
reader sees a whole old file or a whole new one. A file lock serialises
writers, eviction and the usage record across processes: every put, eviction,
clear and quarantine read-modify-writes the usage record inside the lock, so
``max_entries`` and ``max_bytes`` hold for the directory however many
processes (or instances) share it. The record is rebuilt from the files when
it is missing or unreadable, and whenever eviction runs (which lists the
files anyway), so files changed behind the cache's back skew it only until then.

Reading never raises for what is on disk: a file that does not parse, holds
another key, holds a value the caller's ``validate`` rejects, cannot be read,
or is not a regular file at all (a directory, a symlink, a FIFO) is moved to
``quarantine/`` and counted as a miss. Temp files left by a killed writer are
swept up. Constructing a tier touches no file: the first write creates the
directory, so building one on the event loop costs nothing.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock

from app.cache.stats import CacheStats, Validator, rejection
from config import setting_default
from utils.counters import Counters
from utils.jsonio import atomic_write_bytes, dumps

log = logging.getLogger(__name__)

QUARANTINE = "quarantine"
USAGE_FILE = ".usage"
# A temp file older than this belongs to a writer that died.
STALE_TEMP_SECONDS = 60.0
# ``stats()`` reports figures it saw this recently as they are; older ones are
# refreshed in the background (another process may have written since).
STATS_MAX_AGE_SECONDS = 5.0
_HEX = frozenset("0123456789abcdef")
# Never block opening a FIFO, nor follow a symlink left where an entry belongs.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)

# Runs a job off the caller's path; tests pass one that runs it when they say.
BackgroundRunner = Callable[[Callable[[], None]], None]
_Identity = tuple[int, int]  # (st_dev, st_ino): a rename-replaced file is a new inode


def _in_a_thread(job: Callable[[], None]) -> None:
    threading.Thread(target=job, name="disk-usage", daemon=True).start()


def _is_key(text: str) -> bool:
    return len(text) >= 8 and set(text) <= _HEX


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
        max_entries: int = setting_default("cache_max_entries"),
        max_bytes: int = setting_default("cache_max_bytes"),
        pretty: bool = False,
        name: str = "responses.disk",
        clock: Callable[[], float] = time.monotonic,
        stats_max_age: float = STATS_MAX_AGE_SECONDS,
        run_in_background: BackgroundRunner = _in_a_thread,
    ) -> None:
        self.directory = directory
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.pretty = pretty
        self.name = name
        self.stats_max_age = stats_max_age
        self.counters = Counters()
        self._clock = clock
        self._run_in_background = run_in_background
        self._file_lock = FileLock(str(self.directory / ".lock"))
        self._thread_lock = threading.Lock()  # FileLock is reentrant per object, not per thread
        # The last usage this instance read or wrote, and when (for ``stats()``).
        self._known: tuple[DiskUsage, float] | None = None
        self._known_lock = threading.Lock()
        self._refreshing = False

    # -- paths ------------------------------------------------------------------
    def path_for(self, key: str) -> Path:
        if not _is_key(key):
            raise ValueError(f"cache keys are lowercase hex digests, not {key[:20]!r}")
        return self.directory / key[:2] / f"{key}.json"

    def _scan(self) -> Iterator[tuple[Path, os.stat_result]]:
        """Every entry file with its lstat: regular files named for a key, in that
        key's shard. Temp files, quarantine and whatever else lies about are not
        entries."""
        try:
            with os.scandir(self.directory) as listing:
                shards = [item for item in listing if len(item.name) == 2]
        except FileNotFoundError:
            return  # nothing written yet
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            try:
                with os.scandir(shard.path) as listing:
                    items = list(listing)
            except OSError:
                continue  # vanished or unreadable: it holds nothing we can use
            for item in items:
                stem, _, suffix = item.name.partition(".")
                if suffix != "json" or not _is_key(stem) or not stem.startswith(shard.name):
                    continue
                try:
                    info = item.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed meanwhile
                if stat.S_ISREG(info.st_mode):
                    yield Path(item.path), info

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads and every other process, one at a time."""
        with self._thread_lock:
            self.directory.mkdir(parents=True, exist_ok=True)  # the lock file lives in it
            with self._file_lock:
                yield

    # -- reading ----------------------------------------------------------------
    def get(self, key: str, validate: Validator | None = None) -> Any:
        """The stored value, or None (a miss) when absent, unusable or rejected.

        ``validate`` is called with the stored value; when it raises ValueError,
        TypeError or LookupError (a pydantic ValidationError is a ValueError) the
        value has the wrong shape: its file is quarantined, a warning names the
        key and the problem, and the caller sees a miss and recomputes.
        """
        path = self.path_for(key)
        found = self._read_entry(path)
        if found is None:
            self.counters.miss()
            return None
        raw, identity = found
        try:
            record = orjson.loads(raw)
            if not isinstance(record, dict) or record.get("k") != key or "v" not in record:
                raise ValueError("not a cache record for this key")
        except ValueError as exc:
            self._quarantine(path, f"corrupt ({exc})", identity)
            self.counters.miss()
            return None
        value = record["v"]
        if value is None:  # None means "miss" to every tier
            self.counters.miss()
            return None
        problem = rejection(validate, value)
        if problem is not None:
            self._quarantine(path, f"of the wrong shape ({problem})", identity)
            self.counters.miss()
            return None
        self.counters.hit()
        return value

    def _read_entry(self, path: Path) -> tuple[bytes, _Identity] | None:
        """The bytes of the entry file and which file they came from; None when
        there is none, or when what is there cannot be used (then quarantined)."""
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a symlink (ELOOP), no permission, a failing disk
            self._quarantine(path, f"unreadable ({exc.strerror or exc})", None)
            return None
        identity: _Identity | None = None
        try:
            info = os.fstat(fd)
            identity = (info.st_dev, info.st_ino)
            if not stat.S_ISREG(info.st_mode):
                problem = "not a regular file"
            else:
                with open(fd, "rb", closefd=False) as handle:
                    return handle.read(), identity
        except OSError as exc:
            problem = f"unreadable ({exc.strerror or exc})"
        finally:
            os.close(fd)
        self._quarantine(path, problem, identity)
        return None

    def _quarantine(self, path: Path, problem: str, identity: _Identity | None) -> None:
        """Move an unusable entry aside and say so; never raises."""
        try:
            with self._locked():
                target = self._quarantine_locked(path, identity)
        except OSError as exc:
            log.warning(
                "cache entry %s is %s and could not be moved aside: %s",
                path.stem[:12],
                problem,
                exc,
            )
            return
        if target is not None:
            log.warning("cache entry %s is %s; moved to %s", path.stem[:12], problem, target)

    def _quarantine_locked(self, path: Path, identity: _Identity | None) -> Path | None:
        """Move what is at ``path`` into quarantine/ and off the usage record.

        None when it is gone or is no longer the file that was read (a writer
        replaced it with a good entry since). Caller holds the locks.
        """
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None  # another process moved it first
        if identity is not None and (info.st_dev, info.st_ino) != identity:
            return None
        counted = stat.S_ISREG(info.st_mode)  # what a recount would have counted
        usage = self._shared_usage_locked() if counted else None  # before it leaves
        target = self.directory / QUARANTINE / f"{path.stem}.{time.time_ns()}.json"
        target.parent.mkdir(exist_ok=True)
        path.replace(target)
        if usage is not None:
            self._write_usage_locked(
                DiskUsage(max(usage.entries - 1, 0), max(usage.bytes - info.st_size, 0))
            )
        return target

    # -- writing ----------------------------------------------------------------
    def put(self, key: str, value: Any) -> None:
        """Store atomically; evicts the oldest entries when over the bounds."""
        path = self.path_for(key)
        data = dumps({"k": key, "t": time.time(), "v": value}, pretty=self.pretty)
        with self._locked():
            usage = self._shared_usage_locked()  # every process's writes, before this one
            try:
                info: os.stat_result | None = os.lstat(path)
            except FileNotFoundError:
                info = None
            if info is not None and not stat.S_ISREG(info.st_mode):
                # Nothing can be renamed over a directory: move it aside first.
                target = self._quarantine_locked(path, None)
                log.warning("cache entry %s is not a regular file; moved to %s", key[:12], target)
                info = None
            old_size = info.st_size if info is not None else 0
            atomic_write_bytes(path, data)
            usage = DiskUsage(
                usage.entries + (0 if info is not None else 1), usage.bytes + len(data) - old_size
            )
            if usage.entries > self.max_entries or usage.bytes > self.max_bytes:
                usage = self._evict_locked()
            self._write_usage_locked(usage)

    def _count(self) -> DiskUsage:
        entries = total = 0
        for _, info in self._scan():
            entries += 1
            total += info.st_size
        return DiskUsage(entries, total)

    def _evict_locked(self) -> DiskUsage:
        """Drop the oldest files until under 90% of both bounds (hysteresis keeps
        a full cache from rescanning on every write). Caller holds the locks."""
        files = sorted((info.st_mtime_ns, info.st_size, path) for path, info in self._scan())
        entries, total = len(files), sum(size for _, size, _ in files)
        target_entries, target_bytes = int(self.max_entries * 0.9), int(self.max_bytes * 0.9)
        evicted = 0
        for _, size, path in files:
            if entries <= target_entries and total <= target_bytes:
                break
            try:
                path.unlink(missing_ok=True)
            except OSError:
                continue  # it stays, and stays counted
            entries, total, evicted = entries - 1, total - size, evicted + 1
        self.counters.evicted(evicted)
        self.sweep_temp_files()
        return DiskUsage(entries, total)

    def sweep_temp_files(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Delete temp files that a killed writer left behind."""
        cutoff = time.time() - older_than
        folders = [self.directory]
        try:
            with os.scandir(self.directory) as listing:
                folders += [Path(i.path) for i in listing if i.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return 0
        removed = 0
        for folder in folders:
            for temp in folder.glob(".*.tmp"):
                try:
                    if temp.lstat().st_mtime < cutoff:
                        temp.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    def clear(self) -> int:
        """Delete every entry; returns how many."""
        with self._locked():
            removed = 0
            left = DiskUsage(0, 0)
            for path, info in list(self._scan()):
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError:  # e.g. a read-only shard: it stays, and stays counted
                    left = DiskUsage(left.entries + 1, left.bytes + info.st_size)
                    continue
                removed += 1
            self._write_usage_locked(left)
        return removed

    # -- the shared usage record -------------------------------------------------
    def _usage_path(self) -> Path:
        return self.directory / USAGE_FILE

    def _read_usage(self) -> DiskUsage | None:
        """The record, or None when it is missing or not a valid record."""
        try:
            raw = self._usage_path().read_bytes()
            record = orjson.loads(raw)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        entries, size = record.get("entries"), record.get("bytes")
        if type(entries) is not int or type(size) is not int or entries < 0 or size < 0:
            return None
        return DiskUsage(entries, size)

    def _shared_usage_locked(self) -> DiskUsage:
        """The record, rebuilt from the files when unusable. Caller holds the locks."""
        usage = self._read_usage()
        if usage is None:
            usage = self._count()
            self._write_usage_locked(usage)
        return usage

    def _write_usage_locked(self, usage: DiskUsage) -> None:
        # Not fsynced: after a crash the record is rebuilt or corrected by the
        # next eviction, and an fsync per put would double the cost of a write.
        data = orjson.dumps({"entries": usage.entries, "bytes": usage.bytes})
        try:
            atomic_write_bytes(self._usage_path(), data, durable=False)
        except OSError:
            # A stale record would mislead every process: drop it so the next
            # reader recounts.
            self._usage_path().unlink(missing_ok=True)
            raise
        self._remember(usage)

    def _remember(self, usage: DiskUsage) -> None:
        with self._known_lock:
            self._known = (usage, self._clock())

    def usage(self) -> DiskUsage:
        """The directory's figures, every process's writes included.

        Reads the small usage record; recounts the files (under the file lock)
        only when the record is missing or unreadable. Blocking file I/O: call
        it from a thread or the CLI; on the event loop use ``stats()``.
        """
        usage = self._read_usage()
        if usage is None:
            if self.directory.is_dir():
                with self._locked():
                    usage = self._shared_usage_locked()
            else:
                usage = DiskUsage(0, 0)  # nothing written yet; do not create it just to say so
        self._remember(usage)
        return usage

    def recount(self) -> DiskUsage:
        """Count the files and rewrite the record (after files were changed by
        hand). A directory scan: call it from a thread or the CLI."""
        with self._locked():
            usage = self._count()
            self._write_usage_locked(usage)
        return usage

    def stats(self) -> CacheStats:
        """This instance's hits, misses and evictions, and the directory's size.

        Cheap and non-blocking, for the event loop (``/metrics``, the Stats tab):
        it reads no file. The size is the last figure this instance read or
        wrote; when that is unknown or older than ``stats_max_age`` seconds, a
        refresh (``usage()``: the record, or a recount when the record is
        missing) is started in the background, one at a time, and this call
        reports the last known size (0 before the first refresh has finished).
        """
        hits, misses, evictions = self.counters.snapshot()
        return CacheStats(
            self.name, hits, misses, self._last_known().entries, self.max_entries, evictions
        )

    def _last_known(self) -> DiskUsage:
        with self._known_lock:
            known = self._known
            stale = known is None or self._clock() - known[1] > self.stats_max_age
            start = stale and not self._refreshing
            if start:
                self._refreshing = True
        if start:
            try:
                self._run_in_background(self._refresh)
            except BaseException:
                with self._known_lock:
                    self._refreshing = False
                raise
        return known[0] if known is not None else DiskUsage(0, 0)

    def _refresh(self) -> None:
        try:
            self._learn_usage()
        finally:
            with self._known_lock:
                self._refreshing = False

    def _learn_usage(self) -> None:
        """``usage()`` for its side effect on ``stats()``; off the request path, so
        a failing disk is logged, not raised."""
        try:
            self.usage()
        except OSError as exc:
            log.warning("could not read the usage of %s: %s", self.directory, exc)

    # -- warming ----------------------------------------------------------------
    def newest(self, limit: int, validate: Validator | None = None) -> list[tuple[str, Any]]:
        """Up to ``limit`` of the most recently written usable entries (for warming
        the memory tier); unusable ones are quarantined and skipped, as by ``get``.
        Blocking: the warm-up calls it in a thread, and it refreshes the figures
        ``stats()`` reports on the way."""
        found: list[tuple[str, Any]] = []
        if limit > 0:
            files = sorted(((info.st_mtime_ns, path) for path, info in self._scan()), reverse=True)
            for _, path in files:
                if len(found) >= limit:
                    break
                value = self.get(path.stem, validate)
                if value is not None:
                    found.append((path.stem, value))
        self._learn_usage()
        return found


def describe_usage(usage: DiskUsage) -> str:
    return f"{usage.entries} entries, {usage.bytes / 1024:.1f} KiB"


__all__ = ["QUARANTINE", "USAGE_FILE", "DiskTier", "DiskUsage", "describe_usage"]
