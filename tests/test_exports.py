"""The other exports: CSV safe in a spreadsheet, file names safe on every OS
that keep every script, JSON, JSON Lines and Markdown."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import orjson
import pytest

from app.errors import InputError
from app.models import NPC, Relationship, World
from app.services.exports import (
    CSV_FIELDS,
    ExportInput,
    build_export,
    cast_markdown,
    npc_markdown,
    npcs_csv,
    npcs_json,
    npcs_jsonl,
    safe_filename,
    unique_name,
)
from tests.conftest import MakeServices, make_settings
from tests.npc_fixtures import valid_profile


def _npc(name: str = "Maud", **extra: object) -> NPC:
    values = {"id": f"npc-{len(name)}", **valid_profile(name), **extra}
    return NPC(**values, world="Saltmere", backend="procedural:v1", seed=7)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Zoë 李小龍", "Zoë_李小龍.png"),
        ("Игорь Петров", "Игорь_Петров.png"),
        ("Ærø Vale", "Ærø_Vale.png"),
        ("../../etc/passwd", "etc_passwd.png"),
        ('a/b\\c:d*e?f"g<h>i|j', "a_b_c_d_e_f_g_h_i_j.png"),
        ("tab\there\nnewline", "tab_here_newline.png"),
        ("CON", "_CON.png"),
        ("lpt1", "_lpt1.png"),
        ("trailing dots...", "trailing_dots.png"),
        ("", "npc.png"),
        ("...", "npc.png"),
        ("e\u0301toile", "étoile.png"),  # NFC: one code point per letter
    ],
)
def test_safe_filename(text: str, expected: str) -> None:
    assert safe_filename(text, ".png") == expected


def test_long_names_are_cut_by_bytes_at_a_letter() -> None:
    name = safe_filename("李" * 200, ".png")
    stem = name.removesuffix(".png")
    assert len(stem.encode()) <= 120 and set(stem) == {"李"}
    assert safe_filename("x" * 300, ".json") == "x" * 120 + ".json"


def test_unique_names_ignore_case() -> None:
    used: set[str] = set()
    names = [unique_name(n, used) for n in ("Maud.png", "maud.png", "Maud.png", "Bran.card.json")]
    assert names == ["Maud.png", "maud_2.png", "Maud_3.png", "Bran.card.json"]


@pytest.mark.parametrize(
    "value", ['=HYPERLINK("http://evil","click")', "+1+1", "-2+3", "@SUM(A1)", "=1\t+2"]
)
def test_csv_cells_never_run_as_formulas(value: str) -> None:
    npc = _npc(value[:20] or "x", backstory=value, tags=[value])
    row = next(csv.DictReader(io.StringIO(npcs_csv([npc]))))
    assert row["backstory"] == "'" + value
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())


def test_csv_json_jsonl_markdown() -> None:
    tie = Relationship(target_id="npc-b", target_name="Bran", type="lover", weight=0.8)
    maud = _npc("Maud", relationships=[tie])
    tricky = _npc("Bran", backstory='He said "no", then left,\nfor good.', age=None)
    rows = list(csv.DictReader(io.StringIO(npcs_csv([maud, tricky]))))
    assert list(rows[0]) == list(CSV_FIELDS) and len(rows) == 2
    assert rows[1]["backstory"] == 'He said "no", then left,\nfor good.' and rows[1]["age"] == ""
    assert rows[0]["relationships"] == "lover→Bran (+0.80)"
    assert json.loads(npcs_json([maud]))[0]["name"] == "Maud"
    ids = [json.loads(line)["id"] for line in npcs_jsonl([maud, tricky]).splitlines()]
    assert ids == [maud.id, tricky.id]
    sheet = npc_markdown(_npc("Odo", secret="<script>x</script>", backstory="# not a heading"))
    assert "## Backstory\n\\# not a heading" in sheet and "<script>" not in sheet
    assert "· age unknown ·" in npc_markdown(tricky)
    assert cast_markdown([maud, tricky], "Saltmere").count("\n---\n") == 2


def test_export_names_and_unknown_formats() -> None:
    world = World(name="Saltmere", era="Medieval", time_period="1340")
    one = build_export(ExportInput([_npc("Zoë 李小龍")], world), "Markdown")
    assert one.filename == "Zoë_李小龍.md" and one.count == 1
    whole = build_export(ExportInput([_npc("Zoë")], world, whole_world=True), "Markdown")
    assert whole.filename == "Saltmere.md"
    with pytest.raises(InputError, match="Unknown export format 'YAML'"):
        build_export(ExportInput([_npc()], world), "YAML")


async def test_card_exports_carry_the_npcs_portrait(
    tmp_path: Path, make_services: MakeServices
) -> None:
    import base64
    import zipfile

    from PIL import Image

    from tests import casts

    services = make_services(make_settings(tmp_path))
    world = services.worlds.resolve("saltmere", None).world
    npcs = [o.npc for o in await casts.outcomes(services, world, 2, seed=3) if o.npc is not None]
    await services.library.save(npcs)
    drawn = services.portraits.procedural_png(npcs[0])

    def pixels(png: bytes) -> bytes:
        return Image.open(io.BytesIO(png)).convert("RGB").tobytes()

    png_card = await services.exports.export(npcs[0].id, "this NPC", "Character Card V2 (PNG)")
    assert pixels(png_card.data) == pixels(drawn)  # the face, not the initials placeholder
    v3 = await services.exports.export(npcs[0].id, "this NPC", "Character Card V3 (JSON)")
    [icon] = orjson.loads(v3.data)["data"]["assets"]
    assert base64.b64decode(icon["uri"].partition(",")[2]) == drawn
    world_zip = await services.exports.export(
        npcs[0].id, "its whole world", "Character Card V3 (PNG)"
    )
    with zipfile.ZipFile(io.BytesIO(world_zip.data)) as archive:
        faces = {pixels(archive.read(name)) for name in archive.namelist()}
    assert faces == {pixels(services.portraits.procedural_png(npc)) for npc in npcs}
