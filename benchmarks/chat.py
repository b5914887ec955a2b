"""Chat benchmark, memory part: retrieval latency and retrieval quality.

    python benchmarks/chat.py [--sizes 1000,10000,100000] [--no-quality]

Prints, in one run:

- retrieval at 1k, 10k and 100k memories of one NPC (embedded Chroma, filled
  with unit vectors given directly, as benchmarks/library.py does; embedding
  100k texts would take a quarter of an hour here and measures the embedder):
  the Chroma search of 50 candidates alone, a whole ``MemoryService.retrieve``
  on a cache miss (query embedding + search + ranking), and on a hit
  (target <= 0.1 ms); target p95 <= 10 ms at 100k;
- for comparison, the layout we did not take: one collection for every NPC,
  searched with ``where={"npc_id": ...}``;
- retrieval quality on a deterministic set of long multi-session
  conversations (facts stated in the first sessions, asked about in the last,
  recent distractors on the same topics and plenty of recent everyday
  memories): recall@5 of the answer-bearing memory for our ranking (recency +
  importance + relevance) and for plain cosine similarity, real embeddings.

Each part is a function returning rows; ``main`` prints them as one table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from app.backends.procedural_memory import fact_signals, importance_of
from app.services.memory import MemoryService, RetrievalPolicy, SearchCache, Weights
from app.store.client import open_client
from app.store.embeddings import DIMENSIONS, MiniLMEmbeddings
from app.store.memory_store import Memory, MemoryStore, memory_id
from config import Settings

Row = tuple[str, str]
HOUR = 3600.0
DAY = 24 * HOUR
T0 = 1_790_000_000.0  # the first session of every conversation
FILL_BATCH = 4000


def _percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def _ms(p50: float, p95: float) -> str:
    return f"{p50:.2f} / {p95:.2f} ms" if p50 >= 0.1 else f"{p50 * 1000:.0f} / {p95 * 1000:.0f} us"


def _unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSIONS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _client(directory: Path) -> Any:
    settings = Settings(_env_file=None, data_dir=directory)  # type: ignore[call-arg]
    return open_client(settings)


def _fill(store: MemoryStore, npc_id: str, total: int) -> float:
    """``total`` memories for one NPC, vectors given; returns seconds."""
    started = time.perf_counter()
    rng = random.Random(total)
    for start in range(0, total, FILL_BATCH):
        size = min(FILL_BATCH, total - start)
        memories = []
        for i in range(start, start + size):
            created = T0 - rng.uniform(0, 365) * DAY
            memories.append(
                Memory(
                    id=f"{npc_id}-{i}",
                    npc_id=npc_id,
                    text=f"Memory number {i} of {npc_id}.",
                    kind="dialogue",
                    importance=rng.randint(1, 10),
                    created_at=created,
                    last_accessed=created,
                    player=rng.choice(("Ann", "Bob", None)),
                    owner=("ann", "bob", None)[i % 3],
                )
            )
        store.add(memories, embeddings=list(_unit_vectors(size, start)))
    return time.perf_counter() - started


async def _timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


QUERIES = [
    f"{opening} {topic}?"
    for opening in ("what do you know about", "tell me about", "do you remember", "where is")
    for topic in (
        "my sister", "the mill", "the debt", "the road north", "my horse", "the storm",
        "the harbour", "the old key", "the festival", "the smith", "the wolves", "the map",
    )
]  # fmt: skip


async def _latency_at(size: int, embedder: MiniLMEmbeddings, rows: list[Row]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(_client(Path(tmp)), embedder=embedder)
        seconds = _fill(store, "npc-bench", size)
        rows.append((f"{size:,} memories: fill (vectors given)", f"{seconds:.1f} s"))
        vectors = _unit_vectors(200, 999)
        samples = []
        for vector in vectors:
            started = time.perf_counter()
            store.candidates("npc-bench", "", n=50, query_embedding=list(vector))
            samples.append((time.perf_counter() - started) * 1000)
        rows.append(
            (f"{size:,}: Chroma search, 50 candidates, p50 / p95", _ms(*_percentiles(samples)))
        )
        samples = []
        for vector in vectors[:100]:
            started = time.perf_counter()
            store.candidates("npc-bench", "", n=50, player="Ann", query_embedding=list(vector))
            samples.append((time.perf_counter() - started) * 1000)
        rows.append(
            (
                f"{size:,}:   same, one player's and shared (2/3 of them)",
                _ms(*_percentiles(samples)),
            )
        )
        samples = []
        for vector in vectors[:100]:
            started = time.perf_counter()
            store.candidates(
                "npc-bench", "", n=50, owners=("ann", ""), query_embedding=list(vector)
            )
            samples.append((time.perf_counter() - started) * 1000)
        rows.append(
            (f"{size:,}:   same, one user's and the team's (2/3)", _ms(*_percentiles(samples)))
        )
        service = MemoryService(
            lambda: store, cache=SearchCache(4096, 300.0), clock=lambda: T0 + DAY
        )
        queries = iter([f"{q} ({i})" for i in range(10) for q in QUERIES])
        misses = await _timed(
            lambda: service.retrieve("npc-bench", next(queries), touch=False), 100
        )
        rows.append(
            (f"{size:,}: retrieve, cache miss (embeds the query), p50 / p95",
             _ms(*_percentiles(misses)))
        )  # fmt: skip
        touched = await _timed(lambda: service.retrieve("npc-bench", next(queries)), 100)
        await service.flush_touches()
        rows.append((f"{size:,}:   same, touching last_accessed", _ms(*_percentiles(touched))))
        await service.retrieve("npc-bench", "what do you know about my sister?")
        hits = await _timed(
            lambda: service.retrieve("npc-bench", "what do you know about my sister?"), 2000
        )
        rows.append(
            (f"{size:,}: retrieve, cache hit (re-ranked, touched), p50 / p95",
             _ms(*_percentiles(hits)))
        )  # fmt: skip
        await service.aclose()


def retrieval_latency(sizes: Sequence[int]) -> list[Row]:
    """Search, miss and hit latency at each size (one NPC holding them all)."""
    embedder = MiniLMEmbeddings(threads=1)
    embedder(["warm up"])
    rows: list[Row] = []
    started = time.perf_counter()
    for _ in range(50):
        embedder(["what do you know about my sister?"])
    rows.append(("query embedding alone (MiniLM int8, 1 thread)",
                 f"{(time.perf_counter() - started) / 50 * 1000:.2f} ms"))  # fmt: skip
    for size in sizes:
        asyncio.run(_latency_at(size, embedder, rows))
    return rows


def single_collection_latency(total: int = 10_000, npcs: int = 10) -> list[Row]:
    """The layout not taken: every NPC in one collection, searched with a where filter."""
    with tempfile.TemporaryDirectory() as tmp:
        client = _client(Path(tmp))
        collection = client.get_or_create_collection(
            "memories", embedding_function=None, metadata={"hnsw:space": "cosine"}
        )
        for start in range(0, total, FILL_BATCH):
            size = min(FILL_BATCH, total - start)
            collection.add(
                ids=[f"m{i}" for i in range(start, start + size)],
                embeddings=_unit_vectors(size, start),
                documents=[f"Memory {i}." for i in range(start, start + size)],
                metadatas=[{"npc_id": f"npc-{i % npcs}"} for i in range(start, start + size)],
            )
        samples = []
        for vector in _unit_vectors(50, 7):
            started = time.perf_counter()
            collection.query(
                query_embeddings=[vector],
                n_results=50,
                where={"npc_id": "npc-3"},
                include=["documents", "metadatas", "distances"],
            )
            samples.append((time.perf_counter() - started) * 1000)
    return [
        (
            f"one collection, {total:,} memories of {npcs} NPCs, where npc_id, p50 / p95",
            _ms(*_percentiles(samples)),
        )
    ]


# -- quality --------------------------------------------------------------------------
PLAYERS = ["Ann", "Bram", "Cora", "Dax", "Edda", "Finn", "Gwen", "Hal", "Isla", "Jory"]
RELATIVES = ["sister", "brother", "mother", "father", "cousin", "uncle", "aunt", "daughter"]
PLACES = ["Harrow Bay", "Saltmere", "Ashford", "Greywater", "Thornwick", "Millbrook",
          "Redcliff", "Oakhollow", "Stonebridge", "Frostvale", "Eastmarch", "Dunmore"]  # fmt: skip
NAMES = ["Old Tobin", "Marta", "Sir Aldric", "the widow Hesk", "Brother Ansel", "Captain Rhys"]
ITEMS = ["sword", "lute", "boots", "cloak", "saddle", "lantern", "shield", "bow"]
THINGS = ["silver ring", "letter", "map", "key", "locket", "ledger"]
SPOTS = ["loose floorboard", "old oak tree", "chapel steps", "well house", "stable loft"]
FOODS = ["eel pie", "turnips", "goat cheese", "pickled herring", "blood sausage", "figs"]
ANIMALS = [("horse", ["Clover", "Thunder", "Maple", "Ash"]), ("dog", ["Rufus", "Pip", "Bran"]),
           ("mule", ["Stubborn", "Nettle"]), ("hawk", ["Swift", "Kestrel"])]  # fmt: skip
BEASTS = ["wolves", "bandits", "a bear", "raiders", "wild boars"]
DAYS = ["Friday", "the next full moon", "market day", "Sunday", "the harvest feast"]
COINS = ["silver pieces", "gold crowns", "copper bits"]
JOBS = ["miller", "tanner", "smith", "weaver", "ferryman"]

EVERYDAY = [
    "I sold {n} loaves of bread this morning.",
    "It rained over the market all afternoon, {n} hours of it.",
    "{P} said the ale here is good.",
    "I swept the floor of the shop before opening.",
    "{P} asked: What is the weather like in the hills?",
    "I heard the temple bell ring {n} times at noon.",
    "The baker's cat slept by my door again.",
    "{P} said they are tired after a long walk.",
    "I counted the coins in the till twice, {n} in all.",
    "{P} asked: Is there any work to be had in town?",
    "A merchant from the south passed through with {n} carts.",
    "I mended the roof after the storm.",
    "{P} said the weather has turned cold.",
    "I told {P}: the inn is full tonight.",
    "The fishing boats came back with {n} baskets of herring.",
    "{P} said they like the songs at the tavern.",
    "I lit the lamps at dusk.",
    "{P} asked: How is business these days?",
    "The guards changed at the gate around hour {n}.",
    "I bought {n} candles from the chandler.",
]
EVERYDAY_QUESTIONS = [
    "What's the news today?", "Any work for me?", "How is business?",
    "What's the weather like?", "Is the inn busy tonight?", "Anything happen at the market?",
]  # fmt: skip


@dataclass(slots=True)
class Fact:
    text: str
    question: str
    distractors: list[str]
    update: str | None = None  # a later memory that replaces the answer


@dataclass(slots=True)
class Conversation:
    npc_id: str
    player: str
    # (session time, text, is the answer to question i or None)
    memories: list[tuple[float, str]] = field(default_factory=list)
    # (question, answer, the stale answer when a later memory replaced it)
    questions: list[tuple[str, str, str | None]] = field(default_factory=list)
    touches: list[tuple[float, str]] = field(default_factory=list)  # mid-conversation queries


def _facts(rng: random.Random, p: str) -> list[Fact]:
    rel, place, place2 = rng.choice(RELATIVES), *rng.sample(PLACES, 2)
    name, coin, n, n2 = rng.choice(NAMES), rng.choice(COINS), rng.randint(3, 90), rng.randint(1, 9)
    item, job, day, day2 = rng.choice(ITEMS), rng.choice(JOBS), *rng.sample(DAYS, 2)
    thing, spot, spot2 = rng.choice(THINGS), *rng.sample(SPOTS, 2)
    food, food2 = rng.sample(FOODS, 2)
    animal, pets = rng.choice(ANIMALS)
    pet, beasts, place3, place4 = rng.choice(pets), rng.choice(BEASTS), *rng.sample(PLACES, 2)
    candidates = [
        Fact(f"{p} said their {rel} lives in {place}.", f"Where does my {rel} live?",
             [f"{p} said their {rel} sends letters every month.",
              f"{p} said their {rel} likes {food2}.",
              f"{p} asked: Have I ever met their {rel}?"],
             f"{p} said their {rel} moved away to {place2}."),
        Fact(f"{p} said they owe {name} {n} {coin}.", f"How much money do I owe {name}?",
             [f"{p} said {name} is a {job} by trade.",
              f"{p} said they had a drink with {name} last night.",
              f"{p} asked: Do I know where {name} lives?"],
             f"{p} said they paid {name} back, but still owe {n2} {coin}."),
        Fact(f"I told {p}: I will have their {item} mended by {day}.",
             f"When will my {item} be ready?",
             [f"{p} said their {item} was a gift.",
              f"{p} asked: How much does a new {item} cost?",
              f"I told {p}: the {item} of the {job} is finer than theirs."],
             f"I told {p}: their {item} will be late, not before {day2}."),
        Fact(f"{p} said they hid the {thing} under the {spot}.", f"Where did I hide the {thing}?",
             [f"{p} said the {thing} belonged to their grandfather.",
              f"{p} asked: Is the {thing} worth much?",
              f"{p} said someone is looking for the {thing}."],
             f"{p} said they moved the {thing} from the {spot} to the {spot2}."),
        Fact(f"{p} said they cannot stand {food}.", "What food do I hate?",
             [f"{p} said they ate {food2} at the inn.", f"{p} asked: What is on the menu tonight?",
              f"{p} said the cook at the inn makes good {food2}."]),
        Fact(f"{p} said their {animal} is called {pet}.", f"What is my {animal}'s name?",
             [f"{p} said their {animal} is getting old.",
              f"{p} asked: Where can I buy feed for a {animal}?",
              f"{p} said their {animal} was sick last winter."]),
        Fact(f"{p} said {beasts} attacked them on the road to {place3}.",
             "What attacked me on the road?",
             [f"{p} said the road to {place3} is long and muddy.",
              f"{p} asked: Is the road to {place3} safe now?",
              f"{p} said they will travel to {place3} again soon."]),
        Fact(f"{p} said they grew up in {place4}, by the sea.", "Where did I grow up?",
             [f"{p} said they would like to see {place4} again.",
              f"{p} said they left home when they were young.",
              f"{p} asked: Have I ever been to {place4}?"]),
    ]  # fmt: skip
    return rng.sample(candidates, 6)


def build_conversations(count: int = 20, sessions: int = 10) -> list[Conversation]:
    """Deterministic: the same arguments give the same set."""
    conversations = []
    for c in range(count):
        rng = random.Random(f"conversation-{c}")
        p = PLAYERS[c % len(PLAYERS)]
        conv = Conversation(npc_id=f"bench-npc-{c}", player=p)
        facts = _facts(rng, p)
        updated = set(rng.sample(range(len(facts)), rng.choice((1, 2))))
        times = [T0 + s * 3 * DAY + rng.uniform(0, 8) * HOUR for s in range(sessions)]
        for i, fact in enumerate(facts):  # stated in the first three sessions
            conv.memories.append((times[i // 2] + i * 60, fact.text))
        for i, fact in enumerate(facts):
            for j, distractor in enumerate(fact.distractors):  # recent, on the same topic
                session = rng.randint(sessions // 2, sessions - 1)
                conv.memories.append((times[session] + 600 + j * 60 + i, distractor))
            if i in updated and fact.update:
                session = rng.randint(sessions - 3, sessions - 2)
                conv.memories.append((times[session] + 1200 + i, fact.update))
                conv.questions.append((fact.question, fact.update, fact.text))
            else:
                conv.questions.append((fact.question, fact.text, None))
        for s in range(sessions):
            for j in range(8 if s < sessions - 1 else 12):  # everyday memories, every session
                template = EVERYDAY[(s * 7 + j * 3 + c) % len(EVERYDAY)]
                text = template.format(P=p, n=rng.randint(2, 40))
                conv.memories.append((times[s] + 1800 + j * 120, text))
            for j in range(3):  # what the player talked about: retrieved (and touched)
                question = EVERYDAY_QUESTIONS[(s + j + c) % len(EVERYDAY_QUESTIONS)]
                conv.touches.append((times[s] + 3000 + j * 60, question))
            if s in (4, 6):  # now and then the player brings up an earlier topic
                topic = facts[rng.randrange(len(facts))].question
                conv.touches.append((times[s] + 3600, topic))
        conv.memories.sort()
        conv.touches.sort()
        conversations.append(conv)
    return conversations


def _store(
    store: MemoryStore,
    service: MemoryService,
    npc_id: str,
    batch: list[Memory],
    vectors: dict[str, list[float]],
) -> None:
    """One batched write, as the memory writer makes after an extraction."""
    if batch:
        store.add(batch, embeddings=[vectors[m.text] for m in batch])
        service.cache.invalidate(npc_id)


@dataclass(slots=True)
class Score:
    """What one ranking found over the question set."""

    found5: list[int] = field(default_factory=lambda: [0, 0])  # early answer, updated answer
    found1: int = 0
    current_first: int = 0  # updated facts: the current answer ranked above the stale one
    totals: list[int] = field(default_factory=lambda: [0, 0])

    def add(self, ranked: list[str], answer: str, stale: str | None) -> None:
        updated = stale is not None
        self.totals[updated] += 1
        self.found5[updated] += answer in ranked[:5]
        self.found1 += bool(ranked) and ranked[0] == answer
        if stale is not None and answer in ranked:
            self.current_first += stale not in ranked or ranked.index(answer) < ranked.index(stale)

    def row(self) -> str:
        total = sum(self.totals)
        return (
            f"{sum(self.found5) / total:.0%} (early answers {self.found5[0]}/{self.totals[0]}, "
            f"updated {self.found5[1]}/{self.totals[1]}); top-1 {self.found1 / total:.0%}; "
            f"current above stale {self.current_first}/{self.totals[1]}"
        )


async def _quality(
    conversations: list[Conversation], variants: list[tuple[str, RetrievalPolicy]]
) -> list[Row]:
    embedder = MiniLMEmbeddings(threads=2)
    # Every text is embedded once, and reused by each ranking's replay.
    texts = sorted({text for conv in conversations for _, text in conv.memories})
    vectors = dict(zip(texts, ([float(x) for x in v] for v in embedder(texts)), strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(_client(Path(tmp)), embedder=embedder)
        embed_query = store.embed_query
        queries: dict[str, list[float]] = {}

        def remembered(query: str) -> list[float]:
            if query not in queries:
                queries[query] = embed_query(query)
            return queries[query]

        store.embed_query = remembered  # type: ignore[method-assign]
        now = [0.0]
        services = [
            MemoryService(lambda: store, policy=policy, clock=lambda: now[0])
            for _, policy in variants
        ]
        scores = [Score() for _ in variants]
        cosine = Score()
        for conv in conversations:
            # Replay the sessions in order: memories stored, the player's messages
            # retrieved with their access times touched, as a chat would.
            events: list[tuple[float, int, str]] = [(t, 0, text) for t, text in conv.memories]
            events += [(t, 1, q) for t, q in conv.touches]
            for index, service in enumerate(services):
                mine = f"{conv.npc_id}-{index}"
                batch: list[Memory] = []
                for t, kind, text in sorted(events):
                    now[0] = t
                    if kind == 0:
                        rated = importance_of(fact_signals(text))
                        mid = memory_id(mine, conv.player, "dialogue", text, t, None)
                        batch.append(Memory(mid, mine, text, "dialogue", rated, t, t, conv.player))
                        continue
                    _store(store, service, mine, batch, vectors)
                    batch = []
                    await service.retrieve(mine, text, player=conv.player)
                _store(store, service, mine, batch, vectors)
                await service.flush_touches()
                now[0] = max(t for t, _, _ in events) + HOUR
                for question, answer, stale in conv.questions:
                    ranked = await service.retrieve(
                        mine, question, player=conv.player, k=20, touch=False
                    )
                    scores[index].add([s.text for s in ranked], answer, stale)
                    if index == 0:
                        plain = store.candidates(mine, question, n=20, player=conv.player)
                        cosine.add([c.memory.text for c in plain], answer, stale)
        for service in services:
            await service.aclose()
    questions = sum(len(c.questions) for c in conversations)
    memories = sum(len(c.memories) for c in conversations)
    rows = [
        (
            f"quality set: {len(conversations)} conversations x 10 sessions",
            f"{memories:,} memories, {questions} questions",
        ),
        ("recall@5, plain cosine", cosine.row()),
    ]
    rows += [
        (f"recall@5, {label}", score.row())
        for (label, _), score in zip(variants, scores, strict=True)
    ]
    return rows


def retrieval_quality(conversations: int = 20) -> list[Row]:
    def policy(weights: Weights, margin: float, candidates: int = 50) -> RetrievalPolicy:
        return RetrievalPolicy(candidates=candidates, weights=weights, relevance_margin=margin)

    variants = [
        ("ours, defaults (weights 1/1/1, margin 0.03)", RetrievalPolicy()),
        ("  margin 0.05", policy(Weights(1, 1, 1), 0.05)),
        ("  margin 0.1", policy(Weights(1, 1, 1), 0.1)),
        ("  margin 0.2", policy(Weights(1, 1, 1), 0.2)),
        ("  margin 0.03, weights 0.5/1/1", policy(Weights(0.5, 1, 1), 0.03)),
        ("  no gate (plain Generative Agents)", policy(Weights(1, 1, 1), 0.0)),
    ]
    return asyncio.run(_quality(build_conversations(conversations), variants))


def chat_first_token(latency: float = 0.05, rounds: int = 20) -> list[Row]:
    """Chat time to first token: the service over the backend's own (chat_latency.py)."""
    import asyncio

    from benchmarks.chat_latency import measure
    from benchmarks.concurrency import fake_server

    with fake_server(latency) as base_url:
        figures = asyncio.run(measure(base_url, rounds))
    return [
        (f"chat {name} (L={latency * 1000:.0f} ms)", f"{value:.2f}")
        for name, value in figures.items()
    ]


def print_table(rows: Sequence[Row]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="memories, comma-separated")
    parser.add_argument("--no-quality", action="store_true", help="skip the quality set")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency part")
    parser.add_argument("--no-ttft", action="store_true", help="skip the chat first-token part")
    args = parser.parse_args()
    rows: list[Row] = []
    if not args.no_ttft:
        rows += chat_first_token()
    if not args.no_latency:
        rows += retrieval_latency([int(size) for size in args.sizes.split(",")])
        rows += single_collection_latency()
    if not args.no_quality:
        rows += retrieval_quality()
    print_table(rows)


if __name__ == "__main__":
    main()
