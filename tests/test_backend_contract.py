"""One contract, run against every backend: what the services rely on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from app.assets import Assets
from app.backends.base import Backend, ChatRequest, JSONReply
from app.backends.openai_compat import OpenAIBackend
from app.backends.procedural import ProceduralBackend
from app.backends.registry import BackendContext, default_registry
from app.errors import BackendCapabilityError
from app.models import NPC_TASK, NPCProfile, World
from app.services.planning import CastRequest, NamedNPC, plan_cast
from app.services.prompts import npc_request
from config import Settings
from tests.conftest import make_settings
from tests.doubles import ScriptedBackend
from tests.fake_openai import FakeOpenAIServer
from tests.npc_fixtures import valid_profile

WORLD = World(name="Saltmere", era="Medieval", time_period="1340", detail="A fishing village.")
Factory = Callable[[Settings], Backend]


def _procedural(settings: Settings) -> Backend:
    return ProceduralBackend(settings, BackendContext(assets=Assets(settings.assets_dir)))


def _openai(settings: Settings) -> Backend:
    return OpenAIBackend(settings)


def _scripted(settings: Settings) -> Backend:
    return ScriptedBackend()


@pytest.fixture(params=[_procedural, _openai, _scripted], ids=["procedural", "openai", "scripted"])
async def backend(
    request: pytest.FixtureRequest, tmp_path, openai_server: FakeOpenAIServer
) -> AsyncIterator[Backend]:  # type: ignore[no-untyped-def]
    settings = make_settings(
        tmp_path,
        openai_base_url=openai_server.base_url,
        openai_api_key="sk-contract-test-key",
        openai_model="fake-model",
    )
    made: Backend = request.param(settings)
    yield made
    await made.aclose()


def _request(name: str = "Maud"):  # type: ignore[no-untyped-def]
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    personalities = Assets(settings.assets_dir).personalities()
    spec = plan_cast(
        CastRequest(world=WORLD, count=1, temperature=0.9, named=(NamedNPC(name),), seed=3),
        personalities,
        max_npcs=1,
    )[0]
    return npc_request(spec)


def test_identity_and_capabilities(backend: Backend) -> None:
    assert backend.name and ":" in backend.name
    assert backend.cache_identity.startswith(backend.name)
    assert backend.kind in ("remote", "local")
    assert isinstance(backend.supports_schema, bool) and isinstance(backend.can_stream, bool)


async def test_complete_json_gives_a_valid_profile(backend: Backend) -> None:
    reply = await backend.complete_json(_request("Maud"))
    assert isinstance(reply, JSONReply) and reply.ok, reply.parse_error
    profile = NPCProfile.model_validate(reply.data)
    assert profile.name == "Maud"
    assert reply.raw  # what a repair call would show the model
    assert "backend_ms" in reply.stats or isinstance(backend, ScriptedBackend)


async def test_npc_task_name_is_shared(backend: Backend) -> None:
    assert _request().task == NPC_TASK


async def test_stream_chat_streams_or_says_it_cannot(backend: Backend) -> None:
    messages = [{"role": "user", "content": "Who are you?"}]
    # A chat carries the NPC it is with, as the chat service sends it.
    inputs = {"npc": {**valid_profile("Maud"), "id": "npc-maud"}, "message": "Who are you?"}
    if backend.can_stream:
        request = ChatRequest(messages, inputs=inputs)  # type: ignore[arg-type]
        parts = [part async for part in backend.stream_chat(request)]
        assert parts and all(isinstance(part, str) for part in parts)
    else:
        with pytest.raises(BackendCapabilityError):
            [part async for part in backend.stream_chat(ChatRequest(messages))]  # type: ignore[arg-type]


async def test_aclose_twice_is_harmless(backend: Backend) -> None:
    await backend.complete_json(_request())
    await backend.aclose()
    await backend.aclose()


def test_every_registered_backend_is_in_this_suite() -> None:
    # local runs a real model: its own suite, tests/test_llama_local.py
    assert set(default_registry().names()) <= {"procedural", "openai", "local"}
