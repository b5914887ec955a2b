"""The memory service on a real embedded Chroma: ranking, the search cache,
touches, players, import, clear and restarts.

One Chroma client and one store serve the whole module (a fresh store and its
embedder cost a second or two); every test works on its own NPC ids.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.errors import InputError
from app.services.extraction import MemoryWriter, WriterOptions
from app.services.memory import (
    MemoryService,
    Prepared,
    RetrievalPolicy,
    ScoredMemory,
    SearchCache,
    Weights,
    rank,
    token_budget,
)
from app.store.client import SharedClient, open_client
from app.store.memory_store import ADD_BATCH, Candidate, Memory, MemoryStore
from tests.conftest import make_settings
from tests.doubles import FakeClock, guarded

HOUR = 3600.0
DAY = 24 * HOUR
NOW = 1_800_000_000.0  # late 2027, epoch seconds


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MemoryStore:
    settings = make_settings(tmp_path_factory.mktemp("memory"))
    return MemoryStore(open_client(settings))


@pytest.fixture
def npc(request: pytest.FixtureRequest) -> str:
    """An NPC id of this test's own, so tests sharing the store never meet."""
    return "npc-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())


class Timer:
    """The cache's monotonic timer, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingCollection:
    """A Chroma collection with its calls counted in ``calls`` (shared by several)."""

    def __init__(self, collection: Any, calls: dict[str, int]) -> None:
        self._collection = collection
        self.calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attribute(*args, **kwargs)

        return counted


class Calls:
    """Every call to the memory collections of one store, by method name."""

    def __init__(self, store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, int] = {}
        original = store.collection_for

        def counting(npc_id: str, *, create: bool = False) -> Any:
            found = original(npc_id, create=create)
            return None if found is None else CountingCollection(found, self.calls)

        monkeypatch.setattr(store, "collection_for", counting)

    def count_of(self, name: str) -> int:
        return self.calls.get(name, 0)


@pytest.fixture
def counted(store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(store, monkeypatch)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def timer() -> Timer:
    return Timer()


MakeService = Callable[..., MemoryService]


@pytest.fixture
async def make_service(
    store: MemoryStore, clock: FakeClock, timer: Timer
) -> AsyncIterator[MakeService]:
    made: list[MemoryService] = []

    def make(**options: Any) -> MemoryService:
        options.setdefault("clock", clock)
        options.setdefault("cache", SearchCache(64, 300.0, timer=timer))
        service = MemoryService(lambda: store, **options)
        made.append(service)
        return service

    yield make
    for service in made:
        await service.aclose()


@pytest.fixture
def service(make_service: MakeService) -> MemoryService:
    return make_service()


def _memory(
    text: str, importance: int, accessed: float, *, mid: str | None = None, npc: str = "npc-x"
) -> Memory:
    return Memory(
        id=mid or f"m-{text[:12]}-{importance}-{accessed}",
        npc_id=npc,
        text=text,
        kind="observation",
        importance=importance,
        created_at=accessed,
        last_accessed=accessed,
    )


# -- ranking ------------------------------------------------------------------------
def test_without_a_gate_the_scaled_components_are_what_the_formula_says() -> None:
    policy = RetrievalPolicy(decay=0.995, weights=Weights(1.0, 2.0, 0.5), relevance_margin=0.0)
    candidates = [
        Candidate(_memory("old and trivial", 2, NOW - 30 * DAY), 0.40),
        Candidate(_memory("recent and important", 9, NOW - 1 * HOUR), 0.40),
        Candidate(_memory("middling", 5, NOW - 10 * HOUR), 0.10),
    ]
    ranked = rank(candidates, policy, now=NOW)

    def scaled(values: list[float]) -> list[float]:
        low, high = min(values), max(values)
        return [(v - low) / (high - low) for v in values]

    raw_recency = [0.995 ** ((NOW - c.memory.last_accessed) / HOUR) for c in candidates]
    expected = {
        c.memory.text: (rec, imp, rel)
        for c, rec, imp, rel in zip(
            candidates,
            scaled(raw_recency),
            scaled([2.0, 9.0, 5.0]),
            scaled([0.60, 0.60, 0.90]),
            strict=True,
        )
    }
    for scored in ranked:
        rec, imp, rel = expected[scored.text]
        assert scored.recency == pytest.approx(rec)
        assert scored.importance == pytest.approx(imp)
        assert scored.relevance == pytest.approx(rel)
        assert scored.score == pytest.approx(1.0 * rec + 2.0 * imp + 0.5 * rel)
        assert min(rec, imp, rel) >= 0.0 and max(rec, imp, rel) <= 1.0
    assert [s.text for s in ranked] == ["recent and important", "middling", "old and trivial"]
    assert ranked[0].hours_since_access == pytest.approx(1.0)


def test_recency_and_importance_fade_out_below_the_best_similarity() -> None:
    policy = RetrievalPolicy(weights=Weights(1.0, 1.0, 1.0), relevance_margin=0.1)
    candidates = [
        Candidate(_memory("answers, old and trivial", 2, NOW - 30 * DAY), 0.30),
        Candidate(_memory("near tie, recent", 5, NOW - 2 * HOUR), 0.35),
        Candidate(_memory("off topic, recent and important", 9, NOW - 1 * HOUR), 0.60),
    ]
    ranked = {s.text: s for s in rank(candidates, policy, now=NOW)}
    # gates: 1 at the best similarity, half way at 0.05 below it, none at 0.1 below
    near, off = ranked["near tie, recent"], ranked["off topic, recent and important"]
    assert near.score == pytest.approx(near.relevance + 0.5 * (near.recency + near.importance))
    assert off.score == pytest.approx(off.relevance)  # recency 1 and importance 1 do not count
    assert [s.text for s in rank(candidates, policy, now=NOW)] == [
        "near tie, recent",
        "answers, old and trivial",
        "off topic, recent and important",
    ]
    ungated = [s.text for s in rank(candidates, replace(policy, relevance_margin=0.0), now=NOW)]
    # what the gate prevents: the off-topic memory above the one that answers
    assert ungated.index("off topic, recent and important") < ungated.index(
        "answers, old and trivial"
    )


def test_the_same_words_stored_twice_come_back_once() -> None:
    candidates = [
        Candidate(_memory("Good morning to you.", 1, NOW - 3 * DAY, mid="m-1"), 0.2),
        Candidate(_memory("good  morning to you.", 1, NOW - 1 * DAY, mid="m-2"), 0.2),
        Candidate(_memory("The player owes me ten crowns.", 8, NOW - 2 * DAY, mid="m-3"), 0.3),
    ]
    ranked = rank(candidates, RetrievalPolicy(), now=NOW, limit=2)
    assert sorted(s.memory.id for s in ranked) == ["m-2", "m-3"]  # the newer copy


def test_ranking_does_not_depend_on_now_and_equal_values_scale_to_a_half() -> None:
    policy = RetrievalPolicy()
    candidates = [
        Candidate(_memory("a", 5, NOW - 5 * DAY), 0.3),
        Candidate(_memory("b", 5, NOW - 2 * HOUR), 0.5),
        Candidate(_memory("c", 5, NOW - 400 * DAY), 0.2),
    ]
    now_ranked = rank(candidates, policy, now=NOW)
    later = rank(candidates, policy, now=NOW + 1000 * DAY)
    # min-max scaling cancels decay ** (now / 1 h): why the cache key needs no time
    assert [(s.text, s.score) for s in now_ranked] == [
        (s.text, pytest.approx(s.score)) for s in later
    ]
    assert {s.importance for s in now_ranked} == {0.5}
    assert rank([], policy, now=NOW) == []


def test_newer_access_times_given_to_rank_win_over_the_stored_ones() -> None:
    old = _memory("old", 5, NOW - 90 * DAY, mid="m-old")
    new = _memory("new", 5, NOW - 1 * HOUR, mid="m-new")
    candidates = [Candidate(old, 0.3), Candidate(new, 0.3)]
    assert rank(candidates, RetrievalPolicy(), now=NOW)[0].memory.id == "m-new"
    touched = rank(candidates, RetrievalPolicy(), now=NOW, accessed={"m-old": NOW})
    assert touched[0].memory.id == "m-old" and touched[0].memory.last_accessed == NOW


async def test_recent_and_important_beats_old_and_trivial_at_equal_relevance(
    service: MemoryService, npc: str
) -> None:
    same = "The player said the mill by the river burned down."
    await service.add(
        npc,
        [
            {"text": same, "importance": 2, "created_at": NOW - 60 * DAY},
            {"text": same, "importance": 9, "created_at": NOW - 2 * HOUR},
            {"text": "The player likes apples.", "importance": 4, "created_at": NOW - DAY},
        ],
    )
    ranked = await service.retrieve(npc, "what happened to the mill?", k=3, touch=False)
    first = ranked[0]
    assert first.text == same and first.memory.importance == 9
    assert [s.text for s in ranked].count(same) == 1  # the old copy is the same words
    assert first.recency == 1.0 and first.importance == 1.0  # scaled over both copies


# -- the search cache ---------------------------------------------------------------
async def test_a_repeated_query_is_a_cache_hit_and_writes_invalidate_only_that_npc(
    service: MemoryService, npc: str, counted: Calls
) -> None:
    other = npc + "-other"
    await service.add(npc, [{"text": "The player's sister lives in Harrow Bay.", "importance": 7}])
    await service.add(other, [{"text": "The player owes me ten crowns.", "importance": 8}])
    query = "where does my sister live?"

    first = await service.retrieve(npc, query, touch=False)
    assert counted.count_of("query") == 1
    again = await service.retrieve(npc, query, touch=False)
    assert counted.count_of("query") == 1  # the hit never reached Chroma
    assert again == first
    assert (service.stats().hits, service.stats().misses) == (1, 1)
    assert await service.retrieve(npc, query, k=1, touch=False) == first[:1]  # k is no key
    assert counted.count_of("query") == 1

    await service.add(other, [{"text": "The player hates rain.", "importance": 4}])
    await service.retrieve(npc, query, touch=False)
    assert counted.count_of("query") == 1  # another NPC's write leaves it

    await service.add(npc, [{"text": "The player's sister moved to Saltmere.", "importance": 8}])
    after = await service.retrieve(npc, query, touch=False)
    assert counted.count_of("query") == 2  # this NPC's write: Chroma again
    assert "The player's sister moved to Saltmere." in [m.text for m in after]


async def test_import_and_clear_invalidate_and_entries_expire(
    service: MemoryService, npc: str, counted: Calls, timer: Timer
) -> None:
    await service.add(npc, [{"text": "The player is called Tom.", "importance": 6}])
    query = "what is the player's name?"
    await service.retrieve(npc, query, touch=False)
    await service.retrieve(npc, query, touch=False)
    assert counted.count_of("query") == 1
    line = {"text": "Tom is a fisherman.", "created_at": "2027-01-01T00:00:00Z"}
    await service.import_jsonl(npc, [orjson.dumps(line).decode()])
    await service.retrieve(npc, query, touch=False)
    assert counted.count_of("query") == 2
    timer.now += 301  # past the TTL
    await service.retrieve(npc, query, touch=False)
    assert counted.count_of("query") == 3
    assert await service.clear(npc) == 2
    assert await service.retrieve(npc, query, touch=False) == []
    assert counted.count_of("query") == 3  # no memories left: no collection to search
    assert len(service.cache) == 1 and service.stats().size == 1


async def test_callers_missing_the_same_query_at_once_share_one_search(
    service: MemoryService, npc: str, counted: Calls
) -> None:
    await service.add(npc, [{"text": "The player fears the sea.", "importance": 5}])
    results = await asyncio.gather(
        *(service.retrieve(npc, "is the player afraid?", touch=False) for _ in range(5))
    )
    assert counted.count_of("query") == 1
    assert all(result == results[0] for result in results)


async def test_a_search_that_read_before_a_write_is_not_cached(
    service: MemoryService, npc: str, counted: Calls
) -> None:
    """The generation check: a search racing a write must not keep stale candidates."""
    await service.add(npc, [{"text": "The player has a dog.", "importance": 3}])
    generation = service.cache.generation(npc)
    await service.add(npc, [{"text": "The player's dog died.", "importance": 8}])
    key = (npc, "", "the dog")
    assert not service.cache.put(key, Prepared.of([]), generation)
    assert service.cache.get(key) is None


# -- touches ------------------------------------------------------------------------
async def test_retrieval_touches_last_accessed_and_a_hit_is_never_stale(
    make_service: MakeService, npc: str, clock: FakeClock, counted: Calls
) -> None:
    service = make_service()
    await service.add(
        npc,
        [
            {
                "text": f"The player mentioned the lighthouse {word}.",
                "importance": 5,
                "created_at": NOW - (i + 1) * DAY,
            }
            for i, word in enumerate(["keeper", "lamp", "stairs", "storm", "ghost", "bell"])
        ],
    )
    clock.now = NOW + HOUR
    top = await service.retrieve(npc, "the lighthouse", k=2)
    touched = {s.memory.id for s in top}
    # What this service knows before the background write lands:
    listed = {m.id: m for m in await service.list_memories(npc)}
    assert all(listed[mid].last_accessed == NOW + HOUR for mid in touched)
    await service.flush_touches()
    stored = {m.id: m for m in await make_service().list_memories(npc)}
    assert {mid for mid, m in stored.items() if m.last_accessed == NOW + HOUR} == touched
    assert counted.count_of("update") == 1  # one batched write for both

    # A cached hit ranks with the new access times: the same as a fresh search.
    clock.now = NOW + 2 * HOUR
    cached = await service.retrieve(npc, "the lighthouse", k=6, touch=False)
    fresh = await make_service().retrieve(npc, "the lighthouse", k=6, touch=False)
    assert counted.count_of("query") == 2  # one for each service
    assert [(s.memory.id, s.score) for s in cached] == [
        (s.memory.id, pytest.approx(s.score)) for s in fresh
    ]
    assert {s.memory.id for s in cached[:2]} == touched


# -- players, limits, budget --------------------------------------------------------
async def test_a_players_memories_stay_theirs_and_shared_ones_reach_everyone(
    service: MemoryService, npc: str
) -> None:
    await service.add(
        npc,
        [
            {"text": "Ann told me her brother is a smuggler.", "importance": 8, "player": "Ann"},
            {"text": "Bob told me his brother is a priest.", "importance": 8, "player": "Bob"},
            {
                "text": "Brothers in this town stick together.",
                "importance": 6,
                "kind": "reflection",
            },
        ],
    )
    for player, own in (("Ann", "Ann told"), ("Bob", "Bob told")):
        texts = [s.text for s in await service.retrieve(npc, "brother", player=player, k=5)]
        assert len(texts) == 2 and any(t.startswith(own) for t in texts)
        assert "Brothers in this town stick together." in texts
    assert len(await service.retrieve(npc, "brother", k=5)) == 3  # no player: all of them


async def test_bad_requests_are_input_errors(service: MemoryService, npc: str) -> None:
    with pytest.raises(InputError, match="between 1 and 20"):
        await service.retrieve(npc, "anything", k=21)
    with pytest.raises(InputError, match="Say what to look for"):
        await service.retrieve(npc, "   ")
    with pytest.raises(InputError, match="importance"):
        await service.add(npc, [{"text": "x", "importance": 11}])
    with pytest.raises(InputError, match="keep it under"):
        await service.add(npc, [{"text": "x" * 2001, "importance": 3}])
    with pytest.raises(InputError, match="NPC id"):
        await service.count("")


def test_token_budget_keeps_what_fits_in_rank_order() -> None:
    def scored(text: str) -> ScoredMemory:
        return ScoredMemory(_memory(text, 5, NOW), 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0)

    ranked = [scored("a" * 40), scored("b" * 200), scored("c" * 8), scored("d" * 36)]
    # costs: 10+1, 50+1, 2+1, 9+1 tokens
    assert [s.text[0] for s in token_budget(ranked, 25)] == ["a", "c", "d"]
    assert [s.text[0] for s in token_budget(ranked, 11)] == ["a"]
    assert token_budget(ranked, 2) == []
    assert token_budget([], 100) == []


# -- import ---------------------------------------------------------------------------
async def test_import_round_trip_keeps_the_users_fields(service: MemoryService, npc: str) -> None:
    lines = [
        {
            "text": "The player won the archery contest.",
            "created_at": "2027-03-01T10:00:00Z",
            "importance": 7,
            "kind": "dialogue",
            "speaker": "Ann",
            "message_id": "st-41",
            "swipe": 2,
            "tags": ["contest"],
            "mood": None,
        },
        {"text": "It rained all week.", "created_at": "2027-03-02T08:30:00+02:00"},
    ]
    report = await service.import_jsonl(npc, [orjson.dumps(line).decode() for line in lines])
    assert (report.imported, report.bad, report.duplicates) == (2, 0, 0)
    found = await service.retrieve(npc, "who won the archery contest?", k=1, touch=False)
    assert found[0].memory.metadata == {
        "message_id": "st-41",
        "swipe": 2,
        "tags": ["contest"],
        "mood": None,
    }
    assert found[0].memory.speaker == "Ann" and found[0].memory.kind == "dialogue"
    back = {m.text: m.as_import_line() for m in await service.list_memories(npc)}
    assert orjson.loads(orjson.dumps(back[lines[0]["text"]])) == {
        **lines[0],
        "created_at": "2027-03-01T10:00:00+00:00",
    }
    assert back["It rained all week."]["importance"] == 5  # the configured default
    assert back["It rained all week."]["kind"] == "imported"
    assert back["It rained all week."]["created_at"] == "2027-03-02T06:30:00+00:00"
    # The same file again stores nothing twice.
    again = await service.import_jsonl(npc, [orjson.dumps(line).decode() for line in lines])
    assert again.imported == 2 and await service.count(npc) == 2


async def test_bad_import_lines_are_reported_by_number_and_cost_no_good_line(
    service: MemoryService, npc: str
) -> None:
    good = '{"text": "The player sings badly.", "created_at": "2027-01-05T12:00:00Z"}'
    lines = [
        good,
        "not json",
        "",  # blank lines are not lines of data
        '["a", "list"]',
        '{"created_at": "2027-01-05T12:00:00Z"}',
        '{"text": "no time"}',
        '{"text": "bad time", "created_at": "yesterday"}',
        '{"text": "bad importance", "created_at": "2027-01-05T12:00:00Z", "importance": 11}',
        '{"text": "half", "created_at": "2027-01-05T12:00:00Z", "importance": 4.5}',
        '{"text": "bad kind", "created_at": "2027-01-05T12:00:00Z", "kind": "dream"}',
        '{"text": "' + "x" * 2001 + '", "created_at": "2027-01-05T12:00:00Z"}',
        good,  # a repeat
        '{"text": "The player owns a boat.", "created_at": 1800000000}',
    ]
    report = await service.import_jsonl(npc, lines)
    assert (report.imported, report.bad, report.duplicates) == (2, 9, 1)
    assert [(p.line, p.message.split(" (")[0]) for p in report.problems] == [
        (2, "not valid JSON"),
        (4, "each line must be a JSON object with at least text and created_at"),
        (5, "text is missing or empty"),
        (6, "created_at is missing"),
        (7, "created_at 'yesterday' is not an ISO-8601 time"),
        (8, "importance must be a whole number from 1 to 10; got 11"),
        (9, "importance must be a whole number from 1 to 10; got 4.5"),
        (10, "kind 'dream' is not one of observation, dialogue, reflection, imported"),
        (11, "text is 2,001 characters; the limit is 2,000"),
    ]
    assert "Imported 2 memories" in report.summary() and "9 lines refused" in report.summary()
    assert await service.count(npc) == 2


class RecordingStore:
    """Only what an import touches: batch sizes, no Chroma."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def add(self, memories: list[Memory], embeddings: Any = None) -> None:
        self.batches.append(len(memories))


async def test_an_import_of_thousands_of_lines_is_written_in_a_few_batches(
    clock: FakeClock,
) -> None:
    recording = RecordingStore()
    service = MemoryService(lambda: recording, clock=clock)  # type: ignore[arg-type, return-value]
    lines = (
        orjson.dumps({"text": f"Memory number {i}.", "created_at": NOW - i}).decode()
        for i in range(4500)
    )
    report = await service.import_jsonl("npc-bulk", lines)
    assert report.imported == 4500 and recording.batches == [2000, 2000, 500]
    await service.aclose()


def test_the_store_writes_in_batches_under_chromas_limit(
    store: MemoryStore, npc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    small = MemoryStore(store.client, embedder=store.embedder, batch=3)
    assert MemoryStore(store.client, embedder=store.embedder, batch=10**6).batch == ADD_BATCH
    counted = Calls(small, monkeypatch)
    vectors = np.random.default_rng(0).standard_normal((7, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    memories = [_memory(f"bulk {i}", 3, NOW - i, mid=f"{npc}-{i}", npc=npc) for i in range(7)]
    small.add(memories, embeddings=list(vectors))
    assert counted.count_of("upsert") == 3  # 3 + 3 + 1
    small.touch(npc, {m.id: NOW for m in memories})
    assert counted.count_of("update") == 3
    assert small.count(npc) == 7
    found = small.candidates(npc, "", n=5, query_embedding=list(vectors[4]))
    assert len(found) == 5 and found[0].memory.id == f"{npc}-4"
    assert found[0].memory.last_accessed == NOW
    assert small.delete_npc(npc) == 7


def _unit(rng: Any, near: Any | None = None, spread: float = 1.0) -> Any:
    import numpy as np

    vector = rng.standard_normal(384).astype(np.float32) * spread
    if near is not None:
        vector = vector + near
    return vector / np.linalg.norm(vector)


def test_other_players_memories_never_crowd_a_players_own_out(
    store: MemoryStore, npc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    query = _unit(rng)
    memories, vectors = [], []
    for i in range(12):  # Bob's, all closer to the query than anything of Ann's
        bob = _memory(f"bob {i}", 5, NOW, mid=f"{npc}-b{i}", npc=npc)
        memories.append(replace(bob, player="Bob"))
        vectors.append(_unit(rng, near=query * 20))
    for i in range(2):
        ann = _memory(f"ann {i}", 5, NOW, mid=f"{npc}-a{i}", npc=npc)
        memories.append(replace(ann, player="Ann"))
        vectors.append(_unit(rng))
    store.add(memories, embeddings=vectors)
    counted = Calls(store, monkeypatch)
    found = store.candidates(npc, "", n=2, player="Ann", query_embedding=list(query))
    assert sorted(c.memory.text for c in found) == ["ann 0", "ann 1"]
    assert counted.count_of("query") == 2  # 2 (none of Ann's), then enough to read all 14
    again = store.candidates(npc, "", n=2, player="Ann", query_embedding=list(query))
    assert again == found and counted.count_of("query") == 3  # sized right at once
    assert [c.memory.player for c in store.candidates(npc, "", n=2, query_embedding=query)] == [
        "Bob",
        "Bob",
    ]


def test_a_collection_dropped_by_another_instance_reads_empty_and_is_made_again(
    store: MemoryStore, npc: str
) -> None:
    other = MemoryStore(store.client, embedder=store.embedder)  # another app, same server
    store.add([_memory("first", 3, NOW, mid=f"{npc}-1", npc=npc)], embeddings=[[1.0] + [0.0] * 383])
    assert store.count(npc) == 1 and other.count(npc) == 1  # both hold a handle now
    assert other.delete_npc(npc) == 1
    assert store.count(npc) == 0 and store.list_memories(npc, limit=5) == []
    assert store.candidates(npc, "", n=5, query_embedding=[1.0] + [0.0] * 383) == []
    store.add(
        [_memory("again", 3, NOW, mid=f"{npc}-2", npc=npc)], embeddings=[[0.0, 1.0] + [0.0] * 382]
    )
    assert other.count(npc) == 1


# -- restart ------------------------------------------------------------------------
async def test_memories_and_the_reflection_count_survive_a_restart(
    tmp_path: Path, clock: FakeClock
) -> None:
    from app.backends.procedural import ProceduralBackend

    settings = make_settings(tmp_path)

    async def no_sleep(seconds: float) -> None:
        return None

    backend = guarded(ProceduralBackend(settings), no_sleep)

    def open_service() -> MemoryService:
        shared = SharedClient.from_settings(settings)
        return MemoryService.from_settings(lambda: MemoryStore(shared.get()), settings, clock=clock)

    first = open_service()
    writer = MemoryWriter(
        first, lambda name: backend, options=WriterOptions(every=2, reflection_threshold=10)
    )

    async def say(user: str, npc: str) -> list[Memory]:
        stored = await writer.observe("npc-r", "Tom", {"role": "user", "content": user})
        return stored + await writer.observe("npc-r", "Tom", {"role": "assistant", "content": npc})

    stored = await say("My sister lives in Harrow Bay.", "I swear I will tell no one.")
    assert [m.kind for m in stored] == ["dialogue", "dialogue", "reflection", "reflection"]
    assert await first.importance_since_reflection("npc-r") == 0
    clock.now += 60
    stored = await say("I hate rats.", "Thanks!")  # 5 more, under the threshold
    assert [m.text for m in stored] == ["Tom said they hate rats."]
    assert await first.importance_since_reflection("npc-r") == 5
    await first.aclose()

    second = open_service()  # a restart: new client, new service, same data dir
    assert await second.count("npc-r") == 5
    assert await second.importance_since_reflection("npc-r") == 5
    found = await second.retrieve("npc-r", "where does Tom's sister live?", player="Tom", k=1)
    assert "Harrow Bay" in found[0].text
    await second.aclose()


def test_one_client_is_opened_once_for_both_collections(tmp_path: Path) -> None:
    opened: list[int] = []
    settings = make_settings(tmp_path)

    def opener() -> Any:
        opened.append(1)
        return open_client(settings)

    shared = SharedClient(opener)
    assert shared.get() is shared.get() and opened == [1]
