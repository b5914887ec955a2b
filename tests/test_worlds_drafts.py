"""Draft from a pitch: one line becomes a whole world, offline or by an LLM."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.errors import InputError
from app.models import World
from app.services.world_drafts import DETAIL_SECTIONS, draft_world, period_of, year_of
from app.wiring import Services
from tests.conftest import ASSETS_DIR
from tests.fake_openai import FakeOpenAIServer
from utils.cached_json import JSONFileCache

LIGHTHOUSE = "a lighthouse island in the Outer Hebrides, 1890"


@pytest.fixture
def tables() -> Any:
    from app.services.world_drafts import DraftTables

    return DraftTables.model_validate(JSONFileCache().read(ASSETS_DIR / "world_drafts.json"))


@pytest.mark.parametrize(
    ("pitch", "year"),
    [
        (LIGHTHOUSE, 1890),
        ("Rome under Trajan, 110 AD", 110),
        ("Gaul, 52 BC", -52),
        ("a starport in the 25th century", 2450),
        ("Athens in the 5th century BC", -450),
        ("a quiet village", None),
    ],
)
def test_the_year_of_a_pitch(pitch: str, year: int | None) -> None:
    assert year_of(pitch) == year


@pytest.mark.parametrize(
    ("pitch", "period"),
    [
        (LIGHTHOUSE, "victorian"),
        ("Silk Road caravan town, 1250", "medieval"),
        ("Roman frontier fort on Hadrian's Wall, 122 AD", "ancient"),  # not a western
        ("gold rush town in the Sierra Nevada, 1849", "western"),
        ("a cyberpunk harbour city, 2077", "near_future"),
        ("a mining colony on an asteroid in the 25th century", "far_future"),
        ("a dragon's lair above a mountain village", "fantasy"),
        ("a wasteland trading post", "post_apocalyptic"),
        ("a pirate cove", "early_modern"),
    ],
)
def test_the_period_of_a_pitch(pitch: str, period: str, tables: Any) -> None:
    assert period_of(pitch, tables) == period


def test_a_pitch_becomes_a_whole_world_that_stays_in_its_place_and_time(tables: Any) -> None:
    world = draft_world(LIGHTHOUSE, tables)
    assert world.name == "Lighthouse Island in the Outer Hebrides, 1890"
    assert world.time_period == "1890" and "Victorian" in world.era
    assert isinstance(world.detail, dict) and tuple(world.detail) == DETAIL_SECTIONS
    text = world.full_text().lower()
    for noun in ("lighthouse keeper", "lamp room", "crofter", "relief boat"):
        assert noun in text
    for anachronism in ("telephone", "radio", "car ", "serf", "knight"):
        assert anachronism not in world.detail_text().lower()
    assert "no cars" in world.guardrails["period"]
    # A valid world file: it round-trips through the format.
    assert World.model_validate(json.loads(world.model_dump_json())) == world


PRIORY = "a salt-marsh monastery on the Northumbrian coast in 1250, raided by Norse pirates"


def test_the_pitchs_own_land_and_trouble_are_in_its_world(tables: Any) -> None:
    """Nothing the pitch says is dropped: its coast and marsh are places, its
    raiders a faction and the first tension; the era is the period and the place."""
    world = draft_world(PRIORY, tables)
    assert isinstance(world.detail, dict)
    assert world.era == "The Middle Ages, the Northumbrian coast"
    assert world.detail["places"].startswith("The Northumbrian coast; the salt marsh; ")
    assert world.detail["factions"].startswith("Power and loyalty are split: Norse pirates; ")
    assert world.detail["tensions"].startswith(
        "This place has been raided by Norse pirates, and everyone expects it again."
    )


async def test_a_drafted_worlds_cast_lives_in_its_places(services: Services, tables: Any) -> None:
    """The places section is a list the generator reads item by item (it once
    began "The places that matter:", and NPCs grew up "near the places")."""
    from tests.casts import outcomes

    world = draft_world(PRIORY, tables)
    npcs = [o.npc for o in await outcomes(services, world, 12, seed=5) if o.npc is not None]
    stories = " ".join(f"{npc.backstory} {npc.secret} {npc.motivation}" for npc in npcs)
    assert "the places" not in stories.lower()
    assert "salt marsh" in stories or "Northumbrian coast" in stories


def test_drafts_are_seeded_and_never_repeat_a_sentence(tables: Any) -> None:
    pitches = [
        LIGHTHOUSE,
        "Silk Road caravan town, 1250",
        "a cyberpunk harbour city, 2077",
        "a monastery in the mountains, 1150",
        "a wasteland trading post",
    ]
    for pitch in pitches:
        world = draft_world(pitch, tables, seed=3)
        assert world == draft_world(pitch, tables, seed=3)
        sentences = [s.strip() for s in world.detail_text().split(".") if len(s.strip()) > 3]
        assert len(sentences) == len(set(sentences)), pitch
    assert draft_world(LIGHTHOUSE, tables, seed=1) != draft_world(LIGHTHOUSE, tables, seed=2)


async def test_the_drafter_is_offline_with_the_procedural_backend(services: Services) -> None:
    draft = await services.world_drafts.draft(LIGHTHOUSE)
    assert draft.backend.startswith("procedural")
    assert "lighthouse keeper" in draft.world.full_text()
    with pytest.raises(InputError, match="one-line pitch"):
        await services.world_drafts.draft("   ")
    with pytest.raises(InputError, match="keep it under 500"):
        await services.world_drafts.draft("x" * 600)


def _llm_world(body: dict[str, Any]) -> str:
    assert "world files" in body["messages"][0]["content"]
    return json.dumps(
        {
            "name": "Eilean Solas",
            "era": "Victorian Scotland",
            "time_period": "1890",
            "detail": {section: f"The {section} of the island." for section in DETAIL_SECTIONS},
            "guardrails": {"period": "Nothing after 1890.", "tone": "Bleak.", "content": "Kind."},
        }
    )


async def test_an_llm_backend_drafts_through_one_validated_call(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    openai_server.set_responder(_llm_world)
    draft = await openai_services.world_drafts.draft(LIGHTHOUSE)
    assert draft.backend == "openai:fake-model"
    assert draft.world.name == "Eilean Solas"
    assert draft.world.detail["people"] == "The people of the island."  # type: ignore[index]
    assert len(openai_server.requests) == 1
    assert LIGHTHOUSE in openai_server.requests[0]["messages"][-1]["content"]


async def test_an_invalid_llm_draft_gets_one_repair_call(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    replies = iter(['{"name": "Half a world"}', _llm_world])

    def responder(body: dict[str, Any]) -> str:
        reply = next(replies)
        return reply if isinstance(reply, str) else reply(body)

    openai_server.set_responder(responder)
    draft = await openai_services.world_drafts.draft(LIGHTHOUSE)
    assert draft.world.name == "Eilean Solas"
    assert len(openai_server.requests) == 2


def test_a_feature_looks_like_its_period(tables: Any) -> None:
    asteroid = draft_world("a mining colony on an asteroid in the 25th century", tables)
    assert "drill shafts" in asteroid.detail_text() and "pithead" not in asteroid.detail_text()
    colliery = draft_world("a mining village in Wales, 1880", tables)
    assert "pithead" in colliery.detail_text() and "drill shafts" not in colliery.detail_text()
