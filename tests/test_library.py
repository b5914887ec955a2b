"""The NPC library on a real ChromaDB (embedded, and a real `chroma run` server)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import main
from app.errors import InputError
from app.models import NPC, Relationship, World
from app.ui.generate_tab import GenerateHandlers
from app.ui.library_cards import CardHandlers
from app.ui.library_tab import LibraryHandlers
from app.wiring import Services
from config import Settings
from tests.chroma_server import chroma_server
from tests.conftest import WORLDS_DIR, MakeServices, make_settings
from tests.npc_fixtures import valid_profile

SALTMERE = World(
    name="Saltmere", era="Medieval fishing village", time_period="1340", detail="Fish."
)

PEOPLE = {
    "Bran Hollow": {
        "occupation": "blacksmith",
        "appearance": "A soot-black, scowling smith with forearms like hams.",
        "personality_traits": ["grumpy", "secretive", "proud"],
        "backstory": "He forges swords and anvils and hates small talk.",
        "secret": "He hides a stolen royal sword under his forge.",
    },
    "Maud Flour": {
        "occupation": "baker",
        "appearance": "A round, cheerful woman dusted with flour.",
        "personality_traits": ["cheerful", "generous", "talkative"],
        "backstory": "She bakes bread and honey cakes for the whole village.",
        "secret": "She waters down the ale she sells on the side.",
    },
    "Kestrel Vey": {
        "occupation": "netrunner",
        "appearance": "Chrome implants and a neon visor.",
        "personality_traits": ["curious", "reckless", "clever"],
        "backstory": "She hacks megacorp servers from a rented capsule.",
        "secret": "She sold her crew's location to a corporation.",
    },
    "Father Odo": {
        "occupation": "village priest",
        "appearance": "A gaunt old man in a patched black cassock.",
        "personality_traits": ["pious", "patient", "stern"],
        "backstory": "He has kept the chapel for forty years and buried half the village.",
        "secret": "He no longer believes in anything he preaches.",
    },
}


def make_npc(
    name: str, world: str = "Saltmere", tags: tuple[str, ...] = (), **extra: object
) -> NPC:
    values = {**valid_profile(name), **PEOPLE.get(name, {}), **extra}
    return NPC(
        **values,
        id="npc-" + hashlib.blake2b(name.encode(), digest_size=8).hexdigest(),
        world=world,
        backend="test",
        seed=1,
        tags=list(tags),
    )


@pytest.fixture
def library_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, library_autosave=True)


@pytest.fixture
def library_services(library_settings: Settings, make_services: MakeServices) -> Services:
    return make_services(library_settings)


@pytest.fixture
def people() -> list[NPC]:
    return [
        make_npc("Bran Hollow", tags=("smith", "villain")),
        make_npc("Maud Flour", tags=("food",)),
        make_npc("Kestrel Vey", world="Neon Harbor"),
        make_npc("Father Odo"),
    ]


async def test_search_by_meaning_returns_the_closest(
    library_services: Services, people: list[NPC]
) -> None:
    library = library_services.library
    await library.save(people)
    hits = await library.search("grumpy blacksmith with a secret", k=2)
    assert hits[0].npc.name == "Bran Hollow"
    assert len(hits) == 2 and hits[0].distance <= hits[1].distance
    hits = await library.search("someone who hacks corporate computers", k=1)
    assert hits[0].npc.name == "Kestrel Vey"


async def test_results_are_bounded_and_filtered(
    library_services: Services, people: list[NPC]
) -> None:
    library = library_services.library
    await library.save(people)
    assert len(await library.search("villager", k=3)) == 3
    assert len(await library.search("villager", k=50)) == 4  # never more than there are
    for bad in (0, 51):
        with pytest.raises(InputError, match="between 1 and 50"):
            await library.search("villager", k=bad)
    with pytest.raises(InputError, match="Type what you are looking for"):
        await library.search("   ")
    in_world = await library.search("person", k=10, world="Neon Harbor")
    assert [hit.npc.name for hit in in_world] == ["Kestrel Vey"]
    tagged = await library.search("person", k=10, tag="villain")
    assert [hit.npc.name for hit in tagged] == ["Bran Hollow"]
    assert await library.worlds() == ["Neon Harbor", "Saltmere"]


async def test_nothing_is_lost_across_a_restart(
    library_settings: Settings, people: list[NPC], make_services: MakeServices
) -> None:
    await make_services(library_settings).library.save(people)
    again = make_services(library_settings).library
    assert await again.count() == 4
    assert await again.get(people[0].id) == people[0]


async def test_edit_delete_and_relationships_stay_consistent(
    library_services: Services, people: list[NPC]
) -> None:
    library = library_services.library
    bran, maud = people[0], people[1]
    maud = maud.model_copy(
        update={
            "relationships": [
                Relationship(target_id=bran.id, target_name=bran.name, type="rival", weight=-0.5)
            ]
        }
    )
    await library.save([bran, maud, *people[2:]])
    edited = await library.edit_field(bran.id, "name", "Bran Ashford")
    assert edited.name == "Bran Ashford"
    assert (await library.get(maud.id)).relationships[0].target_name == "Bran Ashford"
    assert (
        await library.edit_field(bran.id, "personality_traits", "Gruff, loyal")
    ).personality_traits == [
        "gruff",
        "loyal",
    ]
    with pytest.raises(InputError, match="whole number"):
        await library.edit_field(bran.id, "age", "old")
    with pytest.raises(InputError, match="sample_lines"):
        await library.edit_field(bran.id, "sample_lines", "only one line")
    # The same rule as the Generate tab: a trait and its opposite are refused.
    trait = next(t for t in library_services.assets.personalities().traits.values() if t.opposite)
    with pytest.raises(InputError, match=f"'{trait.name}' and '{trait.opposite}'|contradict"):
        await library.edit_field(bran.id, "personality_traits", f"{trait.name}, {trait.opposite}")
    assert (await library.get(bran.id)).personality_traits == ["gruff", "loyal"]  # unchanged
    await library.delete(bran.id)
    assert (await library.get(maud.id)).relationships == []
    with pytest.raises(InputError, match="No NPC with id"):
        await library.get(bran.id)
    assert await library.count() == 3


async def test_regenerate_one_field_keeps_the_rest(library_services: Services) -> None:
    npc = make_npc("Bran Hollow")
    world = library_services.worlds.world_for(npc.world)
    new = await library_services.refine.refiner("procedural").regenerate_field(
        npc, "backstory", world, seed=4, temperature=0.9
    )
    assert new.backstory != npc.backstory and new.id == npc.id
    assert new.model_dump(exclude={"backstory", "backend"}) == npc.model_dump(
        exclude={"backstory", "backend"}
    )


async def test_regenerate_with_locked_fields(library_services: Services) -> None:
    npc = make_npc("Bran Hollow")
    world = library_services.worlds.world_for(npc.world)
    locked = ["name", "occupation", "secret"]
    new = await library_services.refine.refiner("procedural").regenerate_npc(
        npc, locked, world, seed=9, temperature=0.9
    )
    assert (new.name, new.occupation, new.secret) == (npc.name, npc.occupation, npc.secret)
    assert new.id == npc.id and new.appearance != npc.appearance
    with pytest.raises(InputError, match="not NPC fields"):
        await library_services.refine.refiner("procedural").regenerate_npc(
            npc, ["id"], world, temperature=0.9
        )


async def test_relationships_among_a_cast(library_services: Services, people: list[NPC]) -> None:
    cast = [npc for npc in people if npc.world == "Saltmere"]
    world = library_services.worlds.world_for("Saltmere")
    related = await library_services.refine.refiner("procedural").relationships(
        cast, world, seed=3, temperature=0.9
    )
    ids = {npc.id for npc in cast}
    ties = [tie for npc in related for tie in npc.relationships]
    assert ties and all(tie.target_id in ids for tie in ties)
    assert all(-1 <= tie.weight <= 1 for tie in ties)
    assert all(tie.target_id != npc.id for npc in related for tie in npc.relationships)
    again = await library_services.refine.refiner("procedural").relationships(
        cast, world, seed=3, temperature=0.9
    )
    assert again == related  # seeded


async def test_generated_casts_are_kept_and_names_vary(library_services: Services) -> None:
    handlers = GenerateHandlers(
        library_services.cast, library_services.worlds, library_services.settings.data_dir
    )
    world = handlers.world_choices()[1]
    first = [
        u async for u in handlers.generate_npcs(world, None, "", 8, "", [], "procedural", 0.9, 1)
    ]
    assert "8 saved to the library" in first[-1][3]
    library = library_services.library
    assert await library.count() == 8
    names = {npc["name"] for npc in first[-1][1]["npcs"]}
    second = [
        u async for u in handlers.generate_npcs(world, None, "", 8, "", [], "procedural", 0.9, 2)
    ]
    assert not names & {npc["name"] for npc in second[-1][1]["npcs"]}
    # The same seed again gives the same cast back (its own names are not avoided).
    again = [
        u async for u in handlers.generate_npcs(world, None, "", 8, "", [], "procedural", 0.9, 1)
    ]
    assert {npc["name"] for npc in again[-1][1]["npcs"]} == names
    assert await library.count() == 16


async def test_library_handlers_search_export_import(
    library_services: Services, people: list[NPC]
) -> None:
    await library_services.library.save(people)
    s = library_services
    handlers = LibraryHandlers(s.library, s.refine, s.removal)
    cards = CardHandlers(s.exports, s.settings.data_dir / "exports")
    rows, choices, status = await handlers.search("baker of bread", 2, None, "")
    assert rows[0][1] == "Maud Flour" and choices["value"] == people[1].id and "2 closest" in status
    card, value = await handlers.open(people[1].id, "backstory")
    assert "Maud Flour" in card and "honey cakes" in value
    path, _ = await cards.export(people[1].id, "this NPC", "Character Card V2 (PNG)")
    assert path.endswith(".png")
    await handlers.delete(people[1].id)
    message = await cards.import_cards([path])
    assert "Imported 1 card" in message
    assert (await library_services.library.get(people[1].id)).name == "Maud Flour"


def test_cli_generate_save(library_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPC_FORGE_DATA_DIR", str(library_settings.data_dir))
    world = next(iter(sorted(WORLDS_DIR.glob("*.json"))))
    args = ["generate", "--world", str(world), "-n", "3", "--seed", "2", "--backend", "procedural"]
    assert main([*args, "--save", "--out", str(library_settings.data_dir / "cast.jsonl")]) == 0
    assert asyncio.run(Services(library_settings).library.count()) == 3


@pytest.fixture
def chroma_port(tmp_path: Path) -> Iterator[int]:
    with chroma_server(tmp_path / "server") as port:
        yield port


@pytest.mark.server
@pytest.mark.slow
async def test_two_app_instances_share_a_chroma_server(
    tmp_path: Path, chroma_port: int, people: list[NPC]
) -> None:
    def instance(name: str) -> Services:
        return Services(
            make_settings(tmp_path / name, chroma_host="127.0.0.1", chroma_port=chroma_port)
        )

    first, second = instance("a"), instance("b")
    await first.library.save(people)
    hits = await second.library.search("grumpy blacksmith with a secret", k=1)
    assert hits[0].npc == people[0]
    await second.library.delete(people[3].id)
    assert await first.library.count() == 3
