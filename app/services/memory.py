"""An NPC's long-term memory: store, retrieve (as in Generative Agents), import.

Retrieval asks Chroma for the ``candidates`` memories closest in meaning to
the query (only this NPC's, only this player's plus those shared by every
player, and only the owners' the caller may see), then re-ranks them by

    score = w_recency * recency + w_importance * importance + w_relevance * relevance

where recency is ``decay ** hours since last access``, importance the stored
1-10 and relevance the cosine similarity, each min-max scaled over the
candidates to 0..1. The top k are returned and their ``last_accessed`` set.

One change to the paper's formula: recency and importance are gated by
relevance. A candidate gets them in full at the best similarity, fading to
nothing at ``relevance_margin`` below it, so they order memories that are about
as relevant and never lift a recent off-topic memory over the old one that
answers (benchmarks/chat.py: recall@5 44% ungated, 98% gated, 95% plain cosine).
The same words stored twice come back once.

Owners: every memory records the signed-in user whose conversation (or import)
it came from; None is the team's (memories made without sign-in or before
owners existed). Reads take ``owners`` (None = everyone's, e.g. an admin's
memory panel); a chat recalls its owner's memories and the team's.

Caching: the candidates of a (npc, player, owners, query) are kept in a TTL LRU, and
every hit is re-ranked with the newest access times, so a hit returns what a
fresh search would. Any write to an NPC's memories (add, import, clear) drops
that NPC's entries; touching ``last_accessed`` does not, because the service
knows the new times (it wrote them) and ranks with them. Why no time in the
key: min-max scaling cancels the common factor ``decay ** (now / 1 h)``, so
scaled recency, and the ranking, do not depend on "now" at all.

Touches are written in the background (one batched update per burst, in
order, on one worker thread), so a retrieval never waits for a write;
``flush_touches()``/``aclose()`` wait for them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.cache.stats import CacheStats
from app.errors import ConfigError, InputError
from app.services.text import checked_text
from app.store.memory_store import (
    EXPERIENCED,
    KINDS,
    Candidate,
    Memory,
    MemoryKind,
    Owners,
    memory_id,
    owners_key,
)
from config import setting_default
from utils.counters import Counters

if TYPE_CHECKING:
    from app.cache.stats import StatsRegistry
    from app.store.memory_store import MemoryStore
    from config import Settings

log = logging.getLogger(__name__)

Clock = Callable[[], float]
CACHE_NAME = "memory.search"
HOUR = 3600.0
# The embedder reads 128 tokens (about 500 characters): more query text changes nothing.
MAX_QUERY_CHARS = 1000
MAX_LIST = 10_000
CHARS_PER_TOKEN = 4
# Import: valid lines are embedded and written this many at a time (bounded memory
# for any file size; each batch is one upsert); problems listed at most this many.
IMPORT_BATCH = 2000
MAX_LISTED_PROBLEMS = 100
MAX_USER_METADATA_BYTES = 4096
IMPORT_FIELDS = frozenset({"text", "created_at", "importance", "kind", "speaker", "player"})


class MemoryDraft(BaseModel):
    """A memory to add; the service gives it an id and its times."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: str = Field(min_length=1)
    importance: int = Field(ge=1, le=10)
    kind: MemoryKind = "observation"
    player: str | None = None
    speaker: str | None = None
    created_at: float | None = None  # None = now
    metadata: dict[str, Any] = Field(default_factory=dict)
    owner: str | None = None  # the signed-in user it came from; None = the team's


@dataclass(frozen=True, slots=True)
class Weights:
    recency: float = setting_default("memory_weight_recency")
    importance: float = setting_default("memory_weight_importance")
    relevance: float = setting_default("memory_weight_relevance")


@dataclass(frozen=True, slots=True)
class RetrievalPolicy:
    """How candidates are found and ranked."""

    candidates: int = setting_default("memory_candidates")
    k: int = setting_default("memory_k")
    max_k: int = setting_default("memory_max_k")
    decay: float = setting_default("memory_decay")
    weights: Weights = field(default_factory=Weights)
    relevance_margin: float = setting_default("memory_relevance_margin")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrievalPolicy:
        return cls(
            candidates=settings.memory_candidates,
            k=settings.memory_k,
            max_k=settings.memory_max_k,
            decay=settings.memory_decay,
            relevance_margin=settings.memory_relevance_margin,
            weights=Weights(
                settings.memory_weight_recency,
                settings.memory_weight_importance,
                settings.memory_weight_relevance,
            ),
        )


@dataclass(frozen=True, slots=True)
class ScoredMemory:
    """A retrieved memory with the parts of its score (each 0..1 over the candidates)."""

    memory: Memory
    score: float
    recency: float
    importance: float
    relevance: float
    gate: float  # how much of recency and importance counted (1 = all: near the best match)
    distance: float  # cosine distance to the query
    hours_since_access: float

    @property
    def text(self) -> str:
        return self.memory.text

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.memory.as_dict(),
            "score": self.score,
            "recency": self.recency,
            "importance_score": self.importance,
            "relevance": self.relevance,
            "gate": self.gate,
            "distance": self.distance,
            "hours_since_access": self.hours_since_access,
        }


def _scaled(values: Sequence[float]) -> list[float]:
    """Min-max scaling to 0..1; all equal gives 0.5 for all (as Generative Agents)."""
    low, high = min(values), max(values)
    if high - low <= 1e-12:
        return [0.5] * len(values)
    return [(value - low) / (high - low) for value in values]


def _gates(similarities: Sequence[float], margin: float) -> list[float]:
    """How much of its recency and importance each candidate gets: all of it at
    the best similarity, fading linearly to none at ``margin`` below it (0 = no
    gate: every candidate gets all of it, as in Generative Agents)."""
    if margin <= 0:
        return [1.0] * len(similarities)
    best = max(similarities)
    return [max(0.0, 1.0 - (best - similarity) / margin) for similarity in similarities]


@dataclass(frozen=True, slots=True)
class Prepared:
    """Candidates with what ranking needs of them worked out once: the scaled
    importance and relevance and the gates never change while they are cached
    (a touch changes only recency), so a cache hit computes recency and nothing else."""

    candidates: tuple[Candidate, ...]
    ids: tuple[str, ...]
    accessed: tuple[float, ...]
    importance: tuple[float, ...]
    relevance: tuple[float, ...]
    gates: tuple[float, ...]
    # The same words stored more than once (a greeting every visit) are one memory
    # to the prompt: only the best-ranked copy is returned.
    sameness: tuple[str, ...]

    @classmethod
    def of(cls, candidates: Sequence[Candidate], margin: float = 0.0) -> Prepared:
        if not candidates:
            return cls((), (), (), (), (), (), ())
        similarities = [1.0 - c.distance for c in candidates]
        return cls(
            tuple(candidates),
            tuple(c.memory.id for c in candidates),
            tuple(c.memory.last_accessed for c in candidates),
            tuple(_scaled([float(c.memory.importance) for c in candidates])),
            tuple(_scaled(similarities)),
            tuple(_gates(similarities, margin)),
            tuple(" ".join(c.memory.text.casefold().split()) for c in candidates),
        )

    def rank(
        self,
        policy: RetrievalPolicy,
        *,
        now: float,
        accessed: Mapping[str, float] | None = None,
        limit: int | None = None,
    ) -> list[ScoredMemory]:
        """See ``rank``."""
        if not self.candidates:
            return []
        seen = list(self.accessed)
        if accessed:
            for index, memory_id in enumerate(self.ids):
                at = accessed.get(memory_id)
                if at is not None and at > seen[index]:
                    seen[index] = at
        newest = max(seen)
        # decay ** hours, counted from the newest access instead of from now: the same
        # after scaling, and it never underflows for very old memories.
        per_hour = math.log(policy.decay) / HOUR
        exp = math.exp
        recency = _scaled([exp(per_hour * (newest - at)) for at in seen])
        w = policy.weights
        importance, relevance, gates, ids = self.importance, self.relevance, self.gates, self.ids
        scores = [
            w.relevance * relevance[i] + gates[i] * (w.recency * rec + w.importance * importance[i])
            for i, rec in enumerate(recency)
        ]
        # Only the returned ones become objects: a cache hit ranks 50 and returns 4.
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], -relevance[i], ids[i]))
        ranked: list[ScoredMemory] = []
        returned: set[str] = set()
        for i in order:
            if limit is not None and len(ranked) >= limit:
                break
            if self.sameness[i] in returned:
                continue
            returned.add(self.sameness[i])
            candidate = self.candidates[i]
            memory = candidate.memory
            if seen[i] != memory.last_accessed:
                memory = replace(memory, last_accessed=seen[i])
            ranked.append(
                ScoredMemory(
                    memory=memory,
                    score=scores[i],
                    recency=recency[i],
                    importance=importance[i],
                    relevance=relevance[i],
                    gate=gates[i],
                    distance=candidate.distance,
                    hours_since_access=max(0.0, (now - seen[i]) / HOUR),
                )
            )
        return ranked


def rank(
    candidates: Sequence[Candidate],
    policy: RetrievalPolicy,
    *,
    now: float,
    accessed: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> list[ScoredMemory]:
    """The candidates scored and sorted, best first (the first ``limit`` of them).
    ``accessed`` holds access times newer than the candidates carry (touches made
    after the candidates were read). Scaling is over every candidate either way."""
    return Prepared.of(candidates, policy.relevance_margin).rank(
        policy, now=now, accessed=accessed, limit=limit
    )


T = TypeVar("T", ScoredMemory, Memory)


def estimate_tokens(text: str) -> int:
    """About four characters a token: close enough for English prompt budgets."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def token_budget(memories: Sequence[T], max_tokens: int) -> list[T]:
    """The memories that fit in ``max_tokens``, in rank order; one that does not
    fit is left out and smaller ones after it may still go in."""
    kept: list[T] = []
    used = 0
    for memory in memories:
        cost = estimate_tokens(memory.text) + 1  # the "- " and the line break
        if used + cost <= max_tokens:
            kept.append(memory)
            used += cost
    return kept


# -- the search cache ---------------------------------------------------------------
CacheKey = tuple[str, str, str, str]  # (npc_id, player or "", owners, query)
Found = Prepared


class _Entries(TTLCache[CacheKey, Found]):
    """A TTL LRU that reports every key it drops (expired or evicted)."""

    def __init__(
        self,
        maxsize: int,
        ttl: float,
        timer: Clock,
        dropped: Callable[[CacheKey], None],
        counters: Counters,
    ) -> None:
        super().__init__(maxsize, ttl, timer=timer)
        self._dropped = dropped
        self._counters = counters

    def popitem(self) -> tuple[CacheKey, Found]:
        key, value = super().popitem()
        self._counters.evicted()
        self._dropped(key)
        return key, value

    def expire(self, time: float | None = None) -> Any:
        expired = super().expire(time)
        for key, _ in expired:
            self._dropped(key)
        return expired


class SearchCache:
    """Candidates per (npc, player, query), dropped per NPC on every write.

    A per-NPC index of keys makes dropping an NPC's entries cost only its own
    entries, and a per-NPC generation stops a search that started before a
    write from storing what it read after the write was made.
    """

    def __init__(
        self,
        maxsize: int = setting_default("memory_cache_entries"),
        ttl: float = setting_default("memory_cache_ttl"),
        *,
        timer: Clock = time.monotonic,
        name: str = CACHE_NAME,
    ) -> None:
        self.name = name
        self.maxsize = maxsize
        self.counters = Counters()
        self._keys: dict[str, set[CacheKey]] = {}
        self._generations: dict[str, int] = {}
        self._entries = _Entries(maxsize, ttl, timer, self._unindex, self.counters)
        self._lock = threading.Lock()

    def _unindex(self, key: CacheKey) -> None:  # called with the lock held
        keys = self._keys.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._keys[key[0]]

    def get(self, key: CacheKey) -> Found | None:
        with self._lock:
            found = self._entries.get(key)
        if found is None:
            self.counters.miss()
        else:
            self.counters.hit()
        return found

    def generation(self, npc_id: str) -> int:
        with self._lock:
            return self._generations.get(npc_id, 0)

    def put(self, key: CacheKey, value: Found, generation: int) -> bool:
        """Store unless the NPC's memories changed since ``generation`` was read."""
        with self._lock:
            if self._generations.get(key[0], 0) != generation:
                return False
            self._entries[key] = value
            self._keys.setdefault(key[0], set()).add(key)
            return True

    def invalidate(self, npc_id: str) -> int:
        """Drop every entry of an NPC; the number dropped."""
        with self._lock:
            self._generations[npc_id] = self._generations.get(npc_id, 0) + 1
            keys = self._keys.pop(npc_id, set())
            for key in keys:
                self._entries.pop(key, None)
            return len(keys)

    def __len__(self) -> int:
        with self._lock:
            self._entries.expire()
            return len(self._entries)

    def stats(self) -> CacheStats:
        hits, misses, evictions = self.counters.snapshot()
        return CacheStats(self.name, hits, misses, len(self), self.maxsize, evictions)


# -- background touches -------------------------------------------------------------
class _TouchWriter:
    """Writes ``last_accessed`` on one worker thread: in order, coalesced (a burst
    of retrievals is one batched update), never on the caller's time."""

    def __init__(self, store: Callable[[], MemoryStore]) -> None:
        self._store = store
        self._pending: dict[str, tuple[str, float]] = {}  # memory id -> (npc id, time)
        self._writing: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory-touch")
        self._future: Future[None] | None = None
        self.failures = 0

    def record(self, npc_id: str, accessed: Mapping[str, float]) -> None:
        with self._lock:
            for mid, at in accessed.items():
                old = self._pending.get(mid)
                if old is None or old[1] < at:
                    self._pending[mid] = (npc_id, at)
            if self._future is None:
                self._future = self._executor.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._future = None
                    return
                self._writing, self._pending = self._pending, {}
                batches: dict[str, dict[str, float]] = {}
                for mid, (npc_id, at) in self._writing.items():
                    batches.setdefault(npc_id, {})[mid] = at
            try:
                store = self._store()
                for npc_id, batch in batches.items():
                    store.touch(npc_id, batch)
            except Exception as exc:  # kept for the next flush; a read never fails on it
                log.warning("memory: could not write access times (%s); will retry", exc)
                with self._lock:
                    self.failures += 1
                    for mid, item in self._writing.items():
                        self._pending.setdefault(mid, item)
                    self._writing = {}
                    self._future = None
                return
            with self._lock:
                self._writing = {}

    def unwritten(self, npc_id: str) -> bool:
        """True while a touch of this NPC's memories is not yet in the store."""
        with self._lock:
            return any(n == npc_id for n, _ in (*self._pending.values(), *self._writing.values()))

    def discard(self, npc_id: str) -> None:
        with self._lock:
            self._pending = {mid: v for mid, v in self._pending.items() if v[0] != npc_id}

    async def flush(self) -> None:
        """Wait until every recorded touch is written (or failed and kept)."""
        with self._lock:
            if self._future is None and self._pending:
                self._future = self._executor.submit(self._drain)
            future = self._future
        if future is not None:
            await asyncio.wrap_future(future)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


# -- imports ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LineProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did: memories written, lines refused (the first ones listed)."""

    imported: int
    bad: int
    problems: tuple[LineProblem, ...]
    duplicates: int = 0

    def summary(self) -> str:
        text = f"Imported {self.imported:,} memories"
        if self.duplicates:
            text += f" ({self.duplicates:,} repeated lines stored once)"
        if self.bad:
            text += f"; {self.bad:,} lines refused"
        return text + "."


def _timestamp(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("created_at must be an ISO-8601 time, e.g. 2026-11-30T18:00:00Z")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("created_at must be an ISO-8601 time, e.g. 2026-11-30T18:00:00Z")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"created_at {value[:40]!r} is not an ISO-8601 time (e.g. 2026-11-30T18:00:00Z)"
        ) from None
    if moment.tzinfo is None:  # a time without a zone is taken as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _optional_text(record: Mapping[str, Any], name: str, default: str | None) -> str | None:
    value = record.get(name, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    return " ".join(value.split()) or None


class MemoryService:
    """Add, retrieve, list, clear and import an NPC's memories (async; Chroma in threads)."""

    def __init__(
        self,
        store_factory: Callable[[], MemoryStore],
        *,
        policy: RetrievalPolicy | None = None,
        cache: SearchCache | None = None,
        prompt_tokens: int = setting_default("memory_prompt_tokens"),
        max_chars: int = setting_default("memory_max_chars"),
        import_importance: int = setting_default("memory_import_importance"),
        clock: Clock = time.time,
        stats: StatsRegistry | None = None,
    ) -> None:
        """``clock`` gives epoch seconds (creation and access times); the cache has
        its own monotonic timer."""
        self.policy = policy if policy is not None else RetrievalPolicy()
        if not 1 <= self.policy.k <= self.policy.max_k:
            raise ConfigError(
                f"memory_k must be between 1 and memory_max_k ({self.policy.max_k}); "
                f"got {self.policy.k}."
            )
        # (not ``cache or ...``: an empty cache has len 0 and is falsy)
        self.cache = cache if cache is not None else SearchCache()
        self.prompt_tokens = prompt_tokens
        self.max_chars = max_chars
        self.import_importance = import_importance
        self._clock = clock
        self._store_factory = store_factory
        self._store: MemoryStore | None = None
        self._store_lock = threading.Lock()
        self._lock = threading.Lock()
        # Access times written by this service and maybe not yet in what the cache
        # holds or a search in flight read, per NPC: ranking uses the newer one.
        self._accessed: dict[str, dict[str, float]] = {}
        self._reading: Counter[str] = Counter()
        self._flights: dict[CacheKey, asyncio.Task[Found]] = {}
        self._touches = _TouchWriter(lambda: self.store)
        if stats is not None:
            stats.register(self.cache.name, self.cache.stats)

    @classmethod
    def from_settings(
        cls,
        store_factory: Callable[[], MemoryStore],
        settings: Settings,
        *,
        stats: StatsRegistry | None = None,
        clock: Clock = time.time,
        timer: Clock = time.monotonic,
    ) -> MemoryService:
        return cls(
            store_factory,
            policy=RetrievalPolicy.from_settings(settings),
            cache=SearchCache(
                settings.memory_cache_entries, settings.memory_cache_ttl, timer=timer
            ),
            prompt_tokens=settings.memory_prompt_tokens,
            max_chars=settings.memory_max_chars,
            import_importance=settings.memory_import_importance,
            clock=clock,
            stats=stats,
        )

    @property
    def store(self) -> MemoryStore:
        with self._store_lock:
            if self._store is None:
                self._store = self._store_factory()
            return self._store

    def now(self) -> float:
        return self._clock()

    def stats(self) -> CacheStats:
        return self.cache.stats()

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- writing ------------------------------------------------------------------
    def _checked_npc(self, npc_id: str) -> str:
        npc_id = checked_text(npc_id or "", "The NPC id").strip()
        if not npc_id:
            raise InputError("Say whose memories: an NPC id from the library.")
        return npc_id

    def _memory(self, npc_id: str, draft: MemoryDraft, now: float) -> Memory:
        text = " ".join(checked_text(draft.text, "A memory").split())
        if len(text) > self.max_chars:
            raise InputError(
                f"A memory is {len(text):,} characters; keep it under {self.max_chars:,}."
            )
        created = now if draft.created_at is None else draft.created_at
        player = " ".join((draft.player or "").split()) or None
        speaker = " ".join((draft.speaker or "").split()) or None
        owner = draft.owner or None
        return Memory(
            id=memory_id(npc_id, player, draft.kind, text, created, speaker, owner),
            npc_id=npc_id,
            text=text,
            kind=draft.kind,
            importance=draft.importance,
            created_at=created,
            last_accessed=created,
            player=player,
            speaker=speaker,
            metadata=dict(draft.metadata),
            owner=owner,
        )

    def _changed(self, npc_id: str) -> None:
        """After a write: drop the NPC's cached searches, and its remembered access
        times when nothing could still hold older ones."""
        self.cache.invalidate(npc_id)
        with self._lock:
            if not self._reading[npc_id] and not self._touches.unwritten(npc_id):
                self._accessed.pop(npc_id, None)

    async def add(
        self, npc_id: str, items: Sequence[MemoryDraft | Mapping[str, Any]]
    ) -> list[Memory]:
        """Store memories (one batched write); returns them with ids and times."""
        npc_id = self._checked_npc(npc_id)
        now = self._clock()
        try:
            drafts = [
                i if isinstance(i, MemoryDraft) else MemoryDraft.model_validate(i) for i in items
            ]
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise InputError(f"A memory to add is not valid: {where}: {problem['msg']}.") from None
        memories = list({m.id: m for m in (self._memory(npc_id, d, now) for d in drafts)}.values())
        if memories:
            await self._run(self.store.add, memories)
            self._changed(npc_id)
        return memories

    async def clear_owned(self, npc_id: str, owner: str) -> int:
        """Forget ``owner``'s memories of the NPC (the team's and others' stay); the
        number deleted. Pending touches of them are ignored by the store."""
        npc_id = self._checked_npc(npc_id)
        if not owner:
            raise InputError("Say whose memories to forget.")
        deleted: int = await self._run(self.store.delete_owned, npc_id, owner)
        self._changed(npc_id)
        return deleted

    async def clear(self, npc_id: str) -> int:
        """Forget everything the NPC remembers; the number of memories deleted."""
        npc_id = self._checked_npc(npc_id)
        self._touches.discard(npc_id)
        deleted: int = await self._run(self.store.delete_npc, npc_id)
        self.cache.invalidate(npc_id)
        with self._lock:
            self._accessed.pop(npc_id, None)
        return deleted

    # -- reading ------------------------------------------------------------------
    def _checked_query(self, query: str) -> str:
        query = " ".join(checked_text(query or "", "The memory search text").split())
        if not query:
            raise InputError("Say what to look for in the memories, e.g. 'my sister'.")
        return query[:MAX_QUERY_CHARS]

    def _checked_k(self, k: int | None) -> int:
        k = self.policy.k if k is None else k
        if not 1 <= k <= self.policy.max_k:
            raise InputError(
                f"The number of memories must be between 1 and {self.policy.max_k}; got {k}."
            )
        return k

    async def _search(self, key: CacheKey, player: str | None, owners: Owners) -> Found:
        npc_id, _, _, query = key
        generation = self.cache.generation(npc_id)
        with self._lock:
            self._reading[npc_id] += 1
        try:
            found: list[Candidate] = await self._run(
                self.store.candidates,
                npc_id,
                query,
                n=self.policy.candidates,
                player=player,
                owners=owners,
            )
        finally:
            with self._lock:
                self._reading[npc_id] -= 1
                if not self._reading[npc_id]:
                    del self._reading[npc_id]
        result = Prepared.of(found, self.policy.relevance_margin)
        self.cache.put(key, result, generation)
        return result

    async def _candidates(
        self, npc_id: str, player: str | None, owners: Owners, query: str
    ) -> Found:
        key: CacheKey = (npc_id, player or "", owners_key(owners), query)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        # Callers missing the same key at once share one search (no stampede).
        loop = asyncio.get_running_loop()
        with self._lock:
            flight = self._flights.get(key)
            if flight is None or flight.done() or flight.get_loop() is not loop:
                flight = loop.create_task(self._search(key, player, owners))
                self._flights[key] = flight
                flight.add_done_callback(lambda task: self._landed(key, task))
        return await asyncio.shield(flight)

    def _landed(self, key: CacheKey, task: asyncio.Task[Found]) -> None:
        with self._lock:
            if self._flights.get(key) is task:
                del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: the awaiting callers raise it

    def _access_times(self, npc_id: str) -> dict[str, float]:
        with self._lock:
            return dict(self._accessed.get(npc_id, {}))

    async def retrieve(
        self,
        npc_id: str,
        query: str,
        *,
        player: str | None = None,
        owners: Owners = None,
        k: int | None = None,
        now: float | None = None,
        touch: bool = True,
    ) -> list[ScoredMemory]:
        """The k memories that best fit ``query`` (default k from settings, at most
        max_k), best first, of the ``owners`` given ("" = the team's; None = anyone's).
        ``now`` is the time of the access (default: the clock); with ``touch`` their
        ``last_accessed`` becomes ``now``."""
        npc_id = self._checked_npc(npc_id)
        query = self._checked_query(query)
        k = self._checked_k(k)
        player = " ".join((player or "").split()) or None
        now = self._clock() if now is None else now
        candidates = await self._candidates(npc_id, player, owners, query)
        ranked = candidates.rank(self.policy, now=now, accessed=self._access_times(npc_id), limit=k)
        if touch and ranked:
            self._touch(npc_id, ranked, now)
        return ranked

    def _touch(self, npc_id: str, ranked: Sequence[ScoredMemory], now: float) -> None:
        newer = {s.memory.id: now for s in ranked if s.memory.last_accessed < now}
        if not newer:
            return
        with self._lock:
            self._accessed.setdefault(npc_id, {}).update(newer)
        self._touches.record(npc_id, newer)

    def fit_prompt(self, memories: Sequence[T]) -> list[T]:
        """The memories that fit the configured prompt budget, in rank order."""
        return token_budget(memories, self.prompt_tokens)

    async def count(self, npc_id: str, owners: Owners = None) -> int:
        result: int = await self._run(self.store.count, self._checked_npc(npc_id), owners)
        return result

    async def list_memories(
        self, npc_id: str, limit: int = 100, *, owners: Owners = None
    ) -> list[Memory]:
        """The NPC's newest memories first, at most ``limit`` (1-10,000)."""
        npc_id = self._checked_npc(npc_id)
        if not 1 <= limit <= MAX_LIST:
            raise InputError(f"List between 1 and {MAX_LIST:,} memories; got {limit}.")
        found: list[Memory] = await self._run(
            self.store.list_memories, npc_id, limit=limit, owners=owners
        )
        accessed = self._access_times(npc_id)
        return [
            replace(m, last_accessed=accessed[m.id])
            if accessed.get(m.id, 0.0) > m.last_accessed
            else m
            for m in found
        ]

    async def since_reflection(
        self, npc_id: str, *, texts: bool = False, owners: Owners = None
    ) -> list[Memory]:
        """Memories from conversations (observation, dialogue) created after the NPC's
        newest reflection (both of the ``owners``: one user's reflections are made
        from their conversations). Read from the store each time, so it survives a
        restart and cannot drift from what is stored."""
        npc_id = self._checked_npc(npc_id)

        def read() -> list[Memory]:
            store = self.store
            last = store.newest_created(npc_id, "reflection", owners)
            return store.since(npc_id, last, EXPERIENCED, texts=texts, owners=owners)

        found: list[Memory] = await self._run(read)
        return found

    async def importance_since_reflection(self, npc_id: str, owners: Owners = None) -> int:
        return sum(m.importance for m in await self.since_reflection(npc_id, owners=owners))

    async def flush_touches(self) -> None:
        """Wait until every access time recorded so far is in the store."""
        await self._touches.flush()

    async def aclose(self) -> None:
        await self.flush_touches()
        self._touches.close()

    # -- import -------------------------------------------------------------------
    def _parse_line(
        self, npc_id: str, raw: str, player: str | None, owner: str | None = None
    ) -> Memory:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.args[0].split(':')[0]})") from None
        if not isinstance(record, dict):
            raise ValueError("each line must be a JSON object with at least text and created_at")
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text is missing or empty")
        text = " ".join(checked_text(text, "text").split())
        if len(text) > self.max_chars:
            raise ValueError(f"text is {len(text):,} characters; the limit is {self.max_chars:,}")
        if "created_at" not in record:
            raise ValueError("created_at is missing (an ISO-8601 time, e.g. 2026-11-30T18:00:00Z)")
        created = _timestamp(record["created_at"])
        importance = record.get("importance", self.import_importance)
        if isinstance(importance, bool) or not isinstance(importance, int | float):
            raise ValueError("importance must be a whole number from 1 to 10")
        if importance != int(importance) or not 1 <= importance <= 10:
            raise ValueError(f"importance must be a whole number from 1 to 10; got {importance}")
        kind = record.get("kind", "imported")
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        speaker = _optional_text(record, "speaker", None)
        who = _optional_text(record, "player", player)
        user = {key: value for key, value in record.items() if key not in IMPORT_FIELDS}
        if len(orjson.dumps(user)) > MAX_USER_METADATA_BYTES:
            raise ValueError(f"the other fields take more than {MAX_USER_METADATA_BYTES:,} bytes")
        return Memory(
            id=memory_id(npc_id, who, kind, text, created, speaker, owner),
            npc_id=npc_id,
            text=text,
            kind=kind,
            importance=int(importance),
            created_at=created,
            last_accessed=created,
            player=who,
            speaker=speaker,
            metadata=user,
            owner=owner,
        )

    async def import_jsonl(
        self,
        npc_id: str,
        lines: Iterable[str],
        *,
        player: str | None = None,
        owner: str | None = None,
    ) -> ImportReport:
        """One memory per JSON line: ``{"text", "created_at" (ISO-8601), "importance"?
        1-10, "kind"?, "speaker"?, "player"?}``; other fields are kept as metadata.
        The memories are ``owner``'s (None = the team's; a file cannot say whose).
        A bad line is reported by number and costs no other line. Importing a file
        twice stores each memory once."""
        npc_id = self._checked_npc(npc_id)
        problems: list[LineProblem] = []
        bad = duplicates = imported = 0
        seen: set[str] = set()
        batch: list[Memory] = []

        async def write() -> None:
            nonlocal imported
            if batch:
                await self._run(self.store.add, list(batch))
                imported += len(batch)
                batch.clear()
                self._changed(npc_id)

        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                memory = self._parse_line(npc_id, raw, player, owner or None)
            except (ValueError, TypeError, InputError) as exc:
                bad += 1
                if len(problems) < MAX_LISTED_PROBLEMS:
                    problems.append(LineProblem(number, str(exc)))
                continue
            if memory.id in seen:
                duplicates += 1
                continue
            seen.add(memory.id)
            batch.append(memory)
            if len(batch) >= IMPORT_BATCH:
                await write()
        await write()
        return ImportReport(imported, bad, tuple(problems), duplicates)


__all__ = [
    "ImportReport",
    "LineProblem",
    "MemoryDraft",
    "MemoryService",
    "Prepared",
    "RetrievalPolicy",
    "ScoredMemory",
    "SearchCache",
    "Weights",
    "estimate_tokens",
    "rank",
    "token_budget",
]
