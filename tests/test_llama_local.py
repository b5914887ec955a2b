"""The embedded ``local`` backend: its setup errors always; a real model when marked.

The real-model tests (``llama``) load SmolLM2-135M-Instruct in-process; they are
skipped without llama-cpp-python and the model (required in CI, see .ci/run).
"""

from __future__ import annotations

import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.backends.base import ChatRequest
from app.backends.local import LLAMA_CPP_VERSION, LocalBackend, LocalModel
from app.backends.registry import default_registry, resolve_backend_name
from app.errors import ConfigError
from app.models import World, profile_grammar_schema
from config import PROJECT_DIR, Settings
from tests import casts
from tests.conftest import WORLDS_DIR, MakeServices, make_settings
from tests.llama_models import gguf_path, threads

llama = pytest.mark.llama


def test_local_is_registered_and_auto_never_picks_it(tmp_path: Path) -> None:
    assert "local" in default_registry().names()
    settings = make_settings(tmp_path, backend="auto", local_model_path=tmp_path / "m.gguf")
    assert resolve_backend_name(settings) == "procedural"
    assert resolve_backend_name(settings, "local") == "local"


def test_without_a_model_file_it_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NPC_FORGE_LOCAL_MODEL_PATH"):
        LocalBackend(make_settings(tmp_path))
    with pytest.raises(ConfigError, match="no model file at"):
        LocalBackend(make_settings(tmp_path, local_model_path=tmp_path / "missing.gguf"))


def test_without_llama_cpp_it_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'npc-forge\[local\]'"):
        LocalBackend(make_settings(tmp_path, local_model_path=model))


def test_the_extra_pins_the_version_the_fast_sampler_was_tested_with() -> None:
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["local"] == [f"llama-cpp-python=={LLAMA_CPP_VERSION}"]


# -- a real model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path() -> Path:
    return gguf_path()


@pytest.fixture(scope="module")
def loaded(model_path: Path) -> Iterator[LocalModel]:
    yield LocalModel(model_path, n_ctx=2048, threads=threads(), fast_grammar=True)


def _settings(tmp_path: Path, model_path: Path, **overrides: object) -> Settings:
    return make_settings(
        tmp_path,
        backend="local",
        local_model_path=model_path,
        local_threads=threads(),
        **overrides,
    )


@llama
def test_the_installed_version_is_the_pinned_one(loaded: LocalModel) -> None:
    import llama_cpp

    assert llama_cpp.__version__ == LLAMA_CPP_VERSION
    assert loaded.fast_grammar


@llama
def test_fast_grammar_sampling_is_the_same_constraint_as_the_stock_one(
    loaded: LocalModel,
) -> None:
    """Greedy, both pick the most likely token the grammar allows: the same text.
    The fast one checks the grammar on one token, not on all 49,152."""
    tokens = loaded.prompt_tokens([{"role": "user", "content": "A fisherman, as JSON."}])
    figures = {}
    texts = {}
    for fast in (True, False, True):  # the first run also evaluates the prompt
        loaded.fast_grammar = fast
        try:
            generated = loaded.generate(
                tokens,
                max_tokens=40,
                temperature=0.0,
                seed=1,
                schema=profile_grammar_schema(),
                on_text=lambda _piece: None,
                stop=threading.Event(),
            )
        finally:
            loaded.fast_grammar = True
        texts[fast] = generated.text
        assert generated.ttft is not None
        figures[fast] = (generated.tokens - 1) / (generated.seconds - generated.ttft)
        if fast:
            resampled = generated.resampled
    print(
        f"\ngrammar sampling: fast {figures[True]:.1f} tok/s ({resampled} of 39 tokens "
        f"re-sampled), stock {figures[False]:.1f} tok/s"
    )
    assert texts[True] == texts[False]
    assert texts[True].startswith("{") and '"name"' in texts[True]


@llama
async def test_a_local_cast_is_valid_json_from_the_schema(
    tmp_path: Path, model_path: Path, make_services: MakeServices
) -> None:
    services = make_services(_settings(tmp_path, model_path))
    world = World.model_validate_json((WORLDS_DIR / "saltmere.json").read_text())
    started = time.perf_counter()
    outcomes = await casts.outcomes(services, world, 3, seed=15)
    seconds = time.perf_counter() - started
    valid = [o.npc for o in outcomes if o.npc is not None]
    print(
        f"\nlocal cast: {len(valid)}/3 valid, {sum(n.repaired for n in valid)} repaired, "
        f"{seconds / 3:.1f} s per NPC; {[o.error for o in outcomes if o.npc is None]}"
    )
    assert len(valid) >= 2
    assert all(npc.backend == f"local:{model_path.stem}" for npc in valid)
    assert services.backends.get("local").max_concurrency == 1  # one model, one reply at a time


@llama
async def test_local_chat_streams_and_stops_when_the_reader_leaves(
    tmp_path: Path, model_path: Path
) -> None:
    backend = LocalBackend(_settings(tmp_path, model_path))
    messages = [
        {"role": "system", "content": "You are Maud, a fishwife of Saltmere."},
        {"role": "user", "content": "Tell me the whole history of Saltmere."},
    ]
    stream = backend.stream_chat(ChatRequest(messages, max_tokens=400))  # type: ignore[arg-type]
    assert await anext(stream)
    started = time.perf_counter()
    await stream.aclose()  # the generation stops at its next token
    assert time.perf_counter() - started < 10
    short = ChatRequest(messages, max_tokens=12)  # type: ignore[arg-type]
    parts = [part async for part in backend.stream_chat(short)]
    assert len(parts) > 1 and "".join(parts).strip()
