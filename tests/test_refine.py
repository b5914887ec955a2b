"""Refining NPCs through an OpenAI-compatible server: prompts, schemas, repair."""

from __future__ import annotations

import json
from typing import Any

from app.models import FIELD_TASK, NPC, World
from app.wiring import Services
from tests.fake_openai import Action, FakeOpenAIServer
from tests.npc_fixtures import valid_profile

WORLD = World(name="Saltmere", era="Medieval", time_period="1340", detail="A fishing village.")


def _npc(name: str) -> NPC:
    return NPC(
        **valid_profile(name), id=f"npc-{name.lower()}", world="Saltmere", backend="t", seed=1
    )


async def test_regenerate_field_sends_the_rest_as_context(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    npc = _npc("Aldric")
    openai_server.enqueue(Action(content=json.dumps({"backstory": "He was a smuggler once."})))
    new = await openai_services.refine.refiner().regenerate_field(
        npc, "backstory", WORLD, seed=5, temperature=0.9
    )
    assert new.backstory == "He was a smuggler once."
    assert new.model_dump(exclude={"backstory", "backend"}) == npc.model_dump(
        exclude={"backstory", "backend"}
    )
    body = openai_server.requests[-1]
    schema = body["response_format"]["json_schema"]["schema"]
    assert list(schema["properties"]) == ["backstory"] and schema["required"] == ["backstory"]
    prompt = body["messages"][-1]["content"]
    assert npc.secret in prompt and "Saltmere" in prompt  # the locked fields are the context
    assert body["response_format"]["json_schema"]["name"] == FIELD_TASK


async def test_contradicting_traits_trigger_one_repair(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    data = openai_services.assets.personalities()
    trait = next(t for t in data.traits.values() if t.opposite)
    openai_server.enqueue(
        Action(content=json.dumps({"personality_traits": [trait.name, trait.opposite]})),
        Action(content=json.dumps({"personality_traits": [trait.name, "curious"]})),
    )
    new = await openai_services.refine.refiner().regenerate_field(
        _npc("Aldric"), "personality_traits", WORLD, temperature=0.9
    )
    assert new.personality_traits == [trait.name, "curious"]
    assert "contradict" in openai_server.requests[-1]["messages"][-1]["content"]


async def test_relationships_by_name_through_the_server(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    cast = [_npc("Ada"), _npc("Bran"), _npc("Cei")]

    def ties(body: dict[str, Any]) -> str:
        return json.dumps(
            {
                "relationships": [
                    {"source": "Ada", "target": "Bran", "type": "rival", "weight": -0.4,
                     "secret": False, "description": "They want the same boat."},
                    {"source": "Cei", "target": "Ada", "type": "lover", "weight": 0.9,
                     "secret": True, "description": "They meet at night."},
                    {"source": "Nobody", "target": "Ada", "type": "ally", "weight": 0.5,
                     "secret": False, "description": "Not in the cast."},
                ]
            }
        )  # fmt: skip

    openai_server.set_responder(ties)
    related = await openai_services.refine.refiner().relationships(
        cast, WORLD, seed=1, temperature=0.9
    )
    by_name = {npc.name: npc for npc in related}
    assert [(r.target_name, r.type) for r in by_name["Ada"].relationships] == [("Bran", "rival")]
    assert by_name["Cei"].relationships[0].secret and by_name["Bran"].relationships == []
    assert "Ada" in openai_server.requests[-1]["messages"][-1]["content"]
