"""The shared parts of a running app, built lazily and once.

``Services`` is what the UI, the CLI and the tests are handed. Nothing heavy
happens at import or construction: a backend is created the first time it is
asked for, and the OpenAI SDK is imported only by the openai backend.
"""

from __future__ import annotations

import asyncio
import logging
import random
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from app.backends.guard import Clock, GuardedBackend, RetryPolicy, Sleep
from app.backends.procedural_tables import TABLES_CACHE, load_tables
from app.backends.registry import BackendRegistry, default_registry, resolve_backend_name
from app.cache.disk import DiskTier
from app.cache.memory import MemoryTier
from app.cache.response import ResponseCache
from app.cache.stats import CacheStats, StatsRegistry
from app.errors import NPCForgeError
from app.metrics import Metrics
from app.models import World
from app.personality import PERSONALITY_CACHE, PersonalityData, load_personalities
from app.services.generation import CastGenerator
from app.services.library import Library
from app.services.refine import Refiner
from app.services.worlds import list_world_files, load_world_file
from config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_REQUESTS_PER_MINUTE,
    Settings,
    resolved_cache_dir,
)
from utils.cached_json import JSONFileCache, shared_cache
from utils.jsonio import atomic_write_bytes, dumps
from utils.watching import FolderWatcher

if TYPE_CHECKING:
    from app.store.npc_store import NPCStore

log = logging.getLogger(__name__)


def safe_world_filename(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip().lower())
    return f"{stem.strip('_')[:80] or 'world'}.json"


def _json_file_stats(files: JSONFileCache) -> CacheStats:
    hits, misses, evictions = files.counters.snapshot()
    return CacheStats("json_files", hits, misses, len(files), files.maxsize, evictions)


class Services:
    """Settings plus the lazily built backends and data every feature uses."""

    def __init__(
        self,
        settings: Settings,
        registry: BackendRegistry | None = None,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else default_registry()
        self._guard_options: dict[str, object] = {
            key: value for key, value in (("clock", clock), ("sleep", sleep), ("rng", rng)) if value
        }
        self._backends: dict[str, GuardedBackend] = {}

    @property
    def worlds_dir(self) -> Path:
        return self.settings.assets_dir / "worlds"

    def world_files(self) -> dict[str, Path]:
        return list_world_files(self.worlds_dir)

    @property
    def personalities(self) -> PersonalityData:
        # Not cached here: the loader re-parses only when the file changed.
        return load_personalities(self.settings.assets_dir / "personalities.json")

    def backend_names(self) -> list[str]:
        return self.registry.names()

    def resolve_backend_name(self, requested: str | None = None) -> str:
        return resolve_backend_name(self.settings, requested)

    def backend(self, requested: str | None = None) -> GuardedBackend:
        """The guarded backend for a name (or auto), created on first use."""
        name = self.resolve_backend_name(requested)
        guarded = self._backends.get(name)
        if guarded is None:
            backend = self.registry.create(name, self.settings)
            settings = self.settings
            guarded = GuardedBackend(
                backend,
                concurrency=settings.max_concurrency or DEFAULT_CONCURRENCY[backend.kind],
                requests_per_minute=settings.requests_per_minute
                or DEFAULT_REQUESTS_PER_MINUTE[backend.kind],
                retry=RetryPolicy(
                    settings.max_retries, settings.retry_base_delay, settings.retry_max_delay
                ),
                breaker_threshold=settings.circuit_failure_threshold,
                breaker_reset_seconds=settings.circuit_reset_seconds,
                metrics=self.metrics,
                **self._guard_options,  # type: ignore[arg-type]
            )
            self._backends[name] = guarded
        return guarded

    def active_backends(self) -> list[GuardedBackend]:
        """The backends used so far in this process."""
        return list(self._backends.values())

    def cast_generator(self, requested: str | None = None) -> CastGenerator:
        return CastGenerator(
            self.backend(requested), self.personalities, self.response_cache, self.metrics
        )

    def refiner(self, requested: str | None = None) -> Refiner:
        return Refiner(self.backend(requested), self.personalities)

    @cached_property
    def library(self) -> Library:
        """The NPC library; Chroma is opened (and imported) on first use."""
        settings = self.settings

        def open_store() -> NPCStore:
            from app.store.npc_store import NPCStore

            return NPCStore.from_settings(settings)

        return Library(open_store)

    @property
    def library_worlds_dir(self) -> Path:
        return Path(self.settings.data_dir) / "worlds"

    def remember_world(self, world: World) -> None:
        """Keep the world of a saved cast, so later edits have its context."""
        path = self.library_worlds_dir / safe_world_filename(world.name)
        atomic_write_bytes(path, dumps(world.model_dump(), pretty=True))

    def world_for(self, name: str) -> World:
        """The world an NPC belongs to: shipped, remembered, or just its name."""
        for path in (
            self.world_files().get(name),
            self.library_worlds_dir / safe_world_filename(name),
        ):
            if path is not None and path.is_file():
                try:
                    return load_world_file(path)
                except NPCForgeError:
                    continue
        return World(name=name, era=name, time_period="unspecified")

    @cached_property
    def metrics(self) -> Metrics:
        """Prometheus metrics on this app's own registry, caches included."""
        return Metrics(cache_stats=self.stats.snapshot)

    @cached_property
    def response_cache(self) -> ResponseCache | None:
        """Memory LRU + disk files, or None when caching is switched off."""
        settings = self.settings
        if not settings.cache_enabled:
            return None
        memory = MemoryTier(settings.cache_memory_entries)
        disk = DiskTier(
            resolved_cache_dir(settings),
            max_entries=settings.cache_max_entries,
            max_bytes=settings.cache_max_bytes,
            pretty=settings.cache_pretty,
        )
        self.stats.register(memory.name, memory.stats)
        self.stats.register(disk.name, disk.stats)
        return ResponseCache(memory, disk)

    @cached_property
    def stats(self) -> StatsRegistry:
        """Every cache's figures in one place (CLI, Stats tab, /metrics)."""
        registry = StatsRegistry()
        files = shared_cache()
        registry.register("json_files", lambda: _json_file_stats(files))
        registry.register(PERSONALITY_CACHE.name, PERSONALITY_CACHE.stats)
        registry.register(TABLES_CACHE.name, TABLES_CACHE.stats)
        return registry

    def watch_assets(self) -> FolderWatcher:
        """Start a watcher that re-reads edited asset and world files at once
        (so a broken edit is reported when it is saved). Stop it with ``stop()``."""

        def on_change(paths: set[Path]) -> None:
            changed = {path for path in paths if path.suffix == ".json"}
            if changed:
                log.info("asset files changed: %s", ", ".join(sorted(p.name for p in changed)))
                shared_cache().refresh(changed)

        return FolderWatcher([self.settings.assets_dir], on_change).start()

    async def warm_up(self) -> None:
        """Load what the first request needs, off the request path: the shared
        files, the personality data, the tables, the library and the newest
        cached responses."""
        await asyncio.gather(
            asyncio.to_thread(lambda: self.personalities),
            asyncio.to_thread(load_tables, self.settings.assets_dir),
            *(asyncio.to_thread(load_world_file, path) for path in self.world_files().values()),
            return_exceptions=True,
        )
        if self.settings.library_autosave:
            # Open Chroma (and load the embedder) now, not on the first Generate.
            await asyncio.to_thread(lambda: self.library.store.warm())
        cache = self.response_cache
        if cache is not None and cache.disk is not None and self.settings.cache_warm_entries:
            entries = await asyncio.to_thread(cache.disk.newest, self.settings.cache_warm_entries)
            for key, value in entries:
                cache.memory.put(key, value)

    async def aclose(self) -> None:
        """Finish background cache writes and close backend connections."""
        cache = self.__dict__.get("response_cache")  # only if it was ever built
        if cache is not None:
            await cache.flush()
        for guarded in self._backends.values():
            await guarded.backend.aclose()
