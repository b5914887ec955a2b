"""The world decides: period, own nouns, consistency and variety, on fixed seeds."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.backends.procedural import NPCDrafter
from app.backends.procedural_deck import composed_position
from app.backends.procedural_period import Period
from app.backends.procedural_relationships import draft_relationships
from app.backends.procedural_tables import GENERIC
from app.backends.procedural_world import read_world
from app.models import NPC, World
from app.services.content_check import cast_report, check_npc, parse_content_rules
from app.services.worlds import list_world_files, load_world_file, world_from_setting
from app.wiring import Services
from tests import casts
from tests.conftest import ASSETS_DIR, WORLDS_DIR
from utils.cached_json import JSONFileCache

SETTINGS = (
    "lighthouse island, Outer Hebrides 1890",
    "Silk Road caravan town, 1250",
    "Victorian Hebrides, 1890",
)


def _setting(text: str) -> World:
    return world_from_setting(text, max_chars=5000)


async def _cast(services: Services, world: World, count: int, seed: int = 7) -> list[NPC]:
    outcomes = await casts.outcomes(services, world, count, seed=seed, backend="procedural")
    return [o.npc for o in outcomes if o.npc is not None]


def test_free_text_settings_get_their_period_and_own_trades(services: Services) -> None:
    tables = services.assets.tables()
    lighthouse = read_world(tables, _setting(SETTINGS[0]))
    assert (lighthouse.genre, lighthouse.level) == ("victorian", 3)
    assert "lighthouse keeper" in {o.title for o in lighthouse.occupations}
    assert "the lighthouse" in lighthouse.places and "the Outer Hebrides" in lighthouse.regions
    silk = read_world(tables, _setting(SETTINGS[1]))
    assert silk.level == 1 and "caravan master" in {o.title for o in silk.occupations}
    assert silk.cultures == ("silk_road",)


async def test_shipped_worlds_and_settings_have_no_contradictions(services: Services) -> None:
    rules = parse_content_rules(orjson.loads((ASSETS_DIR / "content_rules.json").read_bytes()))
    worlds = [load_world_file(p, JSONFileCache()) for p in list_world_files(WORLDS_DIR).values()]
    worlds += [_setting(text) for text in SETTINGS]
    tables = services.assets.tables()
    for world in worlds:
        cast = [npc.model_dump() for npc in await _cast(services, world, 40)]
        period = read_world(tables, world)
        report = cast_report(
            cast,
            Period(period.year, period.level),
            rules,
            personalities=services.assets.personalities(),
        )
        assert report.findings == [], (world.era, report.findings[:3])
        assert report.distinct_line_share >= 0.9, world.era


async def test_a_lighthouse_world_gets_a_lighthouse_keeper(services: Services) -> None:
    cast = await _cast(services, _setting(SETTINGS[0]), 30)
    assert any("lighthouse" in npc.occupation for npc in cast)
    assert not any("serf" in npc.backstory or "wimple" in npc.appearance for npc in cast)


async def test_pronouns_follow_gender(services: Services) -> None:
    for npc in await _cast(services, _setting(SETTINGS[2]), 60):
        text = f"{npc.appearance} {npc.backstory} {npc.motivation} {npc.secret}"
        assert "{" not in text
        if npc.gender == "male":
            assert " herself" not in text and " she " not in text, text


async def test_clash_groups_keep_traits_apart(services: Services) -> None:
    data = services.assets.personalities()
    assert data.conflicts(["lazy", "tireless"]) == [("lazy", "tireless")]
    assert data.conflicts(["domineering", "sycophantic"]) == [("domineering", "sycophantic")]
    for npc in await _cast(services, _setting(SETTINGS[1]), 60, seed=3):
        assert data.conflicts(npc.personality_traits) == []


@pytest.mark.parametrize(("first", "second"), [(14, 15), (10, 12), (7, 7)])
def test_composed_sentences_pair_every_slot_differently(first: int, second: int) -> None:
    pairs = {(k % first, composed_position(k, first) % second) for k in range(first * second)}
    assert len(pairs) == first * second


async def test_the_silk_road_gets_its_own_tables(services: Services) -> None:
    tables = services.assets.tables()
    assert read_world(tables, _setting(SETTINGS[1])).genre == "silk_road"
    text = " ".join(
        f"{npc.appearance} {npc.backstory} {npc.occupation} {' '.join(npc.sample_lines)}"
        for npc in await _cast(services, _setting(SETTINGS[1]), 40)
    ).lower()
    for european in ("herring", "abbey", "parish", "serf", "manor"):
        assert european not in text, european


def test_every_entry_the_checker_would_flag_carries_its_constraint(services: Services) -> None:
    """A new table entry with a beard, grey hair or a telegraph must say who and
    when it suits, or casts contradict themselves."""
    rules = parse_content_rules(orjson.loads((ASSETS_DIR / "content_rules.json").read_bytes()))
    looks = ("builds", "hair", "eyes", "features", "clothing", "quirks")
    genres = services.assets.tables().genres
    for genre, tables in services.assets.tables().npc.items():
        for table, entries in tables.items():
            for entry in entries:
                where = f"{genre}/{table}: {entry.text}"
                if table in looks and rules.gendered("female", "appearance", entry.text):
                    assert entry.gender == "male", where
                if table in looks and rules.gendered("male", "appearance", entry.text):
                    assert entry.gender == "female", where
                if rules.grey(entry.text):
                    assert entry.min_age >= rules.grey_min_age, where
                later = rules.later_than(entry.level, entry.text)
                assert later is None, (where, later)
                # A bellows or a quill pen in a far-future cast: only where the genre
                # (or the entry's own levels) keeps it out of the far future.
                genre_level = genres[genre].level if genre in genres else 6
                if entry.fits_level(6) and (genre == GENERIC or genre_level >= 6):
                    assert rules.gone(6, entry.text) is None, where


def test_every_occupation_the_checker_would_flag_carries_its_gender(services: Services) -> None:
    rules = parse_content_rules(orjson.loads((ASSETS_DIR / "content_rules.json").read_bytes()))
    tables = services.assets.tables()
    for group in (*tables.occupations.values(), *tables.cues.values()):
        for occupation in group:
            for gender in ("male", "female"):
                if occupation.gender not in (None, gender):
                    continue
                npc = {"name": "X", "gender": gender, "age": 40, "occupation": occupation.title}
                found = [f for f in check_npc(npc, Period(None, None), rules) if f.rule == "gender"]
                assert found == [], (occupation.title, gender)


async def test_relationship_lines_use_the_npcs_pronouns(services: Services) -> None:
    cast = [
        {"id": str(i), "name": f"N{i}", "gender": "female", "polarities": []} for i in range(30)
    ]
    lines = " ".join(t["description"] for t in draft_relationships(cast, seed=4))
    # "they" is right for the pair ("meet where no one will see them"), not for one of them.
    assert not re.search(r"(?:corrects|trusts|avoiding|lets) (?:them|their)|than they", lines)
    assert re.search(r"(?:corrects|trusts|avoiding|lets) her|than she", lines)


async def test_a_100_npc_cast_of_a_setting_repeats_no_sentence(services: Services) -> None:
    rules = parse_content_rules(orjson.loads((ASSETS_DIR / "content_rules.json").read_bytes()))
    for world in (_setting(SETTINGS[1]), _setting(SETTINGS[2])):
        cast = [npc.model_dump() for npc in await _cast(services, world, 100, seed=7)]
        report = cast_report(cast, Period(None, None), rules)
        assert report.repeated_sentences == 0, report.repeated.most_common(3)
        assert report.distinct_line_share >= 0.9


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(min_size=1, max_size=300))
def test_any_setting_text_is_read_and_drafted(services: Services, text: str) -> None:
    world = World(era=text.strip() or "x", time_period=text[::-1].strip() or "y", detail=text)
    tables = services.assets.tables()
    read_world(tables, world)
    npc = NPCDrafter(tables, {"world": world.model_dump(), "slot": 3}, 1, 0.9).draft()
    assert npc["name"] and npc["appearance"]
    assert not re.search(r"\{(?:they|them|their|place|haunt|faction|given)\}", npc["backstory"])


async def test_every_npc_of_a_one_line_setting_is_of_its_place(services: Services) -> None:
    """A lighthouse island's cast lives on the island or in the Hebrides: its trade or
    its backstory names the place the setting names."""
    for text, words in (
        (SETTINGS[0], ("lighthouse", "island", "hebrides")),
        (SETTINGS[2], ("hebrides",)),
        ("A hospital in Chicago, present day", ("hospital", "chicago")),
    ):
        for npc in await _cast(services, _setting(text), 40, seed=3):
            said = f"{npc.occupation} {npc.backstory}".lower()
            assert any(word in said for word in words), (text, npc.occupation, npc.backstory)


def test_a_rich_world_has_no_one_line_home(services: Services) -> None:
    tables = services.assets.tables()
    for path in list_world_files(WORLDS_DIR).values():
        assert read_world(tables, load_world_file(path, JSONFileCache())).home == ()
    ravenna = read_world(tables, _setting("Ravenna under the Goths, 6th century"))
    assert ravenna.home == ("Ravenna",)  # the Goths rule it; they are no place


async def test_who_could_hold_a_post_then_holds_it_and_origins_fit_the_class(
    services: Services,
) -> None:
    """A designer's reading of Rome and the Hebrides: charioteers, army pensioners
    and Free Church ministers were men; a patrician was not born in a tenement,
    a slum child does not say "my landlord" as the landlord."""
    men_only = {"charioteer", "army pensioner", "Free Church minister"}
    low_only = ("six to a room", "born a slave", "running errands for anyone", "grew up a serf")
    rome = load_world_file(WORLDS_DIR / "roman_empire.json", JSONFileCache())
    for world in (rome, _setting(SETTINGS[2]), _setting(SETTINGS[0])):
        for seed in (1, 2):
            for npc in await _cast(services, world, 60, seed=seed):
                if npc.occupation in men_only:
                    assert npc.gender == "male", (npc.name, npc.occupation)
                if "landlord" in npc.occupation:
                    assert "My landlord" not in " ".join(npc.sample_lines)
                    assert not any(phrase in npc.backstory for phrase in low_only), npc.name
