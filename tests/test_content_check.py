"""The content rule checker finds what a game designer would call a contradiction."""

from __future__ import annotations

import orjson
import pytest

from app.backends.procedural_period import Period, parse_period
from app.services.content_check import (
    ContentRules,
    OccupationFacts,
    cast_report,
    check_npc,
    parse_content_rules,
)
from tests.conftest import ASSETS_DIR

ROMAN = Period(110, 0)
VICTORIAN = Period(1890, 3)


@pytest.fixture(scope="module")
def rules() -> ContentRules:
    return parse_content_rules(orjson.loads((ASSETS_DIR / "content_rules.json").read_bytes()))


def _npc(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "Gaius Varro",
        "age": 40,
        "gender": "male",
        "occupation": "fuller",
        "appearance": "Wiry, 40 years old.",
        "backstory": "Gaius grew up near the Tiber.",
        "motivation": "Gaius wants a quiet life.",
        "secret": "Gaius owes money.",
        "speech_style": "Blunt.",
        "sample_lines": ["Hello."],
        "personality_traits": ["brave"],
    }
    return base | fields


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"appearance": "Gaius wears a fine linen stola with a purple border."}, "gender"),
        ({"gender": "female", "appearance": "She has a neatly trimmed Greek beard."}, "gender"),
        ({"gender": "female", "occupation": "ploughman"}, "gender"),
        ({"occupation": "Vestal attendant"}, "gender"),
        ({"age": 22, "appearance": "Greying temples and sharp eyes."}, "age"),
        ({"age": 39, "appearance": "Wild white hair that sticks up like thistledown."}, "age"),
        (
            {"gender": "female", "appearance": "She wears a bowler hat brushed until it shines."},
            "gender",
        ),
        ({"gender": "female", "appearance": "A monk's habit with a frayed hem."}, "gender"),
        ({"age": 25, "backstory": "Gaius spent thirty years at sea."}, "age"),
        ({"age": 17, "appearance": "A neat row of healed arrow wounds."}, "scars"),
        ({"backstory": "Gaius sends a telegram to his sister."}, "anachronism"),
        ({"secret": "Gaius checks his phone at night."}, "anachronism"),
        ({"motivation": "Gaius wants to keep their secret safe."}, "pronoun"),
        ({"gender": "female", "secret": "Gaius hides his ledger."}, "pronoun"),
    ],
)
def test_each_rule_finds_its_contradiction(
    rules: ContentRules, fields: dict[str, object], rule: str
) -> None:
    assert rule in {f.rule for f in check_npc(_npc(**fields), ROMAN, rules)}


def test_prematurely_white_is_no_contradiction(rules: ContentRules) -> None:
    early = _npc(age=39, appearance="Prematurely white hair after a bad winter in the mountains.")
    assert check_npc(early, ROMAN, rules) == []


def test_period_words_and_class(rules: ContentRules) -> None:
    serf = _npc(backstory="Gaius grew up a serf on the manor fields.")
    assert {f.rule for f in check_npc(serf, VICTORIAN, rules)} == {"out of period"}
    posh = _npc(appearance="He wears a toga with a purple border.")
    facts = {"fuller": OccupationFacts(14, 60, "low")}
    assert [f.rule for f in check_npc(posh, ROMAN, rules, occupations=facts)] == ["class"]


def test_a_far_future_forge_has_no_bellows(rules: ContentRules) -> None:
    smith = _npc(appearance="Gaius works the forge and bellows with scarred forearms.")
    assert {f.rule for f in check_npc(smith, Period(2450, 6), rules)} == {"out of period"}
    for kept in (Period(1300, 1), Period(1890, 3), Period(2150, 5), Period(None, None)):
        assert check_npc(smith, kept, rules) == [], kept  # medieval to post-apocalyptic


def test_a_name_is_no_anachronism_but_the_thing_is(rules: ContentRules) -> None:
    named = _npc(secret="Gaius owes money to Pieter van Dyke and Anna de Groot.")
    assert check_npc(named, Period(1715, 2), rules) == []
    driven = _npc(secret="Gaius drives a van to Pieter van Dyke.")
    assert {f.rule for f in check_npc(driven, Period(1715, 2), rules)} == {"anachronism"}


def test_a_consistent_npc_passes(rules: ContentRules) -> None:
    veteran = _npc(
        age=45,
        appearance="Greying hair and a sword scar across the chin.",
        backstory="Gaius fought with the legions in Dacia. His mother still writes.",
        motivation="Gaius wants his land, and he will have it.",
    )
    assert check_npc(veteran, ROMAN, rules) == []


def test_cast_report_counts_repeats_with_names_blanked(rules: ContentRules) -> None:
    first = _npc(name="Gaius Varro", backstory="Gaius grew up near the Forum.")
    second = _npc(name="Marcus Tullius", backstory="Marcus grew up near the Forum.")
    report = cast_report([first, second], ROMAN, rules, world_nouns=["forum"])
    # The appearance and the backstory; the other fields name Gaius in both.
    assert report.repeated_sentences == 2
    assert report.distinct_lines == 1 and report.lines == 2
    assert report.grounded_share == 1.0


@pytest.mark.parametrize(
    ("era", "period", "year"),
    [
        ("Ancient Rome", "110 AD, the reign of Trajan", 110),
        ("x", "44 BC", -44),
        ("Silk Road caravan town, 1250", "as described", 1250),
        ("x", "25th century, after the landing", 2450),
        ("x", "The late Middle Ages", 1400),
        ("Modern day", "Present day, the 2020s", 2025),
        ("x", "the twelfth century", 1150),
        ("High fantasy", "The 417th year of the Ninth Age", None),
    ],
)
def test_periods_are_parsed(era: str, period: str, year: int | None) -> None:
    assert parse_period(era, period).year == year
