"""The procedural generator: valid, deterministic, unique names, no contradictions, world-aware."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.assets import Assets
from app.backends.procedural import ProceduralBackend
from app.backends.procedural_tables import GENERIC, Tables
from app.backends.procedural_world import read_world
from app.models import NPC, World
from app.services.worlds import list_world_files, load_world_file
from app.wiring import Services
from tests import casts
from tests.conftest import ASSETS_DIR, WORLDS_DIR
from utils.cached_json import JSONFileCache

ROME = World(
    name="Rome",
    era="The Roman Empire",
    time_period="110 AD, under Trajan",
    detail="The Senate, the legions, the Forum and the villas of patrician families.",
)
NEON = World(
    name="Neon Harbor",
    era="Cyberpunk megacity",
    time_period="2089",
    detail="Megacorp arcologies, netrunners, chrome implants and neon-lit black markets.",
)


@pytest.fixture(scope="module")
def tables() -> Tables:
    return Assets(ASSETS_DIR).tables()


async def _cast(
    services: Services, world: World, count: int, seed: int | None = 1, **kw: object
) -> list[NPC]:
    outcomes = await casts.outcomes(services, world, count, seed=seed, backend="procedural", **kw)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    return [o.npc for o in outcomes if o.npc is not None]


async def test_same_seed_same_cast_different_seed_different(services: Services) -> None:
    first = await _cast(services, ROME, 8, seed=42)
    again = await _cast(services, ROME, 8, seed=42)
    other = await _cast(services, ROME, 8, seed=43)
    dump = [npc.model_dump(exclude={"timing"}) for npc in first]
    assert dump == [npc.model_dump(exclude={"timing"}) for npc in again]
    assert [n.name for n in first] != [n.name for n in other]
    assert [n.backstory for n in first] != [n.backstory for n in other]


async def test_no_two_npcs_of_a_cast_share_a_name(services: Services) -> None:
    for world in (ROME, NEON):
        cast = await _cast(services, world, 100, seed=5)
        names = Counter(npc.name for npc in cast)
        assert names.most_common(1)[0][1] == 1, names.most_common(3)


async def test_given_names_are_kept_and_not_reused(services: Services) -> None:
    cast = await _cast(services, ROME, 30, seed=9, names=["Gaius Julius"])
    assert cast[0].name == "Gaius Julius"
    assert all(npc.name != "Gaius Julius" for npc in cast[1:])


async def test_required_traits_are_included_without_their_opposites(services: Services) -> None:
    data = services.assets.personalities()
    trait = next(t for t in data.traits.values() if t.opposite)
    cast = await _cast(services, ROME, 20, seed=3, traits=(trait.name,))
    for npc in cast:
        assert trait.name in npc.personality_traits
        assert trait.opposite not in npc.personality_traits


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(min_value=0, max_value=2**31 - 1))
async def test_no_npc_ever_gets_contradicting_traits(services: Services, seed: int) -> None:
    for npc in await _cast(services, NEON, 5, seed=seed):
        assert services.assets.personalities().conflicts(npc.personality_traits) == []
        assert 3 <= len(npc.personality_traits) <= 8
        assert 2 <= len(npc.sample_lines) <= 4


def test_genre_detection_reads_the_world(tables: Tables) -> None:
    assert read_world(tables, ROME).genre == "ancient_rome"
    assert read_world(tables, NEON).genre == "cyberpunk"
    plain = World(era="somewhere", time_period="sometime", detail="nothing recognisable here")
    assert read_world(tables, plain).genre == GENERIC
    assert tables.genre_scores("chromed")["ancient_rome"] == 0  # whole words only


SHIPPED_GENRES = {
    "roman_empire": "ancient_rome",
    "colony_kepler": "scifi",
    "neon_harbor": "cyberpunk",
    "saltmere": "medieval",
    "ashmere_vale": "fantasy",
    "cinder_gulch": "western",
    "harrow_bay": "modern",
    "lanternfall": GENERIC,  # setting-neutral on purpose: the fallback tables
}


def test_every_shipped_world_gets_its_genre(tables: Tables) -> None:
    found = {}
    for path in list_world_files(WORLDS_DIR).values():
        world = load_world_file(path, JSONFileCache())
        found[path.stem] = read_world(tables, world).genre
    assert found == SHIPPED_GENRES


async def test_worlds_get_different_people(services: Services, tables: Tables) -> None:
    rome = await _cast(services, ROME, 20, seed=1)
    neon = await _cast(services, NEON, 20, seed=1)
    rome_jobs = {npc.occupation for npc in rome}
    neon_jobs = {npc.occupation for npc in neon}
    roman_titles = {o.title for o in tables.occupations["ancient_rome"]}
    cyber_titles = {o.title for o in tables.occupations["cyberpunk"]}
    assert len(rome_jobs & roman_titles) >= len(rome_jobs) // 2
    assert len(neon_jobs & cyber_titles) >= len(neon_jobs) // 2
    assert not {npc.name for npc in rome} & {npc.name for npc in neon}


async def test_text_has_no_unfilled_placeholders(services: Services) -> None:
    for path in list_world_files(WORLDS_DIR).values():
        for npc in await _cast(services, load_world_file(path, JSONFileCache()), 12, seed=11):
            for field, value in npc.model_dump(exclude={"timing"}).items():
                texts = value if isinstance(value, list) else [value]
                for text in texts:
                    assert "{" not in str(text) and "}" not in str(text), (field, text)


async def test_identity_and_capabilities(settings) -> None:  # type: ignore[no-untyped-def]
    backend = ProceduralBackend(settings)
    assert backend.name == "procedural:v1" and backend.kind == "local"
    assert backend.supports_schema and backend.can_stream  # it chats, offline
