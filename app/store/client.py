"""One Chroma client for every collection of an app (``npcs``, ``memories``).

``open_client`` makes the same client ``NPCStore.from_settings`` makes: an
embedded ``PersistentClient`` under the data dir, or an ``HttpClient`` when a
Chroma host is set. ``SharedClient`` opens it on first use, once, so the
library and the memory service share one client (one connection pool, one
embedded database) and neither pays for opening Chroma before it is needed.

Memory: embedded Chroma keeps each collection's vector index resident once
used, about 2.7 MB for a small one, so every NPC with memories (one collection
each) costs that until the cache holds RLIMIT_NOFILE / 5 indexes (4,000 here).
Chroma 1.5's ``chroma_memory_limit_bytes`` and ``chroma_segment_cache_policy``
are read only by its legacy Python segment API, not by the Rust client that
``PersistentClient`` runs. Its Rust client's own cache size can be lowered, but
that evicts indexes never yet written to disk (below ``hnsw:sync_threshold``
records), and those collections then fail "Nothing found on disk" until a
restart: 34 of 80 NPCs' memories in ``benchmarks/memory.py``. So no cap is set
here; see the README (Load and memory).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from config import Settings


def open_client(settings: Settings) -> ClientAPI:
    """Embedded under ``<data_dir>/chroma``, or a Chroma server when a host is set."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_host:
        return chromadb.HttpClient(
            host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings
        )
    path = Path(settings.data_dir) / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


class SharedClient:
    """A Chroma client opened on the first ``get()`` and then handed to every caller."""

    def __init__(self, opener: Callable[[], ClientAPI]) -> None:
        self._opener = opener
        self._client: ClientAPI | None = None
        self._lock = threading.Lock()  # the UI's threads and its event loop both ask

    @classmethod
    def from_settings(cls, settings: Settings) -> SharedClient:
        return cls(lambda: open_client(settings))

    def get(self) -> ClientAPI:
        with self._lock:
            if self._client is None:
                self._client = self._opener()
            return self._client
