"""Library benchmark: embeddings throughput, bulk adds, search latency.

    python benchmarks/library.py [--large 100000] [--no-server]

Prints, in one run: embedding texts/s on one thread for realistic NPC
profiles and for short search queries (target >= 150/s), the profiles again
with every text padded to 256 tokens in batches of 64 (Chroma's stock ONNX
behaviour) for comparison; the time to add 10,000 NPC
documents; and search p50/p95 (5 results) at 10k and at --large documents,
embedded and through a `chroma run` server started here. Large collections
use precomputed unit vectors (embedding 100k texts would take ten minutes and
measures the embedder, not the index).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from app.models import NPC
from app.store.embeddings import DIMENSIONS, MiniLMEmbeddings
from app.store.npc_store import profile_text
from tests.chroma_server import chroma_server

BATCH = 4000


def _profiles(count: int) -> list[str]:
    """Profile texts of real procedural NPCs (what the library embeds)."""
    import asyncio

    from app.wiring import Services
    from config import Settings
    from tests import casts

    services = Services(Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp())))  # type: ignore[call-arg]
    texts: list[str] = []
    worlds = services.worlds.names()
    seed = 0
    while len(texts) < count:
        world = services.worlds.resolve(worlds[seed % len(worlds)], None).world
        outcomes = asyncio.run(
            casts.outcomes(services, world, 100, seed=seed, backend="procedural")
        )
        texts += [profile_text(o.npc) for o in outcomes if isinstance(o.npc, NPC)]
        seed += 1
    return texts[:count]


def _texts_per_second(embed: MiniLMEmbeddings, texts: list[str]) -> float:
    embed(texts[:16])  # load the model first
    started = time.perf_counter()
    embed(texts)
    return len(texts) / (time.perf_counter() - started)


class PaddedTo256(MiniLMEmbeddings):
    """The stock behaviour, for comparison: every text padded to 256 tokens."""

    def _load(self) -> tuple[Any, Any]:
        session, tokenizer = super()._load()
        tokenizer.enable_padding(length=256)
        return session, tokenizer


def _unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSIONS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _fill(collection: Any, total: int) -> float:
    """Add ``total`` documents with precomputed vectors; returns seconds."""
    started = time.perf_counter()
    for start in range(collection.count(), total, BATCH):
        size = min(BATCH, total - start)
        collection.add(
            ids=[f"npc-{i}" for i in range(start, start + size)],
            embeddings=_unit_vectors(size, start),
            documents=[f"NPC number {i}" for i in range(start, start + size)],
            metadatas=[
                {"world": f"world-{i % 8}", "name": f"NPC {i}"} for i in range(start, start + size)
            ],
        )
    return time.perf_counter() - started


def _search_ms(collection: Any, queries: int = 200) -> tuple[float, float]:
    vectors = _unit_vectors(queries, 999_999)
    timings = []
    for vector in vectors:
        started = time.perf_counter()
        collection.query(query_embeddings=[vector], n_results=5)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95)]


def _chroma_settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False)


def _measure_client(client: Any, label: str, large: int, rows: list[tuple[str, str]]) -> None:
    collection = client.get_or_create_collection(
        "bench", metadata={"hnsw:space": "cosine"}, embedding_function=None
    )
    seconds = _fill(collection, 10_000)
    rows.append(
        (
            f"{label}: add 10,000 documents (vectors given)",
            f"{seconds:.1f} s, {10_000 / seconds:,.0f}/s",
        )
    )
    p50, p95 = _search_ms(collection)
    rows.append((f"{label}: search at 10k, p50 / p95", f"{p50:.2f} / {p95:.2f} ms"))
    if large > 10_000:
        seconds = _fill(collection, large)
        p50, p95 = _search_ms(collection)
        rows.append(
            (f"{label}: search at {large // 1000}k, p50 / p95", f"{p50:.2f} / {p95:.2f} ms")
        )


def main() -> None:
    import chromadb

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=100_000, help="documents for the large search")
    parser.add_argument(
        "--no-server", action="store_true", help="skip the `chroma run` measurements"
    )
    args = parser.parse_args()

    rows: list[tuple[str, str]] = []
    texts = _profiles(512)
    words = statistics.median(len(t.split()) for t in texts)
    ours = _texts_per_second(MiniLMEmbeddings(threads=1), texts)
    padded = _texts_per_second(PaddedTo256(threads=1, max_length=256, batch_size=64), texts)
    queries = [f"a {w} with a secret" for w in ("blacksmith", "priest", "netrunner", "baker")] * 128
    short = _texts_per_second(MiniLMEmbeddings(threads=1), queries)
    rows.append(
        (f"embeddings: 512 NPC profiles (~{words:.0f} words), 1 thread", f"{ours:.0f} texts/s")
    )
    rows.append(
        (
            "  stock behaviour: all padded to 256 tokens",
            f"{padded:.0f} texts/s ({ours / padded:.1f}x slower)",
        )
    )
    rows.append(
        ("embeddings: 512 search queries (~6 words)", f"{short:.0f} texts/s (target >= 150)")
    )
    rows.append(("embedding 10,000 profiles would take", f"{10_000 / ours:.0f} s"))

    with tempfile.TemporaryDirectory() as tmp:
        embedded = chromadb.PersistentClient(
            path=str(Path(tmp) / "embedded"), settings=_chroma_settings()
        )
        _measure_client(embedded, "embedded", args.large, rows)
        if not args.no_server:
            with chroma_server(Path(tmp) / "server") as port:
                client = chromadb.HttpClient(
                    host="127.0.0.1", port=port, settings=_chroma_settings()
                )
                _measure_client(client, "server", args.large, rows)

    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    random.seed(0)
    main()
