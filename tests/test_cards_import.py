"""Cards made by others survive the trip: golden round trips on cards that use
every V2/V3 field (JSON and PNG), edits that change only what was edited, and
the things real files contain."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any, cast

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from app.errors import InputError
from app.models import NPC, World
from app.services.card_import import MAX_DEPTH, read_card
from app.services.card_schemas import card_problems
from app.services.card_store import CardStore
from app.services.cards import to_v2
from app.services.exports import ExportService
from app.services.library import EVERYONE, Viewer
from app.services.png_chunks import text_chunks, with_text_chunks

CARDS = Path(__file__).parent / "cards"
NOW = 1_764_600_000.0


def fixture(name: str) -> dict[str, Any]:
    card: dict[str, Any] = json.loads((CARDS / name).read_text())
    return card


def b64(card: Any) -> str:
    return base64.b64encode(json.dumps(card).encode()).decode()


def art_png() -> bytes:
    """A small image with a pattern, to tell art apart from a generated portrait."""
    image = Image.new("RGB", (64, 96), (20, 40, 60))
    for x in range(64):
        image.putpixel((x, x % 96), (250, 200, x * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_card(**chunks: str) -> bytes:
    return with_text_chunks(art_png(), chunks)


def image_chunks(png: bytes) -> list[bytes]:
    """The chunks that are not text: the art itself."""
    out, position = [], 8
    while position < len(png):
        length = int.from_bytes(png[position : position + 4], "big")
        kind = png[position + 4 : position + 8]
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            out.append(png[position : position + 12 + length])
        position += 12 + length
    return out


def chunk_cards(png: bytes) -> dict[str, Any]:
    return {
        k: json.loads(base64.b64decode(v)) for k, v in text_chunks(png) if k in {"chara", "ccv3"}
    }


class MemoryLibrary:
    """The library's save/get/world_npcs, in memory, seen by one viewer."""

    def __init__(self, viewer: Viewer = EVERYONE) -> None:
        self.npcs: dict[str, NPC] = {}
        self.saves = 0
        self.viewer = viewer

    def as_seen_by(self, viewer: Viewer) -> MemoryLibrary:
        view = MemoryLibrary(viewer)
        view.npcs = self.npcs  # one library, two views
        return view

    async def save(self, npcs: list[NPC]) -> None:
        self.saves += 1
        self.npcs.update({npc.id: npc for npc in npcs})

    async def get(self, npc_id: str) -> NPC:
        return self.npcs[npc_id]

    async def get_many(self, ids: list[str]) -> list[NPC]:
        return [self.npcs[npc_id] for npc_id in ids if npc_id in self.npcs]

    async def world_npcs(self, npc_id: str) -> list[NPC]:
        world = self.npcs[npc_id].world
        return [npc for npc in self.npcs.values() if npc.world == world]


class Worlds:
    def world_for(self, name: str) -> World:
        return World(name=name, era=name, time_period="unspecified")


@pytest.fixture
def library() -> MemoryLibrary:
    return MemoryLibrary()


def card_service(library: MemoryLibrary, directory: Path) -> ExportService:
    """Exports and imports over an in-memory library, cards kept in ``directory``."""
    return ExportService(
        cast(Any, library), cast(Any, Worlds()), CardStore(directory), clock=lambda: NOW
    )


@pytest.fixture
def service(library: MemoryLibrary, tmp_path: Path) -> ExportService:
    return card_service(library, tmp_path / "cards")


async def import_one(service: ExportService, name: str, data: bytes) -> NPC:
    report = await service.import_cards([(name, data)])
    assert report.problems == [], report.problems
    (npc,) = report.imported
    return npc


async def export(service: ExportService, npc: NPC, fmt: str) -> bytes:
    return (await service.export(npc.id, "this NPC", fmt)).data


# -- golden round trips -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("odile_v2.json", "Character Card V2 (JSON)"),
        ("kestrel_v3.json", "Character Card V3 (JSON)"),
    ],
)
async def test_unedited_json_card_exports_equal(
    service: ExportService, name: str, fmt: str
) -> None:
    original = fixture(name)
    npc = await import_one(service, name, (CARDS / name).read_bytes())
    assert json.loads(await export(service, npc, fmt)) == original
    assert card_problems(original) == []


async def test_unedited_png_cards_export_equal_with_their_art(service: ExportService) -> None:
    v2 = fixture("odile_v2.json")
    npc = await import_one(service, "odile.png", png_card(chara=b64(v2)))
    out = await export(service, npc, "Character Card V2 (PNG)")
    assert chunk_cards(out) == {"chara": v2}
    assert image_chunks(out) == image_chunks(art_png())  # the art, byte for byte

    v3 = fixture("kestrel_v3.json")
    backfill = to_v2(v3)
    backfill["data"]["creator_notes"] = "Loaded as V2: use a V3 tool."
    asset = base64.b64encode(b"ID3 storm").decode()
    original = with_text_chunks(
        art_png(), {"chara": b64(backfill), "ccv3": b64(v3), "chara-ext-asset_:storm.mp3": asset}
    )
    npc = await import_one(service, "kestrel.png", original)
    out = await export(service, npc, "Character Card V3 (PNG)")
    assert chunk_cards(out) == {"chara": backfill, "ccv3": v3}
    assert ("chara-ext-asset_:storm.mp3", asset) in text_chunks(out)
    assert image_chunks(out) == image_chunks(original)
    assert json.loads(await export(service, npc, "Character Card V2 (JSON)")) == backfill


async def test_cross_version_exports_keep_every_field(service: ExportService) -> None:
    v2 = fixture("odile_v2.json")
    npc = await import_one(service, "odile.json", json.dumps(v2).encode())
    v3 = json.loads(await export(service, npc, "Character Card V3 (JSON)"))
    assert card_problems(v3) == [] and v3["data"]["modification_date"] == int(NOW)
    for key, value in v2["data"].items():
        if key != "character_book":
            assert v3["data"][key] == value, key
    entries = v3["data"]["character_book"]["entries"]
    assert [e["use_regex"] for e in entries] == [False] * 3
    assert entries[0]["extensions"] == v2["data"]["character_book"]["entries"][0]["extensions"]

    kestrel = await import_one(service, "k.json", (CARDS / "kestrel_v3.json").read_bytes())
    as_v2 = json.loads(await export(service, kestrel, "Character Card V2 (JSON)"))
    assert card_problems(as_v2) == []
    original = fixture("kestrel_v3.json")["data"]
    book = original.pop("character_book")
    assert {k: v for k, v in as_v2["data"].items() if k != "character_book"} == original
    # V3 fields kept, not destroyed; V2 ids are numbers, so the text id moves aside.
    first = as_v2["data"]["character_book"]["entries"][0]
    assert "id" not in first and first["extensions"] == {"chara_card_v3_id": "aeris"}
    assert first["content"] == book["entries"][0]["content"]


async def test_edits_change_only_what_was_edited(
    service: ExportService, library: MemoryLibrary
) -> None:
    original = fixture("odile_v2.json")
    npc = await import_one(service, "odile.json", json.dumps(original).encode())
    edited = npc.model_copy(
        update={
            "appearance": "A tall clockmaker with a glass eye.",
            "secret": "She built the bomb.",
        }
    )
    library.npcs[npc.id] = edited
    card = json.loads(await export(service, edited, "Character Card V2 (JSON)"))
    assert card_problems(card) == []
    description = card["data"]["description"]
    assert description.startswith("A tall clockmaker with a glass eye.\r\nShe keeps")
    assert description.endswith(original["data"]["description"].split("\r\n", 1)[1])
    for key, value in original["data"].items():
        if key not in ("description", "extensions"):
            assert card["data"][key] == value, key
    extensions = card["data"]["extensions"]
    assert {k: v for k, v in extensions.items() if k != "npc_forge"} == original["data"][
        "extensions"
    ]
    assert extensions["npc_forge"]["secret"] == "She built the bomb."
    # The V1 mirror at the root follows the edited field, and only that one.
    assert card["description"] == description
    assert {k: card[k] for k in original if k not in ("data", "description")} == {
        k: original[k] for k in original if k not in ("data", "description")
    }
    back = await import_one(service, "again.json", json.dumps(card).encode())
    assert back == edited


# -- mapping onto the NPC -------------------------------------------------------------------
async def test_imported_npc_takes_only_what_the_card_states(service: ExportService) -> None:
    npc = await import_one(service, "odile.json", (CARDS / "odile_v2.json").read_bytes())
    data = fixture("odile_v2.json")["data"]
    assert (npc.age, npc.gender, npc.occupation) == (55, "female", "clockmaker")
    assert npc.appearance + "\r\n" + npc.backstory == data["description"]  # split, not doubled
    assert npc.personality_traits == [
        "meticulous", "wry", "guarded", "patient", "stubborn", "secretly sentimental", "proud",
        "curious",
    ]  # fmt: skip
    assert npc.sample_lines == [data["first_mes"], *data["alternate_greetings"]]
    assert npc.tags == data["tags"]  # no "Imported", no "unknown"
    assert (npc.motivation, npc.secret) == ("unknown", "unknown")
    kestrel = await import_one(service, "k.json", (CARDS / "kestrel_v3.json").read_bytes())
    assert (kestrel.age, kestrel.gender, kestrel.occupation) == (34, "female", "sky-ship navigator")
    assert kestrel.personality_traits == ["reckless", "loyal", "quick-witted", "restless"]
    assert kestrel.appearance.startswith("Gender: female\n\nKestrel is a 34-year-old")


async def test_what_the_card_does_not_state_stays_unknown(service: ExportService) -> None:
    card = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {"name": "Mira", "description": "A traveller.", "first_mes": "Hello. Who are you?"},
    }
    npc = await import_one(service, "mira.json", json.dumps(card).encode())
    assert (npc.age, npc.gender, npc.occupation) == (None, "unknown", "unknown")
    assert npc.sample_lines == ["Hello.", "Who are you?"]  # the card's own words, split
    assert npc.backstory == "unknown" and npc.age_text() == "age unknown"


# -- what real files contain ----------------------------------------------------------------
def _v2(**data: Any) -> dict[str, Any]:
    """A valid V2 card (every required field), with ``data`` changed."""
    base = {
        key: ""
        for key in (
            "personality",
            "scenario",
            "mes_example",
            "creator_notes",
            "system_prompt",
            "post_history_instructions",
            "creator",
            "character_version",
        )
    }
    base |= {"name": "Tamsin", "first_mes": "Well met. Sit down.", "description": "A smith.",
             "alternate_greetings": [], "tags": [], "extensions": {}}  # fmt: skip
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": {**base, **data}}


async def test_strings_where_lists_belong(service: ExportService) -> None:
    card = _v2(tags="fantasy, elf", alternate_greetings="Hi!", description=None)
    report = await service.import_cards([("t.json", json.dumps(card).encode())])
    (npc,) = report.imported
    assert npc.tags == ["fantasy", "elf"] and "Hi!" in npc.sample_lines
    assert any("tags was one string" in note for note in report.notes)
    exported = json.loads(await export(service, npc, "Character Card V2 (JSON)"))
    assert exported["data"]["alternate_greetings"] == ["Hi!"] and card_problems(exported) == []


async def test_long_fields_are_kept_whole_in_the_card(service: ExportService) -> None:
    long_name = "Archibald " * 12 + "X"
    description = ("word " * 800).strip() + " end."
    card = _v2(name=long_name, description=description)
    assert len(long_name) == 121 and len(description) > 4000
    report = await service.import_cards([("long.json", json.dumps(card).encode())])
    (npc,) = report.imported
    assert len(npc.name) <= 120 and npc.name.endswith("…")
    assert any(note.startswith("long.json: The name has 121") for note in report.notes)
    assert json.loads(await export(service, npc, "Character Card V2 (JSON)")) == card


@pytest.mark.parametrize("keyword", ["Chara", "CHARA", "chara"])
def test_chunk_keywords_in_any_case(keyword: str) -> None:
    assert read_card(png_card(**{keyword: b64(_v2())}), "x.png").card["data"]["name"] == "Tamsin"


def test_broken_ccv3_falls_back_to_chara() -> None:
    read = read_card(png_card(ccv3="%%% broken %%%", chara=b64(_v2())), "both.png")
    assert read.card["spec"] == "chara_card_v2" and read.card["data"]["name"] == "Tamsin"
    assert read.notes == [
        "both.png: the 'ccv3' chunk is not base64-encoded JSON. Read the V2 'chara' chunk instead."
    ]
    not_a_card = read_card(png_card(ccv3=b64({"spec": "nope"}), chara=b64(_v2())), "n.png")
    assert not_a_card.card["data"]["name"] == "Tamsin"


def test_compressed_text_chunks_are_read() -> None:
    info = PngInfo()
    info.add_text("chara", b64(_v2()), zip=True)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)
    assert read_card(buffer.getvalue(), "z.png").card["data"]["name"] == "Tamsin"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_a_clear_error(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    text = (
        '{"spec": "chara_card_v2", "data": {"name": "X", "extensions": {"deep": ' + nested + "}}}"
    )
    with pytest.raises(InputError, match=rf"deep\.json: the file nests more than {MAX_DEPTH}"):
        read_card(text.encode(), "deep.json")
    with pytest.raises(InputError, match=r"deep\.png: the 'chara' chunk nests more than"):
        read_card(png_card(chara=base64.b64encode(text.encode()).decode()), "deep.png")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello there", "neither a PNG card, a CHARX nor card JSON"),
        (b'{"spec": "something_else", "data": {"name": "X"}}', "not a Character Card V2/V3"),
        (b'{"spec": "chara_card_v2", "data": {"name": "  "}}', "no character name"),
        (b"\x89PNG\r\n\x1a\nbroken", "the PNG is cut short"),
        (b"PK\x03\x04rest", "a damaged zip"),
        (b"{" + b" " * (21 * 1024 * 1024), "cards are at most"),
    ],
)
def test_bad_files_are_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        read_card(data, "upload.bin")
    assert str(caught.value).startswith("upload.bin: ")


def test_png_without_a_card() -> None:
    with pytest.raises(InputError, match=r"plain\.png: no character card found"):
        read_card(art_png(), "plain.png")


def test_v1_card_and_v3_assets_it_cannot_carry() -> None:
    v1 = {"name": "Old Tom", "description": "A fisher.", "first_mes": "Morning. Fine day."}
    read = read_card(json.dumps(v1).encode(), "tom.json")
    assert read.card["data"]["name"] == "Old Tom" and card_problems(read.card) == []
    kestrel = read_card((CARDS / "kestrel_v3.json").read_bytes(), "kestrel.json")
    assert len(kestrel.notes) == 1 and "'storm'" in kestrel.notes[0]
    assert "embeded://assets/other/audio/storm.mp3" in kestrel.notes[0]


async def test_one_bad_file_never_costs_the_others(
    service: ExportService, library: MemoryLibrary
) -> None:
    deep = b'{"spec": "chara_card_v2", "data": {"name": "D", "x": ' + b"[" * 70 + b"]" * 70 + b"}}"
    files = [
        ("odile.json", (CARDS / "odile_v2.json").read_bytes()),
        ("notes.txt", b"shopping list"),
        ("kestrel.png", png_card(ccv3=b64(fixture("kestrel_v3.json")))),
        ("deep.json", deep),
        ("quiet.json", json.dumps(_v2(first_mes="Hm.")).encode()),
        ("odile-again.json", (CARDS / "odile_v2.json").read_bytes()),
    ]
    report = await service.import_cards(files)
    assert [npc.name for npc in report.imported] == ["Odile Marchetti", "Kestrel Vance"]
    assert [problem.split(":")[0] for problem in report.problems] == [
        "notes.txt", "deep.json", "quiet.json"
    ]  # fmt: skip
    assert "two things the character says" in report.problems[2]
    assert "odile-again.json: the same card as odile.json; imported once." in report.notes
    assert len(library.npcs) == 2 and library.saves == 1


async def test_a_made_here_card_reimported_is_the_same_npc(service: ExportService) -> None:
    from tests.npc_fixtures import valid_profile

    npc = NPC(**valid_profile("Ada Brisk"), id="npc-ada", world="Saltmere", backend="p", seed=1)
    service.library.npcs[npc.id] = npc  # type: ignore[attr-defined]
    data = await export(service, npc, "Character Card V3 (PNG)")
    assert await import_one(service, "ada.png", data) == npc
    assert await export(service, npc, "Character Card V3 (PNG)") == data  # now kept: same bytes
    archive = await service.export(npc.id, "its whole world", "Character Card V2 (JSON)")
    assert zipfile.ZipFile(io.BytesIO(archive.data)).namelist() == ["Ada_Brisk.card.json"]


async def test_an_edited_card_made_here_is_built_anew(
    service: ExportService, library: MemoryLibrary
) -> None:
    from tests.npc_fixtures import valid_profile

    npc = NPC(**valid_profile("Ada Brisk"), id="npc-ada", world="Saltmere", backend="p", seed=1)
    library.npcs[npc.id] = npc
    await import_one(service, "ada.json", await export(service, npc, "Character Card V2 (JSON)"))
    edited = npc.model_copy(update={"appearance": "A short woman with a limp."})
    library.npcs[npc.id] = edited
    data = json.loads(await export(service, edited, "Character Card V2 (JSON)"))["data"]
    header, appearance = data["description"].split("\n\n")[:2]
    assert header.startswith("Ada Brisk, abbey cellarer") and appearance == edited.appearance


async def test_a_json_list_of_cards_imports_each(service: ExportService) -> None:
    """What NPC Forge wrote for a world before it wrote zips."""
    cards = [fixture("odile_v2.json"), fixture("kestrel_v3.json"), {"spec": "nope"}]
    report = await service.import_cards(
        [("world.json", b"\xef\xbb\xbf" + json.dumps(cards).encode())]
    )
    assert [npc.name for npc in report.imported] == ["Odile Marchetti", "Kestrel Vance"]
    assert report.problems == [
        'world.json #3: not a Character Card V2/V3 (expected "spec": "chara_card_v2" or '
        '"chara_card_v3").'
    ]


async def test_a_v3_icon_data_url_becomes_the_png_art(service: ExportService) -> None:
    card = fixture("kestrel_v3.json")
    art = art_png()
    card["data"]["assets"][0]["uri"] = "data:image/png;base64," + base64.b64encode(art).decode()
    npc = await import_one(service, "k.json", json.dumps(card).encode())
    out = await export(service, npc, "Character Card V3 (PNG)")
    assert image_chunks(out) == image_chunks(art) and chunk_cards(out)["ccv3"] == card


async def test_values_the_spec_cannot_take_are_set_aside_not_lost(service: ExportService) -> None:
    card = fixture("kestrel_v3.json")
    card["data"]["creation_date"] = "2026-11-30"
    card["data"]["assets"].append("not an asset")
    card["data"]["character_book"]["scan_depth"] = None
    report = await service.import_cards([("odd.json", json.dumps(card).encode())])
    (npc,) = report.imported
    exported = json.loads(await export(service, npc, "Character Card V3 (JSON)"))
    assert card_problems(exported) == []
    assert exported["data"]["extensions"]["npc_forge_set_aside"] == {
        "creation_date": "2026-11-30",
        "assets.4": "not an asset",
        "character_book.scan_depth": None,
    }
    assert sum("npc_forge_set_aside" in note for note in report.notes) == 3


async def test_relationships_added_later_join_the_card_s_lorebook(
    service: ExportService, library: MemoryLibrary
) -> None:
    from app.models import Relationship

    npc = await import_one(service, "odile.json", (CARDS / "odile_v2.json").read_bytes())
    tie = Relationship(target_id="npc-l", target_name="Lucien Marchetti", type="family", weight=0.4)
    library.npcs[npc.id] = npc.model_copy(update={"relationships": [tie]})
    book = json.loads(await export(service, library.npcs[npc.id], "Character Card V2 (JSON)"))[
        "data"
    ]["character_book"]
    original = fixture("odile_v2.json")["data"]["character_book"]
    assert book["entries"][:3] == original["entries"]  # the card's own entries, untouched
    (added,) = book["entries"][3:]
    assert added["keys"] == ["Lucien Marchetti", "Lucien"] and added["id"] == 3
    assert {k: v for k, v in book.items() if k != "entries"} == {
        k: v for k, v in original.items() if k != "entries"
    }


def test_identity_leaves_out_what_is_unknown() -> None:
    from tests.npc_fixtures import valid_profile

    npc = NPC(**valid_profile("Ada"), id="npc-a", world="W", backend="p", seed=1)
    assert npc.identity() == "Ada, abbey cellarer, 47 years old (male)"
    unknown = npc.model_copy(update={"age": None, "gender": "unknown", "occupation": "unknown"})
    assert unknown.identity() == "Ada"


async def test_world_lorebook_carries_the_imported_cards_entries(service: ExportService) -> None:
    npc = await import_one(service, "odile.json", (CARDS / "odile_v2.json").read_bytes())
    await import_one(service, "kestrel.json", (CARDS / "kestrel_v3.json").read_bytes())
    exported = await service.export(npc.id, "its whole world", "SillyTavern World Info (JSON)")
    entries = list(json.loads(exported.data)["entries"].values())
    assert exported.filename == "Imported.lorebook.json"
    assert [e["comment"] for e in entries] == [
        "Odile Marchetti: Bell tower", "Odile Marchetti: family", "Odile Marchetti: guild",
        "Kestrel Vance: place", "Kestrel Vance: /storm(s)?/i",
    ]  # fmt: skip
    bell, lucien, guild = entries[:3]
    assert bell["key"] == ["bell tower", "tower"] and bell["depth"] == 4
    assert bell["excludeRecursion"] is False and bell["scanDepth"] is None
    assert (lucien["keysecondary"], lucien["selective"], lucien["position"]) == (
        ["capital", "letter"], True, 1
    )  # fmt: skip
    assert guild["disable"] and guild["constant"]


async def test_importing_a_card_again_says_it_replaces_the_edited_npc(
    service: ExportService, library: MemoryLibrary
) -> None:
    data = (CARDS / "odile_v2.json").read_bytes()
    npc = await import_one(service, "odile.json", data)
    again = await service.import_cards([("odile.json", data)])
    assert again.notes == []  # the same NPC: nothing to say
    library.npcs[npc.id] = npc.model_copy(update={"secret": "She built the bomb."})
    again = await service.import_cards([("odile.json", data)])
    assert again.notes == [
        "Odile Marchetti was in the library already, changed since; the card as imported "
        "now replaces that version."
    ]
    assert library.npcs[npc.id] == npc
