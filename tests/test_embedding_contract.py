"""The offline embedding function: shape, normalisation, similarity order, Chroma registration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.store.embeddings import DIMENSIONS, MiniLMEmbeddings, model_files


@pytest.fixture(scope="module")
def embed() -> MiniLMEmbeddings:
    return MiniLMEmbeddings()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def test_ships_with_the_packages() -> None:
    model, tokenizer = model_files()
    assert model.name == "model.onnx" and tokenizer.name == "tokenizer.json"
    assert model.stat().st_size > 10_000_000


def test_dimensions_and_unit_length(embed: MiniLMEmbeddings) -> None:
    vectors = embed(["a sailor", "", "x" * 5000])
    assert len(vectors) == 3
    for vector in vectors:
        assert vector.shape == (DIMENSIONS,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_padding_does_not_change_a_vector(embed: MiniLMEmbeddings) -> None:
    short, long = "a baker", "a grumpy old blacksmith " * 20
    alone = embed([short])[0]
    batched = embed([short, long])[0]
    assert np.allclose(alone, batched, atol=1e-5)
    assert np.allclose(embed([short])[0], alone, atol=1e-6)  # deterministic


@pytest.mark.parametrize(
    ("anchor", "near", "far"),
    [
        (
            "a grumpy old blacksmith who forges swords",
            "an irritable smith hammering blades at the anvil",
            "a cheerful baker selling bread",
        ),
        (
            "a hacker breaking into corporate servers",
            "a netrunner stealing data",
            "a farmer milking cows",
        ),
        (
            "a priest who lost his faith",
            "a cleric doubting the gods",
            "a pirate captain hunting treasure",
        ),
    ],
)
def test_similarity_order(embed: MiniLMEmbeddings, anchor: str, near: str, far: str) -> None:
    a, b, c = embed([anchor, near, far])
    assert _cos(a, b) > _cos(a, c) + 0.1


def test_config_round_trip() -> None:
    original = MiniLMEmbeddings(threads=2, max_length=128, batch_size=8)
    rebuilt = MiniLMEmbeddings.build_from_config(original.get_config())
    assert rebuilt.get_config() == original.get_config()
    assert MiniLMEmbeddings.name() == "npc_forge_minilm_int8"


def test_reopened_collection_rebuilds_the_function(tmp_path: Path) -> None:
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    client = chromadb.PersistentClient(path=str(tmp_path), settings=settings)
    collection = client.get_or_create_collection(
        "npcs_test",
        embedding_function=MiniLMEmbeddings(),
        metadata={"hnsw:space": "cosine"},  # type: ignore[arg-type]
    )
    collection.add(
        ids=["smith", "baker", "hacker"],
        documents=[
            "a blacksmith at his forge",
            "a baker with fresh bread",
            "a hacker in a neon city",
        ],
    )
    reopened = chromadb.PersistentClient(path=str(tmp_path), settings=settings).get_collection(
        "npcs_test"
    )
    result = reopened.query(query_texts=["someone who makes loaves"], n_results=1)
    assert result["ids"] == [["baker"]]
