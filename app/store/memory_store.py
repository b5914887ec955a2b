"""NPC memories in ChromaDB: one ``memories-<digest>`` collection per NPC.

One document per memory: the text is what gets embedded; the metadata holds
the fields retrieval ranks on (``npc_id``, ``player``, ``owner``, ``kind``,
``importance``, ``created_at``, ``last_accessed``, ``speaker``) and the user's
own fields from an import as one JSON string, so they come back exactly as
given (types included) and can never collide with ours.

Why a collection per NPC and not one ``memories`` collection filtered with
``where={"npc_id": ...}``: embedded Chroma (1.5) evaluates a ``where`` by
scanning that key over the whole database, so a filtered search cost 17 ms
with 20k memories stored and 160 ms with 50k, however few were the NPC's,
while an unfiltered search of one collection costs 2-6 ms even at 100k
(benchmarks/chat.py). Per NPC, a search needs no filter, clearing an NPC
drops its collection, and one NPC's memories never slow down another's.

A memory without a player (a reflection, most imports) is stored with
``player=""`` and belongs to every conversation of its NPC. Searches filter
players in Python, over-fetching until enough of the player's own and the
shared memories are found (exact, and one query when the NPC talks mostly
with one player), again to keep ``where`` off the search path.

``owner`` is the signed-in user whose conversation a memory came from
(``player`` is only the name they typed). ``""`` is the team's (memories
written before owners existed get it, once per NPC). Reads take ``owners``,
the owners whose memories a caller may see (None = everyone's), and filter
them in Python the same way as players: with sign-in, a team NPC that many
users talk to still costs one unfiltered search per retrieval.

Calls are synchronous, like Chroma's client; the memory service runs them in
threads. Writes go in batches under Chroma's limit, never one call per memory.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

import orjson

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from app.store.embeddings import MiniLMEmbeddings

PREFIX = "memories-"
# Chroma refuses larger add batches (~5461 here).
ADD_BATCH = 4000
MemoryKind = Literal["observation", "dialogue", "reflection", "imported"]
KINDS: tuple[str, ...] = get_args(MemoryKind)
# The kinds that count towards the next reflection: what happened in conversations.
# Reflections are about them, and imports are old history, not news.
EXPERIENCED: tuple[str, ...] = ("observation", "dialogue")
_ANY_PLAYER = ""
# The most results one search asks Chroma for (it refuses more than its batch limit).
MAX_FETCH = 4000
R = TypeVar("R")
_USER = "user_json"
OWNER = "owner"
# Set on an NPC's collection once every memory in it carries an owner.
OWNERS_MARK = "npc_forge_owners"
TEAM = ""  # the owner of the team's memories (and of those made before owners existed)
# The owners whose memories a caller sees ("" = the team's); None = everyone's.
Owners = Sequence[str] | None


@dataclass(frozen=True, slots=True)
class Memory:
    """One thing an NPC remembers; times are epoch seconds."""

    id: str
    npc_id: str
    text: str
    kind: str
    importance: int
    created_at: float
    last_accessed: float
    player: str | None = None
    speaker: str | None = None
    # The user's own fields (from an import), returned as given.
    metadata: Mapping[str, Any] = field(default_factory=dict)
    owner: str | None = None  # the signed-in user it came from; None = the team's

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "npc_id": self.npc_id,
            "text": self.text,
            "kind": self.kind,
            "importance": self.importance,
            "created_at": self.created_at,
            "last_accessed": self.last_accessed,
            "player": self.player,
            "speaker": self.speaker,
            "metadata": dict(self.metadata),
            "owner": self.owner,
        }

    def as_import_line(self) -> dict[str, Any]:
        """The memory in the import format (``memory import`` reads it back)."""
        line: dict[str, Any] = {**self.metadata, "text": self.text}
        line["created_at"] = datetime.fromtimestamp(self.created_at, UTC).isoformat()
        line["importance"] = self.importance
        line["kind"] = self.kind
        if self.speaker:
            line["speaker"] = self.speaker
        if self.player:
            line["player"] = self.player
        return line


def memory_id(
    npc_id: str,
    player: str | None,
    kind: str,
    text: str,
    created_at: float,
    speaker: str | None,
    owner: str | None = None,
) -> str:
    """Ids follow from content, so adding the same memory twice (a retried write,
    a file imported again) replaces it instead of storing a duplicate. The owner is
    part of it (the team's ids are as before owners existed), so two users
    importing one file each keep their own copy instead of taking the other's."""
    parts = [npc_id, player or "", kind, text, repr(created_at), speaker or ""]
    key = "\x1f".join([*parts, owner] if owner else parts)
    return "mem-" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A memory found by similarity, with its cosine distance to the query."""

    memory: Memory
    distance: float


def _metadata(memory: Memory) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "npc_id": memory.npc_id,
        "player": memory.player or _ANY_PLAYER,
        OWNER: memory.owner or TEAM,
        "kind": memory.kind,
        "importance": int(memory.importance),
        "created_at": float(memory.created_at),
        "last_accessed": float(memory.last_accessed),
    }
    if memory.speaker:
        meta["speaker"] = memory.speaker
    if memory.metadata:
        meta[_USER] = orjson.dumps(dict(memory.metadata)).decode()
    return meta


def _memory(memory_id: str, text: str | None, meta: Mapping[str, Any]) -> Memory:
    user = meta.get(_USER)
    return Memory(
        id=memory_id,
        npc_id=str(meta["npc_id"]),
        text=text or "",
        kind=str(meta["kind"]),
        importance=int(meta["importance"]),
        created_at=float(meta["created_at"]),
        last_accessed=float(meta["last_accessed"]),
        player=str(meta.get("player") or "") or None,
        speaker=str(meta.get("speaker") or "") or None,
        metadata=orjson.loads(str(user)) if user else {},
        owner=str(meta.get(OWNER) or "") or None,
    )


def _give_every_memory_an_owner(collection: Collection, batch: int) -> None:
    """Memories written before owners existed get ``owner=""`` (the team's), once per
    collection, so a ``where`` on the owner counts them (a missing key never matches)."""
    if (collection.metadata or {}).get(OWNERS_MARK):
        return
    found = collection.get(include=["metadatas"])
    missing = [
        (memory_id, {**(meta or {}), OWNER: TEAM})
        for memory_id, meta in zip(found["ids"], found["metadatas"] or (), strict=True)
        if OWNER not in (meta or {})
    ]
    for part in _chunks(missing, batch):
        chunk = missing[part]
        collection.update(ids=[i for i, _ in chunk], metadatas=[m for _, m in chunk])
    # Chroma refuses a changed hnsw:space, even the same value given again.
    kept = {k: v for k, v in (collection.metadata or {}).items() if k != "hnsw:space"}
    collection.modify(metadata={**kept, OWNERS_MARK: True})


def _rows(result: Mapping[str, Any]) -> list[Memory]:
    ids = result["ids"]
    documents = result.get("documents") or [None] * len(ids)
    metadatas = result.get("metadatas") or []
    return [_memory(i, d, m) for i, d, m in zip(ids, documents, metadatas, strict=True)]


def collection_name(npc_id: str, prefix: str = PREFIX) -> str:
    """A valid Chroma name for any NPC id (3-512 of [a-zA-Z0-9._-])."""
    return prefix + hashlib.blake2b(npc_id.encode(), digest_size=16).hexdigest()


def _chunks(items: Sequence[Any], size: int) -> Iterator[slice]:
    for start in range(0, len(items), size):
        yield slice(start, start + size)


def _fetch_size(n: int, share: float) -> int:
    """How many to ask for to get ``n`` of a player's, when ``share`` of the
    results were theirs or shared (a fifth more, for the spread between searches)."""
    return min(MAX_FETCH, max(n, math.ceil(n / max(share, 1 / 64) * 1.2)))


def _allowed(memory: Memory, player: str | None, owners: Owners) -> bool:
    return (player is None or memory.player is None or memory.player == player) and visible(
        memory, owners
    )


def visible(memory: Memory, owners: Owners) -> bool:
    """Whether a caller who sees ``owners``' memories ("" = the team's) sees this one."""
    return owners is None or (memory.owner or TEAM) in owners


def owners_key(owners: Owners) -> str:
    """``owners`` as one text, for keys (the same set gives the same text)."""
    return "\x00all" if owners is None else "\x1f".join(sorted(owners))


class MemoryStore:
    """The memory collections of one Chroma client (one collection per NPC)."""

    def __init__(
        self,
        client: ClientAPI,
        *,
        embedder: MiniLMEmbeddings | None = None,
        threads: int = 1,
        prefix: str = PREFIX,
        batch: int = ADD_BATCH,
    ) -> None:
        """``embedder``: share the NPC store's (one model in memory), or None for an own
        one. ``batch``: memories per write call (at most Chroma's limit)."""
        from app.store.embeddings import MiniLMEmbeddings

        self.client = client
        self.prefix = prefix
        self.batch = min(batch, ADD_BATCH)
        self.embedder = embedder if embedder is not None else MiniLMEmbeddings(threads=threads)
        self._handles: dict[str, Collection] = {}
        # Per (npc, player, owners): the share of search results that were theirs or shared.
        self._shares: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_client(cls, client: ClientAPI, threads: int = 1) -> MemoryStore:
        return cls(client, threads=threads)

    def warm(self) -> None:
        """Load the embedding model now rather than on the first search."""
        self.embedder(["warm up"])

    # -- collections --------------------------------------------------------------
    def collection_for(self, npc_id: str, *, create: bool = False) -> Collection | None:
        """The NPC's collection (made when ``create``), or None when it has none."""
        from chromadb.errors import NotFoundError

        with self._lock:
            found = self._handles.get(npc_id)
        if found is not None:
            return found
        name = collection_name(npc_id, self.prefix)
        ef: Any = self.embedder
        try:
            if create:
                found = self.client.get_or_create_collection(
                    name=name,
                    embedding_function=ef,
                    metadata={"hnsw:space": "cosine", "npc_id": npc_id, OWNERS_MARK: True},
                )
            else:
                found = self.client.get_collection(name=name, embedding_function=ef)
            _give_every_memory_an_owner(found, self.batch)
        except NotFoundError:
            return None
        with self._lock:
            self._handles[npc_id] = found
        return found

    def _writable(self, npc_id: str) -> Collection:
        collection = self.collection_for(npc_id, create=True)
        if collection is None:  # pragma: no cover - get_or_create always gives one
            raise RuntimeError(f"Chroma gave no collection for {npc_id!r}")
        return collection

    def _forget(self, npc_id: str) -> None:
        with self._lock:
            self._handles.pop(npc_id, None)
            for key in [key for key in self._shares if key[0] == npc_id]:
                del self._shares[key]

    def _read(self, npc_id: str, read: Callable[[Collection], R], empty: R) -> R:
        """``read`` on the NPC's collection; ``empty`` when there is none (also when
        another app instance dropped it since this one last looked)."""
        from chromadb.errors import NotFoundError

        for _ in range(2):
            collection = self.collection_for(npc_id, create=False)
            if collection is None:
                return empty
            try:
                return read(collection)
            except NotFoundError:
                self._forget(npc_id)
        return empty

    # -- writing ------------------------------------------------------------------
    def add(
        self, memories: Sequence[Memory], embeddings: Sequence[Sequence[float]] | None = None
    ) -> None:
        """Add or replace memories, one upsert per NPC and batch of thousands. Chroma
        embeds the texts unless ``embeddings`` are given (benchmarks fill with vectors)."""
        from chromadb.errors import NotFoundError

        by_npc: dict[str, list[int]] = {}
        for index, memory in enumerate(memories):
            by_npc.setdefault(memory.npc_id, []).append(index)
        for npc_id, indexes in by_npc.items():
            try:
                self._upsert(npc_id, memories, indexes, embeddings)
            except NotFoundError:  # dropped by another app instance: make it again
                self._forget(npc_id)
                self._upsert(npc_id, memories, indexes, embeddings)

    def _upsert(
        self,
        npc_id: str,
        memories: Sequence[Memory],
        indexes: Sequence[int],
        embeddings: Sequence[Sequence[float]] | None,
    ) -> None:
        collection = self._writable(npc_id)
        for part in _chunks(indexes, self.batch):
            chunk = [memories[i] for i in indexes[part]]
            vectors = None if embeddings is None else [embeddings[i] for i in indexes[part]]
            collection.upsert(
                ids=[m.id for m in chunk],
                documents=[m.text for m in chunk],
                metadatas=[_metadata(m) for m in chunk],
                embeddings=vectors,
            )

    def touch(self, npc_id: str, accessed: Mapping[str, float]) -> None:
        """Set ``last_accessed`` of many memories in one batched update (Chroma
        merges the given key into each memory's metadata; unknown ids are ignored)."""
        items = list(accessed.items())

        def update(collection: Collection) -> None:
            for part in _chunks(items, self.batch):
                chunk = items[part]
                collection.update(
                    ids=[memory_id for memory_id, _ in chunk],
                    metadatas=[{"last_accessed": float(at)} for _, at in chunk],
                )

        self._read(npc_id, update, None)

    def delete_npc(self, npc_id: str) -> int:
        """Forget everything an NPC remembers; the number of memories deleted."""
        from chromadb.errors import NotFoundError

        count = self.count(npc_id)
        self._forget(npc_id)
        try:
            self.client.delete_collection(collection_name(npc_id, self.prefix))
        except NotFoundError:
            return 0
        return count

    # -- reading ------------------------------------------------------------------
    def embed_query(self, query: str) -> list[float]:
        return [float(x) for x in self.embedder([query])[0]]

    def candidates(
        self,
        npc_id: str,
        query: str,
        *,
        n: int,
        player: str | None = None,
        owners: Owners = None,
        query_embedding: Sequence[float] | None = None,
    ) -> list[Candidate]:
        """Up to ``n`` of the NPC's memories closest in meaning to ``query``: the
        player's own and those shared by every player (all of them when no player),
        of the ``owners`` given (everyone's when None)."""

        def search(collection: Collection) -> list[Candidate]:
            vector: Sequence[float] = (
                self.embed_query(query)
                if query_embedding is None
                else [float(x) for x in query_embedding]
            )
            key = (npc_id, player or "", owners_key(owners))
            with self._lock:
                share = self._shares.get(key, 1.0)
            fetch = _fetch_size(n, share)
            while True:
                result = collection.query(
                    query_embeddings=[vector],
                    n_results=fetch,
                    include=["documents", "metadatas", "distances"],
                )
                ids = result["ids"][0]
                documents = (result["documents"] or [[]])[0]
                metadatas = (result["metadatas"] or [[]])[0]
                distances = (result["distances"] or [[]])[0]
                found = [
                    Candidate(_memory(i, d, m), float(distance))
                    for i, d, m, distance in zip(ids, documents, metadatas, distances, strict=True)
                ]
                allowed = [c for c in found if _allowed(c.memory, player, owners)]
                if found:
                    with self._lock:  # the next search of this player starts the right size
                        self._shares[key] = len(allowed) / len(found)
                # Enough of them, or the whole collection read: exactly the closest n.
                if len(allowed) >= n or len(found) < fetch:
                    return allowed[:n]
                # Other players' memories crowd this one's out: look further.
                fetch = max(2 * fetch, _fetch_size(n, len(allowed) / len(found)))

        return self._read(npc_id, search, [])

    def count(self, npc_id: str, owners: Owners = None) -> int:
        if owners is None:
            return self._read(npc_id, lambda collection: collection.count(), 0)
        # Every memory carries an owner key (see collection_for): ids only, no metadata
        # to read (130 ms instead of 1.4 s for 13k of 20k memories here).
        where: Any = {OWNER: {"$in": list(owners)}}
        return self._read(npc_id, lambda c: len(c.get(where=where, include=[])["ids"]), 0)

    def list_memories(self, npc_id: str, *, limit: int, owners: Owners = None) -> list[Memory]:
        """The NPC's newest memories first. Chroma keeps no order, so every
        memory's metadata is read and sorted; only the texts shown are read."""

        def newest(collection: Collection) -> list[Memory]:
            rows = [m for m in _rows(collection.get(include=["metadatas"])) if visible(m, owners)]
            top = sorted(rows, key=lambda m: (-m.created_at, m.id))[:limit]
            if not top:
                return []
            texts = collection.get(ids=[m.id for m in top], include=["documents"])
            by_id = dict(zip(texts["ids"], texts["documents"] or [], strict=True))
            return [replace(m, text=by_id.get(m.id) or "") for m in top]

        return self._read(npc_id, newest, [])

    def since(
        self,
        npc_id: str,
        after: float | None,
        kinds: Sequence[str],
        *,
        texts: bool = False,
        owners: Owners = None,
    ) -> list[Memory]:
        """The NPC's memories of these kinds created after ``after`` (all when None)."""
        clauses: list[dict[str, Any]] = [{"kind": {"$in": list(kinds)}}]
        if after is not None:
            clauses.append({"created_at": {"$gt": after}})
        where: Any = clauses[0] if len(clauses) == 1 else {"$and": clauses}
        include: Any = ["metadatas", "documents"] if texts else ["metadatas"]
        return self._read(
            npc_id,
            lambda collection: [
                m for m in _rows(collection.get(where=where, include=include)) if visible(m, owners)
            ],
            [],
        )

    def newest_created(self, npc_id: str, kind: str, owners: Owners = None) -> float | None:
        """When the NPC's newest memory of a kind was created, or None."""

        def newest(collection: Collection) -> float | None:
            found = _rows(collection.get(where={"kind": kind}, include=["metadatas"]))
            times = [m.created_at for m in found if visible(m, owners)]
            return max(times) if times else None

        return self._read(npc_id, newest, None)

    def delete_owned(self, npc_id: str, owner: str) -> int:
        """Forget one user's memories of an NPC (the team's and others' stay); the
        number deleted. A ``where`` here is fine: it reads one NPC's collection."""

        def delete(collection: Collection) -> int:
            ids = collection.get(where={OWNER: owner}, include=[])["ids"]
            for part in _chunks(ids, self.batch):
                collection.delete(ids=ids[part])
            return len(ids)

        return self._read(npc_id, delete, 0)


__all__ = [
    "EXPERIENCED",
    "KINDS",
    "Candidate",
    "Memory",
    "MemoryKind",
    "MemoryStore",
    "Owners",
    "collection_name",
    "memory_id",
    "owners_key",
    "visible",
]
