"""The OpenAI-compatible path against a real llama.cpp server and a real small model.

``python -m llama_cpp.server`` (llama-cpp-python) with SmolLM2-135M-Instruct, started
as the README says. Marked ``llama``: skipped without llama-cpp-python and the
model, required in CI (``.ci/run``), where one structured cast, a streamed chat, a
cancelled stream and a crash mid-cast run in a few minutes on 2 cores.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.backends.base import ChatRequest
from app.services.generation import NPCOutcome
from config import Settings
from tests import casts
from tests.conftest import WORLDS_DIR, MakeServices, make_settings
from tests.llama_models import LlamaServer, gguf_path, llama_server

pytestmark = [pytest.mark.llama, pytest.mark.slow, pytest.mark.server]

SALTMERE = "saltmere"
CHAT = [
    {"role": "system", "content": "You are Maud, a fishwife of Saltmere. Answer in a sentence."},
    {"role": "user", "content": "What did the boats bring in today?"},
]


@pytest.fixture(scope="module")
def model() -> Path:
    return gguf_path()


@pytest.fixture(scope="module")
def server(model: Path) -> Iterator[LlamaServer]:
    with llama_server(model) as running:
        yield running


def _settings(tmp_path: Path, server: LlamaServer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "backend": "openai",
        "openai_base_url": server.base_url,
        "openai_model": "smollm2",
        # The server takes one request at a time: more would only queue there,
        # where a repair cannot go first.
        "max_concurrency": 1,
        "openai_context_tokens": 4096,  # as --n_ctx; llama-cpp-python has no /props
        "openai_timeout": 300.0,  # 2 shared cores: an NPC takes 10-60 s
        "max_retries": 1,
        "retry_base_delay": 0.0,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


def _world():  # type: ignore[no-untyped-def]
    from app.models import World

    return World.model_validate_json((WORLDS_DIR / f"{SALTMERE}.json").read_text())


async def test_a_structured_cast_of_five_is_mostly_valid(
    tmp_path: Path, server: LlamaServer, make_services: MakeServices
) -> None:
    services = make_services(_settings(tmp_path, server))
    started = time.perf_counter()
    outcomes = await casts.outcomes(services, _world(), 5, seed=15)
    seconds = time.perf_counter() - started
    valid = [o.npc for o in outcomes if o.npc is not None]
    failed = [o.error for o in outcomes if o.npc is None]
    guard = services.backends.get("openai")
    print(  # the figures the README quotes (pytest -s)
        f"\nllama server cast: {len(valid)}/5 valid, {sum(n.repaired for n in valid)} repaired, "
        f"{seconds / 5:.1f} s per NPC, {guard.calls} calls; failures: {failed}"
    )
    assert len(valid) >= 4, failed
    # At most one repair each: a first call, a repair, and the one retry allowed.
    assert guard.calls <= 5 * 2 + 1
    for npc in valid:  # the grammar kept the bounds that matter
        assert npc.name.strip() and 2 <= len(npc.sample_lines) <= 4
        assert all(line.strip() for line in npc.sample_lines)


async def test_a_streamed_chat_arrives_in_pieces_and_ends(
    tmp_path: Path, server: LlamaServer, make_services: MakeServices
) -> None:
    guard = make_services(_settings(tmp_path, server)).backends.get("openai")
    started = time.perf_counter()
    first: float | None = None
    parts = []
    async for part in guard.stream_chat(ChatRequest(CHAT, temperature=0.7, max_tokens=60)):
        first = first or time.perf_counter()
        parts.append(part)
    assert first is not None
    print(f"\nllama server chat: TTFT {first - started:.2f} s, {len(parts)} deltas")
    assert len(parts) > 3 and "".join(parts).strip()


async def _timed_short_reply(guard) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    parts = [p async for p in guard.stream_chat(ChatRequest(CHAT, max_tokens=8))]
    assert parts
    return time.perf_counter() - started


async def test_a_cancelled_stream_frees_the_server(
    tmp_path: Path, server: LlamaServer, make_services: MakeServices
) -> None:
    guard = make_services(_settings(tmp_path, server)).backends.get("openai")
    alone = await _timed_short_reply(guard)
    long_chat = ChatRequest(
        [*CHAT[:1], {"role": "user", "content": "Tell me the whole history of Saltmere."}],
        max_tokens=400,
    )
    stream = guard.stream_chat(long_chat)
    assert await anext(stream)
    await stream.aclose()  # the reader went away: the connection closes
    assert guard.in_flight == 0
    # Had the server gone on writing the 400 tokens, this would wait behind them.
    after = await _timed_short_reply(guard)
    assert after < 3 * alone + 5.0, (alone, after)


async def test_a_server_killed_mid_cast_fails_the_rest_clearly_and_keeps_the_finished(
    tmp_path: Path, model: Path, make_services: MakeServices
) -> None:
    with llama_server(model) as doomed:
        services = make_services(_settings(tmp_path, doomed))
        plan = await services.cast.plan(casts.request(_world(), 3, seed=21), save=False)
        arrived: list[NPCOutcome] = []
        async with services.cast.run(plan) as run:
            async for outcome in run.outcomes():
                if not arrived:
                    doomed.kill()
                arrived.append(outcome)
    assert len(arrived) == 3
    first, *rest = arrived
    assert first.npc is not None or first.error  # finished before the crash, kept as it was
    for outcome in rest:
        assert outcome.npc is None
        assert any(
            reason in (outcome.error or "")
            for reason in ("cannot reach", "connection broke", "stream ended", "calls failed")
        ), outcome.error
    # The one that finished is still what the run reported.
    assert arrived[0] is first


async def test_prompt_overflow_fails_at_once_instead_of_a_reset_stream(
    tmp_path: Path, model: Path, make_services: MakeServices
) -> None:
    with llama_server(model, n_ctx=1024) as small:
        services = make_services(_settings(tmp_path, small, openai_context_tokens=1024))
        outcomes = await casts.outcomes(services, _world(), 1, seed=3)
        guard = services.backends.get("openai")
    assert outcomes[0].npc is None
    assert "1024-token context" in (outcomes[0].error or "")
    assert guard.calls == 1 and guard.retries == 0  # not retried, no repair
