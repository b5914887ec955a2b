"""The files under assets/ and what is built from them, each read once per version.

One ``Assets`` per app, built by the composition root: it owns the JSON file
cache (mtime-keyed, last good version on a broken edit), the parsed
personality data and the procedural tables, and reports every one of those
caches to the stats registry. Nothing here is a module global, so two apps in
one process (the tests) never share state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.backends.procedural_tables import MEMO_NAMES, TABLE_FILES, Tables, build_tables
from app.cache.derived import DerivedCache
from app.cache.stats import CacheStats, StatsRegistry
from app.personality import PersonalityData, parse_personalities
from utils.cached_json import JSONFileCache

PERSONALITIES_FILE = "personalities.json"
CSS_FILE = "app.css"
# Versions of a derived value kept at once: the current one and a spare.
DERIVED_VERSIONS = 4


class Assets:
    """Typed views of the asset files, rebuilt only when a file changed."""

    def __init__(self, directory: Path, *, files: JSONFileCache | None = None) -> None:
        self.directory = directory.resolve()
        self.files = files if files is not None else JSONFileCache(maxsize=256)
        self._personalities: DerivedCache[PersonalityData] = DerivedCache(
            "personalities", maxsize=DERIVED_VERSIONS
        )
        self._tables: DerivedCache[Tables] = DerivedCache(
            "procedural_tables", maxsize=DERIVED_VERSIONS
        )
        self._last_tables: Tables | None = None

    @property
    def worlds_dir(self) -> Path:
        """The shipped world files (read-only)."""
        return self.directory / "worlds"

    def personalities(self) -> PersonalityData:
        """Traits and archetypes; parsed again only when the file changed."""
        path = self.directory / PERSONALITIES_FILE
        raw = self.files.read(path)
        return self._personalities.get(path, (raw,), lambda: parse_personalities(raw, path.name))

    def tables(self) -> Tables:
        """Every procedural table; rebuilt only when one of the files changed."""
        raw = {name: self.files.read(self.directory / name) for name in TABLE_FILES}
        personalities = self.personalities()
        tables = self._tables.get(
            self.directory,
            (*raw.values(), personalities),
            lambda: build_tables(raw, personalities),
        )
        self._last_tables = tables
        return tables

    def css(self) -> str:
        path = self.directory / CSS_FILE
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    def warm(self) -> None:
        """Read and build everything now (start-up warm-up, in a thread)."""
        self.tables()

    def register_stats(self, stats: StatsRegistry) -> None:
        """Put every cache this object owns into the stats registry."""
        files = self.files

        def file_stats() -> CacheStats:
            hits, misses, evictions = files.counters.snapshot()
            return CacheStats("json_files", hits, misses, len(files), files.maxsize, evictions)

        stats.register("json_files", file_stats)
        stats.register(self._personalities.name, self._personalities.stats)
        stats.register(self._tables.name, self._tables.stats)
        # The memos live in the current tables; before the first build they are empty.
        for name in MEMO_NAMES:
            stats.register(name, self._memo_source(name))

    def _memo_source(self, name: str) -> Callable[[], CacheStats]:
        return lambda: self._memo_stats(name)

    def _memo_stats(self, name: str) -> CacheStats:
        tables = self._last_tables
        if tables is None:
            return CacheStats(name, 0, 0, 0, None)
        memos = {m.name: m for m in tables.memos()}
        return memos[name].stats()
