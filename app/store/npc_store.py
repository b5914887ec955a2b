"""NPCs in ChromaDB: one document per NPC, searchable by meaning.

The document is the NPC's profile as prose (what gets embedded); the metadata
holds the filterable fields and the whole NPC as JSON, so reading an NPC back
is lossless. Calls are synchronous (Chroma's client is); services run them in
a thread.

Reads may be limited to some ``owners`` ("" = the team's), with ``shared``
adding the NPCs their owners shared with the team: one Chroma ``where``
(``owner in owners or shared``), so a designer's search and list stay one query.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.models import NPC
from utils.native_memory import memory_releaser

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from app.store.embeddings import MiniLMEmbeddings
    from config import Settings

COLLECTION = "npcs"
OWNER = "owner"
SHARED = "shared"  # True on an NPC its owner shared with the team (absent before sharing existed)
# Set on the collection once every record carries an owner (records written
# before owners existed get "" = the team's, once).
OWNERS_MARK = "npc_forge_owners"
MAX_RESULTS = 50
# Chroma refuses larger add batches (~5461 here).
ADD_BATCH = 4000


def profile_text(npc: NPC) -> str:
    """The prose that is embedded: what a designer would search for.

    Most telling fields first: the embedder reads 128 tokens, so what gets
    cut is the tail of the backstory, not the occupation or the secret.
    """
    return (
        f"{npc.name}, {npc.occupation}, {npc.age_text()}, {npc.gender}. "
        f"Personality: {', '.join(npc.personality_traits)}. "
        f"Motivation: {npc.motivation} Secret: {npc.secret} Speech: {npc.speech_style} "
        f"Appearance: {npc.appearance} Backstory: {npc.backstory}"
    )


def metadata(npc: NPC, created: float) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": npc.name,
        "world": npc.world,
        "occupation": npc.occupation,
        "backend": npc.backend,
        "seed": npc.seed,
        "created": created,
        "npc_json": npc.model_dump_json(exclude={"timing"}),
    }
    if npc.cast_seed is not None:
        meta["cast_seed"] = npc.cast_seed
    if npc.tags:  # Chroma rejects empty lists
        meta["tags"] = list(npc.tags)
    meta[OWNER] = npc.owner or ""  # "" = the team's: filters need a value to match
    meta[SHARED] = npc.shared
    return meta


def where_filter(
    world: str | None = None,
    tag: str | None = None,
    owners: Sequence[str] | None = None,
    shared: bool = False,
) -> dict[str, Any] | None:
    """Chroma's ``where`` for these filters; ``owners`` None = anyone's, and with
    ``shared`` also every NPC shared with the team."""
    clauses: list[dict[str, Any]] = []
    if world:
        clauses.append({"world": world})
    if tag:
        clauses.append({"tags": {"$contains": tag}})
    if owners is not None:
        theirs = {OWNER: {"$in": list(owners)}}
        clauses.append({"$or": [theirs, {SHARED: True}]} if shared else theirs)
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


@dataclass(frozen=True, slots=True)
class SearchHit:
    npc: NPC
    distance: float


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class NPCStore:
    """The ``npcs`` collection of one Chroma client."""

    def __init__(
        self,
        client: ClientAPI,
        collection: str = COLLECTION,
        threads: int = 1,
        embedder: MiniLMEmbeddings | None = None,
        after_write: Callable[[], object] | None = None,
    ) -> None:
        """``embedder``: one shared with the memory store (one model in memory);
        ``after_write`` runs after each write (gives freed memory back to the OS)."""
        from app.store.embeddings import MiniLMEmbeddings

        self.client = client
        self.after_write = after_write if after_write is not None else memory_releaser()
        # (world, owner, shared) of every record, reset on every write
        self._worlds: list[tuple[str, str, bool]] | None = None
        self.embedder = embedder if embedder is not None else MiniLMEmbeddings(threads=threads)
        self.collection: Collection = client.get_or_create_collection(
            name=collection,
            embedding_function=self.embedder,  # type: ignore[arg-type]
            metadata={"hnsw:space": "cosine"},
        )
        self._give_every_record_an_owner()

    def _give_every_record_an_owner(self) -> None:
        if (self.collection.metadata or {}).get(OWNERS_MARK):
            return
        found = self.collection.get(include=["metadatas"])
        missing = [
            (record_id, {**(meta or {}), OWNER: ""})
            for record_id, meta in zip(found["ids"], found["metadatas"] or (), strict=True)
            if OWNER not in (meta or {})
        ]
        for chunk in _chunks(missing, ADD_BATCH):
            self.collection.update(ids=[i for i, _ in chunk], metadatas=[m for _, m in chunk])
        metadata = {k: v for k, v in (self.collection.metadata or {}).items() if k != "hnsw:space"}
        self.collection.modify(metadata={**metadata, OWNERS_MARK: True})

    @classmethod
    def from_settings(cls, settings: Settings) -> NPCStore:
        """Embedded under the data dir, or a Chroma server when a host is set."""
        from app.store.client import open_client

        return cls(open_client(settings), threads=settings.embedding_threads)

    def warm(self) -> None:
        """Load the embedding model now (0.3 s) rather than on the first save."""
        self.embedder(["warm up"])

    # -- writing ------------------------------------------------------------------
    def upsert(self, npcs: Sequence[NPC]) -> None:
        """Add or replace NPCs; one call per batch of thousands, not one per NPC."""
        now = time.time()
        self._worlds = None
        for chunk in _chunks(list(npcs), ADD_BATCH):
            self.collection.upsert(
                ids=[npc.id for npc in chunk],
                documents=[profile_text(npc) for npc in chunk],
                metadatas=[metadata(npc, now) for npc in chunk],
            )
        # Embedding and Chroma's write leave freed native memory in the heap.
        self.after_write()

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._worlds = None
            self.collection.delete(ids=list(ids))

    # -- reading ------------------------------------------------------------------
    @staticmethod
    def _npcs(metadatas: Sequence[Any] | None) -> list[NPC]:
        return [NPC.model_validate_json(str(meta["npc_json"])) for meta in metadatas or ()]

    def get(self, npc_id: str) -> NPC | None:
        found = self.get_many([npc_id])
        return found[0] if found else None

    def get_many(self, ids: Sequence[str]) -> list[NPC]:
        if not ids:
            return []
        result = self.collection.get(ids=list(ids), include=["metadatas"])
        by_id = {npc.id: npc for npc in self._npcs(result["metadatas"])}
        return [by_id[npc_id] for npc_id in ids if npc_id in by_id]

    def list_npcs(
        self,
        *,
        world: str | None = None,
        tag: str | None = None,
        limit: int = 100,
        offset: int = 0,
        owners: Sequence[str] | None = None,
        shared: bool = False,
    ) -> list[NPC]:
        result = self.collection.get(
            where=where_filter(world, tag, owners, shared),
            limit=limit,
            offset=offset,
            include=["metadatas"],
        )
        return sorted(self._npcs(result["metadatas"]), key=lambda npc: npc.name)

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        world: str | None = None,
        tag: str | None = None,
        owners: Sequence[str] | None = None,
        shared: bool = False,
    ) -> list[SearchHit]:
        """The ``k`` NPCs closest in meaning to ``query`` (k is capped at MAX_RESULTS)."""
        count = self.count()
        if count == 0:
            return []
        result = self.collection.query(
            query_texts=[query],
            n_results=min(max(k, 1), MAX_RESULTS, count),
            where=where_filter(world, tag, owners, shared),
            include=["metadatas", "distances"],
        )
        metadatas = (result["metadatas"] or [[]])[0]
        distances = (result["distances"] or [[]])[0]
        return [
            SearchHit(npc, float(distance))
            for npc, distance in zip(self._npcs(metadatas), distances, strict=True)
        ]

    def count(self, owners: Sequence[str] | None = None, shared: bool = False) -> int:
        if owners is None:
            return self.collection.count()
        where = where_filter(owners=owners, shared=shared)
        return len(self.collection.get(where=where, include=[])["ids"])

    def worlds(self, owners: Sequence[str] | None = None, shared: bool = False) -> list[str]:
        """Distinct worlds in the library (remembered until the next write here)."""
        if self._worlds is None:
            result = self.collection.get(include=["metadatas"])
            self._worlds = [
                (str(meta["world"]), str(meta.get(OWNER, "")), meta.get(SHARED) is True)
                for meta in result["metadatas"] or ()
            ]
        return sorted(
            {
                world
                for world, owner, is_shared in self._worlds
                if owners is None or owner in owners or (shared and is_shared)
            }
        )

    def names_in_world(self, world: str, *, except_cast_seed: int | None = None) -> set[str]:
        """Names used in a world, leaving out one cast's own (so regenerating a
        cast with its seed gives it back instead of avoiding its own names)."""
        result = self.collection.get(where={"world": world}, include=["metadatas"])
        return {
            str(meta["name"])
            for meta in result["metadatas"] or ()
            if except_cast_seed is None or meta.get("cast_seed") != except_cast_seed
        }
