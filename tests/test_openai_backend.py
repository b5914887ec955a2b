"""The openai backend over real HTTP against the fake server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from app.backends.base import ChatRequest
from app.backends.openai_compat import OLLAMA_DEFAULT_CONTEXT, OpenAIBackend
from app.errors import BackendUnavailableError, ConfigError
from app.models import World
from app.services.prompts import npc_request
from app.wiring import Services
from config import Settings
from tests import casts
from tests.conftest import FakeSleep, MakeServices, make_settings
from tests.fake_openai import Action, FakeOpenAIServer
from tests.npc_fixtures import valid_profile

WORLD = World(name="Saltmere", era="Medieval", time_period="1340", detail="A fishing village.")


def _specs(services: Services, count: int, names: tuple[str, ...] = (), seed: int = 7):  # type: ignore[no-untyped-def]
    return casts.specs(services, WORLD, count, names=names, seed=seed)


async def _generate(services: Services, count: int, names: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    return await casts.outcomes(services, WORLD, count, names=names, seed=7)


async def test_generates_a_cast_over_http(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    outcomes = await _generate(openai_services, 3, names=("Maud",))
    assert [o.ok for o in outcomes] == [True, True, True]
    assert outcomes[0].npc is not None and outcomes[0].npc.name == "Maud"
    assert outcomes[0].npc.backend == "openai:fake-model"
    assert len(openai_server.requests) == 3
    body = openai_server.requests[0]
    assert body["model"] == "fake-model" and body["stream"] is True
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and "secret" in schema["required"]


async def test_concurrency_limit_is_what_the_server_sees(
    tmp_path, openai_server: FakeOpenAIServer, make_services: MakeServices
) -> None:
    openai_server.set_latency(0.15)
    settings = make_settings(
        tmp_path,
        backend="openai",
        openai_base_url=openai_server.base_url,
        openai_model="fake-model",
        max_concurrency=3,
    )
    services = make_services(settings)
    outcomes = await _generate(services, 9)
    assert all(o.ok for o in outcomes)
    assert len(openai_server.requests) == 9
    assert openai_server.max_in_flight == 3


async def test_identical_requests_are_sent_once(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    outcomes = await _generate(openai_services, 5, names=("Ada", "Ada", "Bran", "Ada"))
    assert len(outcomes) == 5 and all(o.ok for o in outcomes)
    # unique: Ada, Bran, one unnamed
    assert len(openai_server.requests) == 3
    ada_ids = {outcomes[i].npc.id for i in (0, 1, 3)}  # type: ignore[union-attr]
    assert len(ada_ids) == 1


async def test_repair_call_only_for_invalid_output(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    outcomes = await _generate(openai_services, 2, names=("Ada", "Bran"))
    assert all(o.ok and not o.npc.repaired for o in outcomes)  # type: ignore[union-attr]
    assert len(openai_server.requests) == 2

    openai_server.reset()
    broken = dict(valid_profile("Ada"))
    del broken["secret"]
    openai_server.enqueue(Action(content=json.dumps(broken)))
    outcomes = await _generate(openai_services, 1, names=("Ada",))
    assert outcomes[0].ok and outcomes[0].npc.repaired  # type: ignore[union-attr]
    assert len(openai_server.requests) == 2
    repair_messages = openai_server.requests[1]["messages"]
    assert repair_messages[-2]["role"] == "assistant"
    assert "secret" in repair_messages[-1]["content"]


async def test_invalid_twice_fails_that_npc_only(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    openai_server.enqueue(
        Action(content="not json at all"), Action(content='{"name": "still broken"}')
    )
    outcomes = await _generate(openai_services, 1, names=("Ada",))
    assert not outcomes[0].ok
    assert "invalid character twice" in (outcomes[0].error or "")


async def test_rate_limit_with_retry_after_is_retried(
    openai_services: Services, openai_server: FakeOpenAIServer, fake_sleep: FakeSleep
) -> None:
    openai_server.fail(429, retry_after=2)
    outcomes = await _generate(openai_services, 1, names=("Ada",))
    assert outcomes[0].ok
    assert len(openai_server.requests) == 2
    assert fake_sleep.delays == [2.0]


async def test_server_errors_are_retried_and_other_npcs_survive(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    openai_server.fail(500, times=2)
    outcomes = await _generate(openai_services, 4)
    assert all(o.ok for o in outcomes)
    assert len(openai_server.requests) == 6


async def test_one_npc_failing_keeps_the_rest(
    tmp_path, openai_server: FakeOpenAIServer, make_services: MakeServices
) -> None:
    settings = make_settings(
        tmp_path,
        backend="openai",
        openai_base_url=openai_server.base_url,
        openai_model="fake-model",
        max_concurrency=1,
        max_retries=0,
    )
    services = make_services(settings)
    # One slot, FIFO: the first NPC gets the failure and, with no retries, keeps it.
    openai_server.fail(503)
    outcomes = await _generate(services, 3, names=("Ada", "Bran", "Cei"))
    assert [o.ok for o in outcomes] == [False, True, True]
    assert "HTTP 503" in (outcomes[0].error or "")


async def test_timeout_is_a_retryable_unavailable_error(
    tmp_path, openai_server: FakeOpenAIServer, fake_sleep: FakeSleep
) -> None:
    settings = make_settings(
        tmp_path, backend="openai", openai_base_url=openai_server.base_url, openai_timeout=0.3
    )
    openai_server.enqueue(Action(latency=2.0))
    backend = OpenAIBackend(settings)
    spec = casts.specs_for(settings, WORLD, 1, seed=7)[0]
    with pytest.raises(BackendUnavailableError, match=r"within 0\.3 s"):
        await backend.complete_json(npc_request(spec))
    await backend.aclose()


async def test_falls_back_to_json_object_when_json_schema_is_rejected(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    openai_server.state.reject_json_schema = True
    outcomes = await _generate(openai_services, 3, names=("Ada", "Bran", "Cei"))
    assert all(o.ok for o in outcomes)
    kinds = [body["response_format"]["type"] for body in openai_server.requests]
    assert kinds.count("json_object") == 3
    json_object_body = next(
        b for b in openai_server.requests if b["response_format"]["type"] == "json_object"
    )
    assert "JSON schema" in json_object_body["messages"][0]["content"]
    # After the first rejection, later NPCs go straight to json_object.
    await _generate(openai_services, 1, names=("Dai",))
    assert openai_server.requests[-1]["response_format"]["type"] == "json_object"


async def test_stops_reading_once_the_object_is_complete(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    content = json.dumps(valid_profile("Ada"))
    openai_server.enqueue(
        Action(content=content, trailing=" and some chatter" * 200, chunk_delay=0.002)
    )
    outcomes = await _generate(openai_services, 1, names=("Ada",))
    assert outcomes[0].ok
    # The server notices the closed connection on its own schedule: wait for it.
    assert await asyncio.to_thread(openai_server.wait_for_streams, 1)
    assert openai_server.state.streams_abandoned == 1
    assert openai_server.state.streams_finished == 0


async def test_unreachable_server_says_so(tmp_path, make_services: MakeServices) -> None:
    settings = make_settings(
        tmp_path, backend="openai", openai_base_url="http://127.0.0.1:9/v1", max_retries=0
    )
    outcomes = await _generate(make_services(settings), 1)
    assert "cannot reach http://127.0.0.1:9/v1" in (outcomes[0].error or "")


async def test_api_key_never_appears_in_errors(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    openai_server.fail(401)
    outcomes = await _generate(openai_services, 1)
    assert "API key" in (outcomes[0].error or "")
    assert "sk-test-secret-123" not in (outcomes[0].error or "")
    assert openai_server.requests  # the key was sent to the server, not shown to the user


def test_missing_key_and_server_is_a_clear_config_error(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIBackend(settings)  # at once, not on every request


async def test_stream_chat_yields_deltas(
    openai_settings: Settings, openai_server: FakeOpenAIServer
) -> None:
    openai_server.enqueue(Action(content="Well met, stranger.", chunk_size=4))
    backend = OpenAIBackend(openai_settings)
    request = ChatRequest([{"role": "user", "content": "hi"}], max_tokens=50)
    parts = [part async for part in backend.stream_chat(request)]
    await backend.aclose()
    assert len(parts) > 1 and "".join(parts) == "Well met, stranger."
    assert openai_server.requests[-1]["max_tokens"] == 50


async def test_stream_chat_is_always_bounded(
    openai_settings: Settings, openai_server: FakeOpenAIServer
) -> None:
    backend = OpenAIBackend(openai_settings)
    [part async for part in backend.stream_chat(ChatRequest([{"role": "user", "content": "hi"}]))]
    await backend.aclose()
    assert openai_server.requests[-1]["max_tokens"] == openai_settings.chat_max_tokens


# -- small local servers (llama.cpp, Ollama): issue 15 ----------------------------------


def _local_settings(tmp_path, server: FakeOpenAIServer, **overrides: object) -> Settings:  # type: ignore[no-untyped-def]
    values: dict[str, object] = {
        "backend": "openai",
        "openai_base_url": server.base_url,
        "openai_model": "fake-model",
        "retry_base_delay": 0.0,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


async def test_json_object_carries_the_schema_with_its_bounds(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    openai_server.state.reject_json_schema = True
    outcomes = await _generate(openai_services, 1, names=("Ada",))
    assert outcomes[0].ok
    rejected, accepted = openai_server.requests
    # Strict json_schema gets the subset it accepts; the grammar gets the bounds.
    strict = rejected["response_format"]["json_schema"]["schema"]
    assert "minItems" not in json.dumps(strict) and "minLength" not in json.dumps(strict)
    grammar = accepted["response_format"]["schema"]
    assert grammar["properties"]["sample_lines"]["minItems"] == 2
    assert grammar["properties"]["sample_lines"]["maxItems"] == 4
    assert grammar["properties"]["name"]["minLength"] == 1
    assert "maxLength" not in json.dumps(grammar)  # a grammar would cut words at it


async def test_an_empty_stream_that_resets_is_retried_not_repaired(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    # llama.cpp's server when the prompt overflows: 200, no event, connection reset.
    openai_server.enqueue(Action(role_chunk=False, stop_after_chunks=0, stream_end="cut"))
    outcomes = await _generate(openai_services, 1, names=("Ada",))
    assert outcomes[0].ok and not outcomes[0].npc.repaired  # type: ignore[union-attr]
    assert len(openai_server.requests) == 2
    assert not any(m["role"] == "assistant" for m in openai_server.requests[1]["messages"])


async def test_reply_budget_fits_the_context_the_server_reports(
    tmp_path, openai_server: FakeOpenAIServer, make_services: MakeServices
) -> None:
    openai_server.set_context(1400)
    services = make_services(_local_settings(tmp_path, openai_server, openai_max_tokens=1200))
    outcomes = await _generate(services, 1, names=("Ada",))
    assert outcomes[0].ok
    body = openai_server.requests[0]
    prompt_chars = sum(len(m["content"]) for m in body["messages"])
    assert body["max_tokens"] < 1200  # cut to fit
    assert body["max_tokens"] + prompt_chars / 3 <= 1400


@pytest.mark.parametrize(
    ("ollama", "context"),
    [
        ({"loaded": {"fake-model": 1400}, "num_ctx": 8192}, 1400),  # what it runs with
        ({"num_ctx": 1400}, 1400),  # not loaded yet: its Modelfile
        ({}, OLLAMA_DEFAULT_CONTEXT),  # says nothing: Ollama's smallest default
    ],
)
async def test_reply_budget_fits_ollamas_context(
    tmp_path: Path,
    openai_server: FakeOpenAIServer,
    make_services: MakeServices,
    ollama: dict[str, Any],
    context: int,
) -> None:
    openai_server.be_ollama(**ollama)
    settings = _local_settings(tmp_path, openai_server, openai_max_tokens=4000)
    outcomes = await _generate(make_services(settings), 1, names=("Ada",))
    assert outcomes[0].ok
    body = openai_server.requests[0]
    prompt_chars = sum(len(m["content"]) for m in body["messages"])
    assert body["max_tokens"] + prompt_chars / 3 <= context < body["max_tokens"] + prompt_chars


async def test_the_context_is_asked_once_however_many_calls_start_together(
    tmp_path, openai_server: FakeOpenAIServer, make_services: MakeServices
) -> None:
    openai_server.set_context(1400)
    services = make_services(_local_settings(tmp_path, openai_server, max_concurrency=8))
    outcomes = await _generate(services, 6)
    assert all(o.ok for o in outcomes)
    assert openai_server.state.props_requests == 1
    assert all(body["max_tokens"] < 1200 for body in openai_server.requests)  # all budgeted


async def test_a_prompt_too_long_for_the_context_fails_at_once_with_what_to_do(
    tmp_path, openai_server: FakeOpenAIServer, make_services: MakeServices
) -> None:
    services = make_services(_local_settings(tmp_path, openai_server, openai_context_tokens=1024))
    world = WORLD.model_copy(update={"detail": "A long chronicle of the harbour. " * 180})
    outcomes = await casts.outcomes(services, world, 2, seed=7)
    assert not any(o.ok for o in outcomes)
    assert "1024-token context" in (outcomes[0].error or "")
    assert "NPC_FORGE_OPENAI_CONTEXT_TOKENS" in (outcomes[0].error or "")
    assert openai_server.requests == []  # nothing sent that would overflow
    # Not the server's fault: the breaker does not count it.
    assert services.backends.get("openai").breaker.failures == 0


async def test_a_reply_cut_at_max_tokens_says_so_in_the_repair(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    cut = json.dumps(valid_profile("Ada"))[:200]
    openai_server.enqueue(Action(content=cut, finish_reason="length"))
    outcomes = await _generate(openai_services, 1, names=("Ada",))
    assert outcomes[0].ok and outcomes[0].npc.repaired  # type: ignore[union-attr]
    repair_prompt = openai_server.requests[1]["messages"][-1]["content"]
    assert "limit of 1200 tokens" in repair_prompt


async def test_the_repair_shows_a_bounded_part_of_a_rambling_reply(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    openai_server.enqueue(Action(content="words " * 3000))
    await _generate(openai_services, 1, names=("Ada",))
    echoed = openai_server.requests[1]["messages"][-2]["content"]
    assert len(echoed) <= 2600 and echoed.endswith(" ...")


@pytest.mark.parametrize(
    ("model", "setting", "folded"),
    [("gemma-3-270m", None, True), ("smollm2", None, False), ("smollm2", True, True),
     ("gemma-3-270m", False, False)],
)  # fmt: skip
async def test_system_prompt_folds_into_the_user_turn_for_templates_that_drop_it(
    tmp_path,
    openai_server: FakeOpenAIServer,
    make_services: MakeServices,
    model: str,
    setting: bool | None,
    folded: bool,
) -> None:
    settings = _local_settings(
        tmp_path, openai_server, openai_model=model, openai_system_in_user=setting
    )
    outcomes = await _generate(make_services(settings), 1, names=("Ada",))
    assert outcomes[0].ok
    messages = openai_server.requests[0]["messages"]
    roles = [m["role"] for m in messages]
    if folded:
        assert roles == ["user"]
        assert messages[0]["content"].startswith("You are NPC Forge")
        assert "Create one non-player character" in messages[0]["content"]
    else:
        assert roles == ["system", "user"]


async def test_chat_folds_the_system_prompt_too(tmp_path, openai_server: FakeOpenAIServer) -> None:
    settings = _local_settings(tmp_path, openai_server, openai_model="gemma-3-270m-it")
    backend = OpenAIBackend(settings)
    request = ChatRequest(
        [{"role": "system", "content": "You are Maud."}, {"role": "user", "content": "hi"}]
    )
    [part async for part in backend.stream_chat(request)]
    await backend.aclose()
    assert openai_server.requests[-1]["messages"] == [
        {"role": "user", "content": "You are Maud.\n\nhi"}
    ]


async def test_at_concurrency_one_a_repair_goes_before_the_waiting_first_calls(
    tmp_path, openai_server: FakeOpenAIServer, make_services: MakeServices
) -> None:
    services = make_services(_local_settings(tmp_path, openai_server, max_concurrency=1))
    openai_server.enqueue(Action(content='{"name": "Ada"}'))  # invalid: fields missing
    order: list[str] = []
    plan = await services.cast.plan(
        casts.request(WORLD, 3, names=("Ada", "Bran", "Cei"), seed=7), save=False
    )
    async with services.cast.run(plan) as run:
        async for outcome in run.outcomes():
            assert outcome.npc is not None
            order.append(outcome.npc.name)
    assert order == ["Ada", "Bran", "Cei"]  # Ada's repair did not wait behind Bran and Cei
    second = openai_server.requests[1]["messages"]
    assert second[-2]["role"] == "assistant"  # the second call the server saw is the repair


async def test_stage_timings_of_a_repaired_npc_add_up_to_at_most_its_total(
    tmp_path, openai_server: FakeOpenAIServer, make_services: MakeServices
) -> None:
    openai_server.set_latency(0.05)
    services = make_services(_local_settings(tmp_path, openai_server, max_concurrency=1))
    openai_server.enqueue(Action(content='{"name": "Ada"}'))
    outcomes = await _generate(services, 3, names=("Ada", "Bran", "Cei"))
    for outcome in outcomes:
        timing = outcome.npc.timing  # type: ignore[union-attr]
        assert timing is not None
        stages = timing.queue_ms + timing.backend_ms + timing.parse_ms + timing.repair_ms
        assert stages <= timing.total_ms + 1.0
    ada = outcomes[0].npc.timing  # type: ignore[union-attr]
    assert ada.repair_ms >= 50 and ada.backend_ms >= 50  # type: ignore[union-attr]
