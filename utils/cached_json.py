"""JSON files read once per version: an LRU keyed by path and (mtime, size).

A file is parsed again only when its ``st_mtime_ns`` or ``st_size`` changed.
A broken edit (invalid JSON) keeps serving the last good version and reports
the problem once per version; a file that never parsed raises.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cachetools import LRUCache

from utils.counters import Counters

log = logging.getLogger(__name__)

Stamp = tuple[int, int]  # (st_mtime_ns, st_size)
BrokenCallback = Callable[[Path, str], None]


class BrokenJSONError(ValueError):
    """A JSON file does not parse and there is no earlier good version."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path.name}: not valid JSON ({problem})")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _Entry:
    stamp: Stamp
    data: Any
    problem: str | None = None  # set when this version is broken and data is the last good one


class JSONFileCache:
    """``read(path)`` parses a file once per version; safe across threads."""

    def __init__(
        self,
        maxsize: int = 256,
        *,
        parse: Callable[[bytes], Any] = orjson.loads,
        on_broken: BrokenCallback | None = None,
    ) -> None:
        self.maxsize = maxsize
        self._parse = parse
        self._on_broken = on_broken
        self._entries: LRUCache[str, _Entry] = LRUCache(maxsize)
        self._lock = threading.Lock()
        self.counters = Counters()

    @staticmethod
    def _key(path: Path | str) -> str:
        # abspath is string work; Path.resolve() costs a syscall per path part,
        # which would be most of the price of a hit.
        return os.path.abspath(os.fspath(path))  # noqa: PTH100

    def read(self, path: Path | str) -> Any:
        """The parsed content; raises FileNotFoundError or BrokenJSONError."""
        key = self._key(path)
        info = os.stat(key)  # noqa: PTH116 - one syscall, no Path object on the hot path
        stamp = (info.st_mtime_ns, info.st_size)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry.stamp == stamp:
            self.counters.hit()
            return entry.data
        self.counters.miss()
        resolved = Path(key)
        raw = resolved.read_bytes()
        try:
            data = self._parse(raw)
        except ValueError as exc:
            problem = str(exc)
            if entry is None:
                raise BrokenJSONError(resolved, problem) from None
            log.warning(
                "%s is not valid JSON (%s); keeping the last good version", resolved.name, problem
            )
            if self._on_broken is not None:
                self._on_broken(resolved, problem)
            new_entry = _Entry(stamp, entry.data, problem)
        else:
            new_entry = _Entry(stamp, data)
        with self._lock:
            evicting = key not in self._entries and len(self._entries) >= self.maxsize
            self._entries[key] = new_entry
        if evicting:
            self.counters.evicted()
        return new_entry.data

    def problem(self, path: Path) -> str | None:
        """Why the current version of a file is not in use, if it is broken."""
        with self._lock:
            entry = self._entries.get(self._key(path))
        return entry.problem if entry else None

    def refresh(self, paths: Iterable[Path]) -> None:
        """Re-read changed files now (the watcher calls this), so a broken edit is
        reported when it is saved, not when it is next used. Deleted files are
        forgotten. Nothing good is dropped: a broken file keeps its last version."""
        for path in paths:
            key = self._key(path)
            if not Path(key).exists():
                with self._lock:
                    self._entries.pop(key, None)
                continue
            try:
                self.read(key)
            except (BrokenJSONError, OSError) as exc:
                log.warning("cannot read %s: %s", Path(key).name, exc)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
