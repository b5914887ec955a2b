"""Character Cards out: every format valid against the spec schemas, V3 fields,
lorebooks whose entries trigger on their own subjects, cards made here round-trip."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import pytest
from PIL import Image

from app.models import NPC, Relationship, World
from app.services.card_import import read_card
from app.services.card_mapping import map_card
from app.services.card_schemas import SPEC_V2, SPEC_V3, card_problems
from app.services.cards import npc_to_card, npc_to_card_v3, to_v2
from app.services.exports import EXPORT_FORMATS, ExportInput, build_export
from app.services.lorebook import character_book, sillytavern_world_info, world_book
from app.services.png_chunks import text_chunks
from tests.npc_fixtures import valid_profile

NOW = 1_764_547_200.0
WORLD = World(
    name="Saltmere",
    era="Medieval fishing village",
    time_period="1340",
    detail={
        "society": "Fishers answer to Reeve Aldous, who keeps the tithe barns locked.",
        "economy": "Herring and salt go south by cart; the salt pans flood each spring.",
        "religion": "A chapel of Saint Brannoc stands on the cliff; fishers pray for calm seas.",
    },
)


def _npc(name: str = "Maud Tanner", **extra: Any) -> NPC:
    values = {"id": f"npc-{name.split()[0].lower()}", **valid_profile(name), **extra}
    return NPC(**values, world="Saltmere", backend="procedural:v1", seed=7)


@pytest.fixture
def maud() -> NPC:
    tie = Relationship(
        target_id="npc-bran", target_name="Bran Hollow", type="lover", weight=0.8, secret=True,
        description="They meet at the cove.",
    )  # fmt: skip
    return _npc(tags=["baker"], relationships=[tie])


def _decoded_chunks(png: bytes) -> dict[str, Any]:
    return {k: json.loads(base64.b64decode(v)) for k, v in text_chunks(png)}


def _cards_in(file: bytes) -> list[dict[str, Any]]:
    """Every card in a file: a PNG's chunks, a CHARX's card.json, a zip's members."""
    if file.startswith(b"\x89PNG"):
        return list(_decoded_chunks(file).values())
    if file.startswith(b"PK"):
        archive = zipfile.ZipFile(io.BytesIO(file))
        if "card.json" in archive.namelist():
            return [json.loads(archive.read("card.json"))]
        return [card for name in archive.namelist() for card in _cards_in(archive.read(name))]
    return [json.loads(file)]


def _cards_of(fmt: str, npcs: list[NPC]) -> list[dict[str, Any]]:
    """Every card inside one export (JSON, PNG chunks, CHARX, zip members)."""
    return _cards_in(build_export(ExportInput(npcs, WORLD, now=NOW), fmt).data)


CARD_FORMATS = [fmt for fmt in EXPORT_FORMATS if fmt.startswith("Character Card")]


@pytest.mark.parametrize("fmt", CARD_FORMATS)
@pytest.mark.parametrize("count", [1, 2])
def test_every_card_export_is_spec_valid(fmt: str, count: int, maud: NPC) -> None:
    npcs = [maud, _npc("Bran Hollow")][:count]
    cards = _cards_of(fmt, npcs)
    assert len(cards) == count * (2 if "V3 (PNG)" in fmt else 1)
    for card in cards:
        assert card_problems(card) == []
        assert card["data"]["character_book"]["extensions"] == {}
    specs = {card["spec"] for card in cards}
    assert specs == (
        {SPEC_V2, SPEC_V3} if "V3 (PNG)" in fmt else {SPEC_V3 if "V3" in fmt else SPEC_V2}
    )


def test_the_schema_catches_what_strict_validators_catch(maud: NPC) -> None:
    card = npc_to_card(maud, WORLD)
    del card["data"]["character_book"]["extensions"]
    card["data"]["tags"] = "baker, fisher"
    del card["data"]["character_book"]["entries"][0]["insertion_order"]
    assert card_problems(card) == [
        "data.character_book.entries.0: 'insertion_order' is a required property",
        "data.character_book: 'extensions' is a required property",
        "data.tags: 'baker, fisher' is not of type 'array'",
    ]
    v3 = npc_to_card_v3(maud, WORLD, now=NOW)
    del v3["data"]["group_only_greetings"]
    del v3["data"]["character_book"]["entries"][0]["use_regex"]
    assert len(card_problems(v3)) == 2


def test_v3_fields(maud: NPC) -> None:
    card = _cards_of("Character Card V3 (JSON)", [maud])[0]
    data = card["data"]
    assert card["spec_version"] == "3.0" and data["nickname"] == "Maud"
    assert data["creator_notes_multilingual"] == {"en": data["creator_notes"]}
    assert data["source"] == ["npc-forge:npc-maud"] and data["group_only_greetings"] == []
    assert data["creation_date"] == data["modification_date"] == int(NOW)
    (icon,) = data["assets"]
    assert icon["type"] == "icon" and icon["name"] == "main" and icon["ext"] == "png"
    portrait = base64.b64decode(icon["uri"].removeprefix("data:image/png;base64,"))
    assert Image.open(io.BytesIO(portrait)).size == (400, 600)
    png = build_export(ExportInput([maud], WORLD, now=NOW), "Character Card V3 (PNG)").data
    chunks = _decoded_chunks(png)
    assert set(chunks) == {"chara", "ccv3"}
    assert chunks["ccv3"]["data"]["assets"][0]["uri"] == "ccdefault:"  # the PNG is the portrait
    assert chunks["chara"] == to_v2(chunks["ccv3"])


@pytest.mark.parametrize("fmt", CARD_FORMATS)
def test_cards_made_here_come_back_exactly(fmt: str, maud: NPC) -> None:
    data = build_export(ExportInput([maud], WORLD, now=NOW), fmt).data
    read = read_card(data, "maud")
    assert map_card(read.card, "maud").npc == maud and read.notes == []


def test_card_fields_from_an_npc(maud: NPC) -> None:
    data = npc_to_card(maud, WORLD)["data"]
    assert data["first_mes"] == maud.sample_lines[0]
    assert data["alternate_greetings"] == []  # sample lines are not greetings
    assert all(line in data["mes_example"] for line in maud.sample_lines[1:])
    assert data["description"].startswith(f"Maud Tanner, {maud.occupation}, 47 years old")
    assert maud.secret in data["system_prompt"]
    unknown_age = npc_to_card(maud.model_copy(update={"age": None}), WORLD)["data"]
    assert "years old" not in unknown_age["description"]


def test_each_lorebook_entry_has_its_own_keys(maud: NPC) -> None:
    book = character_book(maud, WORLD)
    assert book is not None
    entries = {entry["name"]: entry for entry in book["entries"]}
    setting = entries["Saltmere: setting"]
    assert setting["constant"] and setting["insertion_order"] == 0
    sections = [entries[f"Saltmere: {name}"] for name in ("society", "economy", "religion")]
    keys = [set(map(str.lower, entry["keys"])) for entry in sections]
    assert not keys[0] & keys[1] and not keys[1] & keys[2] and not keys[0] & keys[2]
    # Names first; "fishers" is in two sections, so it is no key of either.
    assert sections[0]["keys"][:3] == ["society", "Reeve Aldous", "answer"]
    assert sections[2]["keys"][:2] == ["religion", "Saint Brannoc"]
    assert "medieval" not in set().union(*keys)  # the era pulls in no section
    tie = entries["Maud Tanner → Bran Hollow"]
    assert tie["keys"] == ["Bran Hollow", "Bran"] and "Nobody else knows" in tie["content"]
    assert tie["position"] == "after_char" and tie["priority"] > sections[0]["priority"]
    assert tie["insertion_order"] > max(entry["insertion_order"] for entry in sections)
    assert len({entry["id"] for entry in book["entries"]}) == len(book["entries"])


# Written from SillyTavern's World Info entry definition (the fields its importer reads).
ST_WORLD_INFO_SCHEMA = {
    "type": "object",
    "required": ["entries"],
    "properties": {
        "entries": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["uid", "key", "keysecondary", "comment", "content", "constant",
                             "selective", "order", "position", "disable"],
                "properties": {
                    "uid": {"type": "integer"},
                    "key": {"type": "array", "items": {"type": "string"}},
                    "keysecondary": {"type": "array", "items": {"type": "string"}},
                    "comment": {"type": "string"}, "content": {"type": "string"},
                    "constant": {"type": "boolean"}, "selective": {"type": "boolean"},
                    "order": {"type": "number"}, "position": {"enum": [0, 1, 2, 3, 4, 5, 6]},
                    "disable": {"type": "boolean"},
                },
            },
        }
    },
}  # fmt: skip


def test_world_lorebook_export(maud: NPC) -> None:
    from jsonschema import validate

    bran = _npc("Bran Hollow", relationships=[
        Relationship(target_id="npc-maud", target_name="Maud Tanner", type="lover", weight=0.7)
    ])  # fmt: skip
    exported = build_export(ExportInput([maud, bran], WORLD), "SillyTavern World Info (JSON)")
    assert exported.filename == "Saltmere.lorebook.json"
    info = json.loads(exported.data)
    validate(info, ST_WORLD_INFO_SCHEMA)
    entries = list(info["entries"].values())
    assert [e["uid"] for e in entries] == list(range(len(entries)))
    ties = [e for e in entries if "→" in e["comment"]]
    assert [(e["key"], e["keysecondary"], e["selective"]) for e in ties] == [
        (["Maud Tanner", "Maud"], ["Bran Hollow", "Bran"], True),
        (["Bran Hollow", "Bran"], ["Maud Tanner", "Maud"], True),
    ]
    assert {e["position"] for e in ties} == {1} and entries[0]["constant"]
    assert len({tuple(e["key"]) for e in entries}) == len(entries)  # no two share their keys
    assert sillytavern_world_info(world_book(WORLD, []))["entries"]["0"]["order"] == 0


def test_world_zip_of_cards_with_unicode_names() -> None:
    cast = [_npc("Zoë 李小龍"), _npc("Игорь Петров"), _npc("Игорь Петров", id="npc-2")]
    for fmt, suffix in (
        ("Character Card V2 (JSON)", ".card.json"),
        ("Character Card V3 (PNG)", ".png"),
    ):
        exported = build_export(ExportInput(cast, WORLD, now=NOW), fmt)
        assert exported.filename == "Saltmere.cards.zip" and exported.count == 3
        archive = zipfile.ZipFile(io.BytesIO(exported.data))
        assert archive.namelist() == [
            f"Zoë_李小龍{suffix}",
            f"Игорь_Петров{suffix}",
            f"Игорь_Петров_2{suffix}",
        ]
        for name in archive.namelist():
            assert read_card(archive.read(name), name).card["data"]["name"] in {
                n.name for n in cast
            }


def test_a_world_known_only_by_name_adds_no_lore() -> None:
    stand_in = World(name="Imported", era="Imported", time_period="unspecified")
    assert character_book(_npc(), stand_in) is None
    assert world_book(stand_in, [])["entries"] == []
