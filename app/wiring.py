"""The composition root: every shared part of a running app, built once.

``Services`` is what the UI, the CLI and the tests are handed. It builds the
parts (asset caches, response cache, metrics, guarded backends, library,
worlds) and gives each use-case service only what it needs; it holds no rules
of its own. Heavy parts stay lazy: a backend is created on first use (the
OpenAI SDK is imported only then) and Chroma opens on the library's first
use. ``aclose()`` finishes background work and closes connections.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from app.assets import Assets
from app.backends.guard import Clock, Sleep
from app.backends.pool import BackendPool
from app.backends.registry import BackendContext, BackendRegistry, default_registry
from app.cache.disk import DiskTier
from app.cache.memory import MemoryTier
from app.cache.response import ResponseCache
from app.cache.stats import StatsRegistry
from app.metrics import Metrics
from app.services.accounts import Accounts
from app.services.admission import Admission
from app.services.card_store import CardStore
from app.services.cast import CastLimits, CastService
from app.services.chat import ChatLimits, ChatService
from app.services.conversations import ConversationStore
from app.services.dialogue import DialogueManager
from app.services.dialogue_plan import DialogueLimits, DialoguePlanner
from app.services.exports import ExportService
from app.services.extraction import MemoryWriter
from app.services.graph import GraphLayouts
from app.services.library import Library
from app.services.memory import MemoryService
from app.services.observability import ObservabilityService
from app.services.portraits import Portraits
from app.services.quotas import QuotaCollector, Quotas
from app.services.refine import RefineService
from app.services.removal import NPCRemoval
from app.services.voices import Voices
from app.services.world_builder import WorldBuilder
from app.services.world_drafts import WorldDrafter
from app.services.worlds import WorldService
from app.store.client import SharedClient
from app.store.memory_store import MemoryStore
from app.store.npc_store import NPCStore
from config import Settings, resolved_cache_dir
from utils.watching import FolderWatcher

if TYPE_CHECKING:
    from app.store.embeddings import MiniLMEmbeddings

log = logging.getLogger(__name__)


def build_response_cache(settings: Settings, stats: StatsRegistry) -> ResponseCache | None:
    """Memory LRU + disk files, or None when caching is switched off."""
    if not settings.cache_enabled:
        return None
    memory = MemoryTier(settings.cache_memory_entries)
    disk = DiskTier(
        resolved_cache_dir(settings),
        max_entries=settings.cache_max_entries,
        max_bytes=settings.cache_max_bytes,
        pretty=settings.cache_pretty,
    )
    stats.register(memory.name, memory.stats)
    stats.register(disk.name, disk.stats)
    return ResponseCache(memory, disk)


class _SharedEmbedder:
    """The offline embedding model, made on first use and shared (it weighs ~90 MB)."""

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._model: MiniLMEmbeddings | None = None
        self._lock = threading.Lock()

    def get(self) -> MiniLMEmbeddings:
        from app.store.embeddings import MiniLMEmbeddings

        with self._lock:
            if self._model is None:
                self._model = MiniLMEmbeddings(threads=self._threads)
            return self._model


class Services:
    """The app's parts and use cases; see the module docstring."""

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
        self.stats = StatsRegistry()
        self.assets = Assets(settings.assets_dir)
        self.assets.register_stats(self.stats)
        self.metrics = Metrics(cache_stats=self.stats.snapshot)
        self.response_cache = build_response_cache(settings, self.stats)
        self.backends = BackendPool(
            settings,
            registry if registry is not None else default_registry(),
            BackendContext(assets=self.assets),
            self.metrics,
            clock=clock,
            sleep=sleep,
            rng=rng,
        )
        self.worlds = WorldService(
            self.assets.worlds_dir,
            Path(settings.data_dir) / "worlds",
            self.assets.files,
            max_setting_chars=settings.max_setting_chars,
            access_dir=Path(settings.data_dir) / "world_access",
        )
        self.world_drafts = WorldDrafter(self.backends, self.assets.files, self.assets.directory)
        # One Chroma client and one embedding model for the library and the memories,
        # both opened on first use.
        chroma = SharedClient.from_settings(settings)
        embedder = _SharedEmbedder(settings.embedding_threads)
        self.library = Library(
            lambda: NPCStore(
                chroma.get(), threads=settings.embedding_threads, embedder=embedder.get()
            ),
            self.assets.personalities,
        )
        self.memory = MemoryService.from_settings(
            lambda: MemoryStore(
                chroma.get(), threads=settings.embedding_threads, embedder=embedder.get()
            ),
            settings,
            stats=self.stats,
        )
        self.memory_writer = MemoryWriter.from_settings(
            self.memory, self.backends.get, settings, npc_name=self._npc_name
        )
        self.cast = CastService(
            backends=self.backends,
            personalities=self.assets.personalities,
            cache=self.response_cache,
            metrics=self.metrics,
            library=self.library,
            worlds=self.worlds,
            limits=CastLimits(settings.max_npcs, settings.default_temperature),
            autosave=settings.library_autosave,
        )
        self.refine = RefineService(
            self.backends,
            self.library,
            self.worlds,
            self.assets.personalities,
            default_temperature=settings.default_temperature,
        )
        # Portraits and voices: offline by default, an images/speech API when configured.
        self.portraits = Portraits.from_settings(
            settings, self.assets, self.worlds, cache=self.response_cache, stats=self.stats
        )
        self.voices = Voices.from_settings(settings, self.response_cache, self.worlds.world_for)
        self.cards = CardStore(Path(settings.data_dir) / "cards")
        self.conversations = ConversationStore(Path(settings.data_dir) / "chats")
        self.exports = ExportService(
            self.library,
            self.worlds,
            self.cards,
            portrait=self.portraits.procedural_png,
        )
        self.chat = ChatService(
            backends=self.backends,
            library=self.library,
            worlds=self.worlds,
            store=self.conversations,
            limits=ChatLimits(
                max_message_chars=settings.chat_max_message_chars,
                history_turns=settings.chat_history_turns,
                temperature=settings.default_temperature,
                max_tokens=settings.chat_max_tokens,
            ),
            recall=self.memory,
            writer=self.memory_writer,
            cards=self.cards,
        )
        self.removal = NPCRemoval(self.library, self.memory, self.conversations, self.cards)
        self.graphs = GraphLayouts()
        self.stats.register(self.graphs.memo.name, self.graphs.memo.stats)
        self.accounts = Accounts.from_settings(settings)
        self.world_builder = WorldBuilder(
            self.worlds, self.world_drafts, self.library, self.accounts
        )
        self.quotas = Quotas.from_settings(settings)
        self.metrics.registry.register(QuotaCollector(self.quotas))
        self.admission = Admission(
            self.accounts, self.quotas, self.backends, settings.designer_backends
        )
        self.dialogue = DialogueManager.from_settings(
            self.backends, self.response_cache, self.worlds.world_for, settings, self.stats
        )
        self.dialogue_planner = DialoguePlanner(
            self.library,
            self.assets.files,
            self.assets.directory,
            DialogueLimits.from_settings(settings),
        )
        self.observability = ObservabilityService(
            self.stats, self.metrics, self.backends, self.quotas, self.dialogue.limits
        )

    async def _npc_name(self, npc_id: str) -> str:
        """The name extraction prompts use for an NPC."""
        return (await self.library.get(npc_id)).name

    def watch_assets(self) -> FolderWatcher:
        """Start a watcher that re-reads edited asset and world files at once
        (so a broken edit is reported when it is saved). Stop it with ``stop()``."""
        files = self.assets.files

        def on_change(paths: set[Path]) -> None:
            changed = {path for path in paths if path.suffix == ".json"}
            if changed:
                log.info("asset files changed: %s", ", ".join(sorted(p.name for p in changed)))
                files.refresh(changed)

        return FolderWatcher([self.assets.directory], on_change).start()

    async def warm_up(self) -> None:
        """Load what the first request needs, off the request path: the asset
        files and tables, the worlds, the library and the newest cached responses."""
        results = await asyncio.gather(
            asyncio.to_thread(self.assets.warm),
            asyncio.to_thread(self.worlds.warm),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("warm-up: %s", result)
        if self.settings.library_autosave:
            # Open Chroma (and load the embedder) now, not on the first Generate.
            await asyncio.to_thread(lambda: self.library.store.warm())
        cache = self.response_cache
        if cache is not None and cache.disk is not None and self.settings.cache_warm_entries:
            entries = await asyncio.to_thread(cache.disk.newest, self.settings.cache_warm_entries)
            for key, value in entries:
                cache.memory.put(key, value)

    async def aclose(self) -> None:
        """Finish library, memory, cache and quota writes, close backend connections."""
        await self.cast.aclose()
        await self.chat.aclose()
        await self.memory.aclose()
        await self.voices.aclose()
        await self.portraits.aclose()
        if self.response_cache is not None:
            await self.response_cache.flush()
        await self.backends.aclose()
        await self.quotas.aclose()
