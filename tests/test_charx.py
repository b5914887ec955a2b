"""CHARX cards (a V3 card in a zip, with its assets) and zips of cards, in and out."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from app.errors import InputError
from app.models import NPC
from app.services import charx
from app.services.card_import import read_card
from app.services.card_schemas import card_problems
from app.services.exports import ExportService
from tests.npc_fixtures import valid_profile
from tests.test_cards_import import (
    MemoryLibrary,
    art_png,
    card_service,
    export,
    fixture,
    import_one,
)

STORM = b"ID3 not really an mp3, but bytes that must come back as they went"


@pytest.fixture
def library() -> MemoryLibrary:
    return MemoryLibrary()


@pytest.fixture
def service(library: MemoryLibrary, tmp_path: Path) -> ExportService:
    return card_service(library, tmp_path / "cards")


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _kestrel_charx() -> bytes:
    """A CHARX as another tool writes it: card.json, an icon, a soundtrack, app data."""
    card = fixture("kestrel_v3.json")
    card["data"]["assets"][0]["uri"] = "embeded://assets/icon/images/main.png"
    return _zip(
        {
            "card.json": json.dumps(card).encode(),
            "assets/icon/images/main.png": art_png(),
            "assets/other/audio/storm.mp3": STORM,
            "x_risu_module.json": b'{"keep": "me"}',
        }
    )


def _ada() -> NPC:
    return NPC(**valid_profile("Ada Brisk"), id="npc-ada", world="Saltmere", backend="p", seed=1)


async def test_made_here_npc_exports_as_a_valid_charx_and_comes_back(
    service: ExportService, library: MemoryLibrary
) -> None:
    npc = _ada()
    library.npcs[npc.id] = npc
    data = await export(service, npc, "Character Card V3 (CHARX)")

    members = _members(data)
    assert set(members) == {"card.json", charx.ICON_PATH}
    card = json.loads(members["card.json"])
    assert card_problems(card) == [] and card["data"]["name"] == "Ada Brisk"
    assert card["data"]["assets"][0] == {
        "type": "icon", "uri": f"embeded://{charx.ICON_PATH}", "name": "main", "ext": "png"
    }  # fmt: skip
    assert members[charx.ICON_PATH].startswith(b"\x89PNG")

    assert await import_one(service, "ada.charx", data) == npc
    assert await export(service, npc, "Character Card V3 (CHARX)") == data  # now kept: as it came


async def test_someone_elses_charx_keeps_every_asset(
    service: ExportService, library: MemoryLibrary
) -> None:
    original = _kestrel_charx()
    report = await service.import_cards([("kestrel.charx", original)])
    assert report.problems == [] and report.notes == []  # the soundtrack is in the zip: carried
    (npc,) = report.imported
    assert npc.name == "Kestrel Vance"

    assert await export(service, npc, "Character Card V3 (CHARX)") == original
    # A PNG card of it is drawn on the CHARX's own icon.
    png = await export(service, npc, "Character Card V3 (PNG)")
    assert png.startswith(b"\x89PNG") and read_card(png, "k.png").card["data"]["name"] == npc.name

    edited = npc.model_copy(update={"name": "Kestrel Storm"})
    library.npcs[npc.id] = edited
    again = _members(await export(service, edited, "Character Card V3 (CHARX)"))
    before = _members(original)
    assert json.loads(again["card.json"])["data"]["name"] == "Kestrel Storm"
    assert {k: v for k, v in again.items() if k != "card.json"} == {
        k: v for k, v in before.items() if k != "card.json"
    }


def test_an_embedded_asset_the_zip_lacks_is_named() -> None:
    members = _members(_kestrel_charx())
    del members["assets/other/audio/storm.mp3"]
    read = read_card(_zip(members), "kestrel.charx")
    assert read.notes == [
        "kestrel.charx: asset 'storm' (assets/other/audio/storm.mp3) is not in the zip."
    ]
    assert read.png == members["assets/icon/images/main.png"]


async def test_a_world_exported_as_a_zip_of_cards_imports_every_card(
    service: ExportService, library: MemoryLibrary
) -> None:
    cast = [_ada(), _ada().model_copy(update={"id": "npc-bo", "name": "Bo Tern"})]
    library.npcs.update({npc.id: npc for npc in cast})
    for fmt in ("Character Card V2 (PNG)", "Character Card V3 (CHARX)"):
        archive = await service.export(cast[0].id, "its whole world", fmt)
        library.npcs.clear()
        report = await service.import_cards([(archive.filename, archive.data)])
        assert report.problems == []
        assert sorted(npc.name for npc in report.imported) == ["Ada Brisk", "Bo Tern"]
        library.npcs.update({npc.id: npc for npc in cast})


def _encrypted(data: bytes) -> bytes:
    """The zip with the central directory's "encrypted" flag set on its member."""
    at = data.index(b"PK\x01\x02") + 8
    return data[:at] + b"\x01\x00" + data[at + 2 :]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04rest", "a damaged zip"),
        (_encrypted(_zip({"card.json": b"{}"})), "an encrypted zip"),
        (_zip({"notes.txt": b"hello"}), "a zip with no card in it"),
        (_zip({"card.json": b"[1, 2"}), "card.json is not valid JSON"),
    ],
)
async def test_bad_zips_are_clear_errors(service: ExportService, data: bytes, message: str) -> None:
    report = await service.import_cards([("upload.zip", data)])
    assert report.imported == [] and len(report.problems) == 1
    assert report.problems[0].startswith("upload.zip") and message in report.problems[0]


def test_a_zip_bomb_is_refused_before_it_is_inflated(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("card.json", b" " * (charx.MAX_MEMBER_BYTES + 1))
    with pytest.raises(InputError, match=r"card\.json is 20,971,521 bytes; at most 20,971,520"):
        read_card(bomb.getvalue(), "bomb.charx")
    monkeypatch.setattr(charx, "MAX_TOTAL_BYTES", 1000)
    many: dict[str, Any] = {f"{n}.json": b" " * 600 for n in range(2)}
    with pytest.raises(InputError, match="1,200 bytes unpacked; at most 1,000"):
        read_card(_zip(many), "many.zip")
