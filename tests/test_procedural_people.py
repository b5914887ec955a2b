"""Named people of a world's text: mined, cast once each, named in others' stories."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from app.backends.procedural_tables import Tables
from app.backends.procedural_world import read_world
from app.models import NPC, World
from app.services.worlds import list_world_files, load_world_file, world_from_setting
from app.wiring import Services
from tests import casts
from tests.conftest import WORLDS_DIR
from utils.cached_json import JSONFileCache

HEBRIDES = World(
    name="Hebrides with people",
    era="Victorian",
    time_period="1890",
    detail=(
        "A lighthouse island in the Outer Hebrides. Father Ewan MacNeil, the parish priest, "
        "keeps the little church above the harbour. Captain Isobel Reid of the revenue cutter "
        "has sworn to hang every smuggler she catches. Mr Angus Reid owns the boats."
    ),
)
PEOPLE = {
    "Father Ewan MacNeil": ("parish priest", "male"),
    "Captain Isobel Reid": ("captain of the revenue cutter", "female"),
}


async def _cast(services: Services, world: World, count: int, **kw: object) -> list[NPC]:
    outcomes = await casts.outcomes(services, world, count, backend="procedural", **kw)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    return [o.npc for o in outcomes if o.npc is not None]


def test_people_are_mined_with_their_roles_and_genders(services: Services) -> None:
    people = read_world(services.assets.tables(), HEBRIDES).people
    found = {p.name: (p.occupation.title if p.occupation else None, p.gender) for p in people}
    assert found == {**PEOPLE, "Mr Angus Reid": (None, "male")}  # named, but no role given
    text = (
        "Morag Bain, the harbourmaster's widow, runs the inn; Dr. Flora Kerr (the island "
        "doctor) drinks. Ashmere Vale, a green river valley. Bastion Security, a private "
        "police contractor. The lighthouse keeper Hamish Gunn sees everything; the emperor "
        "Trajan rules."
    )
    world = HEBRIDES.model_copy(update={"detail": text})
    found = {p.name: p.gender for p in read_world(services.assets.tables(), world).people}
    # Dr states no gender; nor does a role written before the name.
    assert found == {"Morag Bain": "female", "Dr Flora Kerr": None, "Hamish Gunn": None}


def test_shipped_worlds_name_no_false_people(services: Services) -> None:
    tables: Tables = services.assets.tables()
    for path in list_world_files(WORLDS_DIR).values():
        assert read_world(tables, load_world_file(path, JSONFileCache())).people == ()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_cast_holds_each_named_person_once_with_the_stated_role(
    services: Services, seed: int
) -> None:
    cast = await _cast(services, HEBRIDES, 12, seed=seed)
    names = Counter(npc.name for npc in cast)
    for name, (role, gender) in PEOPLE.items():
        (npc,) = [npc for npc in cast if npc.name == name]
        assert (npc.occupation, npc.gender) == (role, gender)
        bare = name.split(maxsplit=1)[1]
        assert not [n for n in names if n != name and bare in n], names  # nobody else has it
    assert not [n for n in names if "Angus Reid" in n]  # no role: mentioned, never cast


async def test_other_npcs_name_the_world_s_people(services: Services) -> None:
    cast = await _cast(services, HEBRIDES, 30, seed=4)
    stories = " ".join(npc.backstory for npc in cast)
    assert "Father Ewan MacNeil" in stories and "Captain Isobel Reid" in stories
    for npc in cast:  # a person's own story never names them as someone else
        assert npc.name not in npc.backstory


async def test_a_person_the_designer_names_is_not_cast_again(services: Services) -> None:
    cast = await _cast(services, HEBRIDES, 12, seed=1, names=["Ewan MacNeil"])
    assert [npc.name for npc in cast].count("Ewan MacNeil") == 1
    assert not any("Ewan MacNeil" in npc.name for npc in cast[1:])  # not as Father Ewan either


async def test_stories_never_name_another_npc_of_the_cast(services: Services) -> None:
    """A neighbour's story must not drown, poison or bury someone who is in the cast:
    whoever it names is nobody of the cast, by given name alone or by full name."""
    cast = await _cast(services, HEBRIDES, 40, seed=6)
    for npc in cast:
        text = f"{npc.backstory} {npc.motivation} {npc.secret}"
        for other in cast:
            if other is npc or other.name in PEOPLE:
                continue
            given = re.escape(other.name.split()[0])
            assert not re.search(rf"\b{re.escape(other.name)}\b", text), (npc.name, text)
            assert not re.search(rf"\b{given}\b(?! [A-Z])", text), (npc.name, other.name, text)


async def test_a_named_person_holds_the_role_not_a_role(services: Services) -> None:
    stories = []
    for seed in range(1, 7):
        cast = await _cast(services, HEBRIDES, 6, seed=seed)
        stories += [npc.backstory for npc in cast if npc.name in PEOPLE]
    assert not [s for s in stories if re.search(r"\ba (?:parish|captain)", s)], stories
    assert [s for s in stories if re.search(r"\bthe (?:parish priest|captain of)", s)]


def test_a_pitch_that_names_people_is_set_where_its_first_sentence_says(
    services: Services,
) -> None:
    pitch = world_from_setting(
        "A lighthouse island in the Outer Hebrides, 1890. Father Ewan MacNeil, the parish "
        "priest, keeps the church.",
        max_chars=5000,
    )
    setting = read_world(services.assets.tables(), pitch)
    assert setting.home == ("the lighthouse island", "the Outer Hebrides")  # no "the parish priest"
    assert [p.name for p in setting.people] == ["Father Ewan MacNeil"]
