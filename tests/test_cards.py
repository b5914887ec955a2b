"""Character Cards V2/V3 and the other exports: round trips and bad files."""

from __future__ import annotations

import base64
import csv
import io
import json
import zipfile

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from app.errors import InputError
from app.models import NPC, Relationship, World
from app.services.cards import SPEC_V2, card_png, card_to_npc, npc_to_card, read_card
from app.services.exports import (
    CSV_FIELDS,
    cards_zip,
    cast_markdown,
    npc_markdown,
    npcs_csv,
    npcs_json,
    npcs_jsonl,
    safe_filename,
)
from tests.npc_fixtures import valid_profile

WORLD = World(
    name="Saltmere",
    era="Medieval fishing village",
    time_period="1340",
    detail={"society": "Fishers and a greedy reeve.", "economy": "Herring and salt."},
)


def _npc(name: str = "Maud", **extra: object) -> NPC:
    values = {"id": f"npc-{name.lower()}", **valid_profile(name), **extra}
    return NPC(**values, world="Saltmere", backend="procedural:v1", seed=7)


@pytest.fixture
def maud() -> NPC:
    tie = Relationship(
        target_id="npc-bran", target_name="Bran", type="lover", weight=0.8, secret=True,
        description="They meet at the cove.",
    )  # fmt: skip
    return _npc("Maud", tags=["baker"], relationships=[tie])


def test_card_v2_shape(maud: NPC) -> None:
    card = npc_to_card(maud, WORLD, extra_extensions={"depth_prompt": {"depth": 4}})
    assert card["spec"] == SPEC_V2 and card["spec_version"] == "2.0"
    data = card["data"]
    for key in (
        "name", "description", "personality", "scenario", "first_mes", "mes_example",
        "creator_notes", "system_prompt", "post_history_instructions", "alternate_greetings",
        "tags", "creator", "character_version", "extensions",
    ):  # fmt: skip
        assert key in data, key
    assert data["first_mes"] == maud.sample_lines[0]
    assert data["alternate_greetings"] == maud.sample_lines[1:]
    assert data["extensions"]["depth_prompt"] == {"depth": 4}  # unknown keys are kept
    entries = data["character_book"]["entries"]
    assert {e["name"] for e in entries} >= {"Saltmere: society", "Saltmere: economy", "Maud → Bran"}
    lover = next(e for e in entries if e["name"] == "Maud → Bran")
    assert lover["keys"] == ["Bran"] and "Nobody else knows" in lover["content"]


def test_json_card_round_trip(maud: NPC) -> None:
    data = json.dumps(npc_to_card(maud, WORLD)).encode()
    assert card_to_npc(read_card(data, "maud.json")) == maud


def test_png_card_round_trip(maud: NPC) -> None:
    png = card_png(npc_to_card(maud, WORLD), maud)
    assert png.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (400, 600) and "chara" in image.text  # type: ignore[attr-defined]
    assert card_to_npc(read_card(png, "maud.png")) == maud


def test_v3_chunk_wins_over_v2() -> None:
    v2 = {"spec": SPEC_V2, "spec_version": "2.0", "data": {"name": "Old", "first_mes": "Hi."}}
    v3 = {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {"name": "New", "first_mes": "Hello."},
    }
    info = PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps(v2).encode()).decode())
    info.add_text("ccv3", base64.b64encode(json.dumps(v3).encode()).decode())
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    assert read_card(buffer.getvalue(), "v3.png")["data"]["name"] == "New"


def test_foreign_card_becomes_a_valid_npc() -> None:
    card = {
        "spec": SPEC_V2,
        "spec_version": "2.0",
        "data": {
            "name": "Seraphine",
            "description": "A tall witch in grey.\n\nShe left the coven after the fire.",
            "personality": "Sly, patient; proud",
            "scenario": "She wants the coven's grimoire back.",
            "first_mes": "You smell of smoke.",
            "mes_example": "<START>\n{{user}}: Hi\n{{char}}: Do not waste my evening.",
            "tags": ["witch"],
        },
    }
    npc = card_to_npc(read_card(json.dumps(card).encode(), "s.json"))
    assert npc.name == "Seraphine" and npc.occupation == "witch"
    assert npc.personality_traits == ["sly", "patient", "proud"]
    assert npc.sample_lines == ["You smell of smoke.", "Do not waste my evening."]
    assert npc.appearance == "A tall witch in grey." and "coven" in npc.backstory
    assert npc.motivation == "She wants the coven's grimoire back."


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello there", "neither a PNG card nor card JSON"),
        (b'{"spec": "something_else", "data": {"name": "X"}}', "not a Character Card V2/V3"),
        (b'{"spec": "chara_card_v2", "data": {"name": "  "}}', "no character name"),
        (b"\x89PNG\r\n\x1a\nbroken", "not a readable PNG"),
    ],
)
def test_bad_cards_are_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        read_card(data, "upload.bin")
    assert str(caught.value).startswith("upload.bin: ")


def test_png_without_card_and_bad_base64() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    with pytest.raises(InputError, match="no character card found"):
        read_card(buffer.getvalue(), "plain.png")
    info = PngInfo()
    info.add_text("chara", "%%% not base64 %%%")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    with pytest.raises(InputError, match="not base64-encoded JSON"):
        read_card(buffer.getvalue(), "bad.png")
    with pytest.raises(InputError, match="at most"):
        read_card(b"{" + b" " * (21 * 1024 * 1024), "huge.json")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("../../etc/passwd", "etc_passwd.json"),
        ("Ærø Vale", "Aero_Vale.json"),
        ("", "npc.json"),
        ("...", "npc.json"),
        ("a/b\\c:d", "a_b_c_d.json"),
        ("x" * 300, "x" * 80 + ".json"),
    ],
)
def test_safe_filename(text: str, expected: str) -> None:
    assert safe_filename(text, ".json") == expected


def test_csv_json_jsonl_markdown(maud: NPC) -> None:
    tricky = _npc("Bran", backstory='He said "no", then left,\nfor good.')
    rows = list(csv.DictReader(io.StringIO(npcs_csv([maud, tricky]))))
    assert list(rows[0]) == list(CSV_FIELDS) and len(rows) == 2
    assert rows[1]["backstory"] == 'He said "no", then left,\nfor good.'
    assert rows[0]["relationships"] == "lover→Bran (+0.80)"
    assert json.loads(npcs_json([maud]))[0]["name"] == "Maud"
    assert [json.loads(line)["id"] for line in npcs_jsonl([maud, tricky]).splitlines()] == [
        "npc-maud",
        "npc-bran",
    ]
    sheet = npc_markdown(_npc("Odo", secret="<script>x</script>", backstory="# not a heading"))
    assert "## Backstory\n\\# not a heading" in sheet and "<script>" not in sheet
    assert cast_markdown([maud, tricky], "Saltmere").count("\n---\n") == 2


def test_cards_zip_has_unique_names(maud: NPC) -> None:
    twin = _npc("Maud", id="npc-maud-2")
    archive = zipfile.ZipFile(io.BytesIO(cards_zip([maud, twin], WORLD)))
    names = archive.namelist()
    assert names == ["Maud.png", "Maud_2.png"]
    assert card_to_npc(read_card(archive.read("Maud_2.png"), "Maud_2.png")).id == "npc-maud-2"
