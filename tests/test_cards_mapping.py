"""From a card's free text to NPC facts, on a table of examples: only what the
text states, unknown otherwise."""

from __future__ import annotations

import pytest

from app.services.card_mapping import (
    parse_age,
    parse_gender,
    parse_occupation,
    parse_traits,
    sample_lines,
    split_description,
)


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("A clockmaker in her fifties.", 55),
        ("He is in his early twenties.", 22),
        ("She is in her late forties and tired.", 48),
        ("in their mid-thirties", 35),
        ("A 34-year-old navigator.", 34),
        ("Mira is 19 years old.", 19),
        ("twenty-five years old, and proud of it", 25),
        ("Age: 62", 62),
        ('[{{char}}: Gender("Female") + Age("22")]', 22),
        ("aged 70, she still climbs", 70),
        ("An ancient dragon, 1200 years old.", 1200),
        ("A girl in her teens.", 15),
        ("He has worked here for many years.", None),
        ("Old as the hills, they say.", None),
        ("She has 3 cats and 2 dogs.", None),
        ("", None),
    ],
)
def test_age(text: str, age: int | None) -> None:
    assert parse_age(text) == age


@pytest.mark.parametrize(
    ("text", "gender"),
    [
        ("Gender: Female\nShe is a witch.", "female"),
        ("Sex: male", "male"),
        ("Gender: trans woman", "trans woman"),
        ('[{{char}}: Gender("Female") + Age("22")]', "female"),
        ("She keeps her shop tidy; her hands never rest.", "female"),
        ("He is a tall man who hates his brother.", "male"),
        ("A non-binary pilot.", "non-binary"),
        ("She met him at the docks and he asked her name.", "unknown"),  # two people
        ("A traveller from afar.", "unknown"),
        ("They keep to themselves.", "unknown"),
    ],
)
def test_gender(text: str, gender: str) -> None:
    assert parse_gender(text) == gender


@pytest.mark.parametrize(
    ("text", "name", "occupation"),
    [
        ("Odile Marchetti is a clockmaker in her fifties.", "Odile Marchetti", "clockmaker"),
        ("Occupation: harbour master", "X", "harbour master"),
        ("She works as a midwife in the lower town.", "X", "midwife"),
        ("A 34-year-old sky-ship navigator by trade.", "X", "sky-ship navigator"),
        ("{{char}} is a retired knight.", "X", "knight"),
        ("Bran was the village blacksmith for years.", "Bran Hollow", "blacksmith"),
        ("She is a kind woman who loves her mother.", "X", "unknown"),
        ("He is a monster.", "X", "unknown"),
        ("Steampunk adventure with airships.", "X", "unknown"),
    ],
)
def test_occupation(text: str, name: str, occupation: str) -> None:
    assert parse_occupation(text, name) == occupation


@pytest.mark.parametrize(
    ("personality", "traits"),
    [
        ("Sly, patient; proud", ["sly", "patient", "proud"]),
        ('[{{char}}: "creative" + "kind" + "shy"]', ["creative", "kind", "shy"]),
        ("[ {{char}}: creative, kind. She loves cats and rain.", ["creative", "kind"]),
        ("Personality: brave/loyal/hot-headed", ["brave", "loyal", "hot-headed"]),
        ("curious and gentle", ["curious", "gentle"]),
        ("a, b, c, d, e, f, g, h, i, j", ["a", "b", "c", "d", "e", "f", "g", "h"]),  # at most 8
        ("She is a complicated person who rarely shows what she feels inside.", []),
    ],
)
def test_traits(personality: str, traits: list[str]) -> None:
    assert parse_traits(personality) == traits


@pytest.mark.parametrize(
    "description",
    [
        "A tall witch with grey eyes and a crooked hat, always smelling of smoke.\n\nShe left.",
        "A tall witch with grey eyes and a crooked hat, always smelling of smoke.\r\n\r\nShe left.",
        "A tall witch with grey eyes and a crooked hat, always smelling of smoke. She left.",
        "Name: Ysolde\nGender: female\n\nA tall witch with grey eyes and a crooked hat.\n\n"
        "She left.",
        "One paragraph only",
    ],
)
def test_description_splits_into_parts_that_add_up(description: str) -> None:
    appearance, separator, backstory = split_description(description)
    assert appearance + separator + backstory == description
    assert appearance and (backstory == "" or backstory.startswith(("She", "A tall")))


def test_lines_come_from_the_card_only() -> None:
    data = {
        "first_mes": "Welcome.",
        "alternate_greetings": [],
        "mes_example": "<START>\n{{user}}: Hi\n{{char}}: Do not waste my evening.\n<bot>: Go.",
    }
    assert sample_lines(data) == ["Welcome.", "Do not waste my evening.", "Go."]
    many = {"first_mes": "A", "alternate_greetings": ["B", "C", "D", "E"]}
    assert sample_lines(many) == ["A", "B", "C", "D"]
    assert sample_lines({"first_mes": "One line only"}) == ["One line only"]
