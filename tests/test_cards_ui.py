"""The Library tab's export and import: handlers, the status line after a
failure, and the API endpoints of a launched app."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, cast

import gradio as gr
import pytest

from app.services.card_store import CardStore
from app.services.exports import ExportService
from app.ui.library_cards import CardHandlers, status_of_last_action
from app.wiring import Services
from tests.conftest import api_client, make_settings
from tests.test_cards_import import CARDS, MemoryLibrary, Worlds


@pytest.fixture
def handlers(tmp_path: Path) -> CardHandlers:
    service = ExportService(
        cast(Any, MemoryLibrary()), cast(Any, Worlds()), CardStore(tmp_path / "cards")
    )
    return CardHandlers(service, tmp_path / "exports")


async def test_import_then_export_through_the_handlers(
    handlers: CardHandlers, tmp_path: Path
) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a card")
    with pytest.warns(UserWarning, match="notes.txt: neither a PNG card, a CHARX nor card JSON"):
        status = await handlers.import_cards([str(CARDS / "odile_v2.json"), str(bad)])
    assert status.startswith("Imported 1 card: Odile Marchetti. Refused 1: notes.txt: ")
    npc_id = next(iter(handlers.exports.library.npcs))  # type: ignore[attr-defined]
    path, line = await handlers.export(npc_id, "this NPC", "Character Card V2 (JSON)")
    assert line == "Exported 1 NPC as Character Card V2 (JSON): Odile_Marchetti.card.json."
    assert json.loads(Path(path).read_text()) == json.loads((CARDS / "odile_v2.json").read_text())


async def test_many_notes_are_summed_up(handlers: CardHandlers, tmp_path: Path) -> None:
    names = []
    for number in range(8):
        card = json.loads((CARDS / "odile_v2.json").read_text())
        card["data"] |= {"name": f"Odile {number}", "tags": "a, b"}
        names.append(tmp_path / f"o{number}.json")
        names[-1].write_text(json.dumps(card))
    with pytest.warns(UserWarning, match="tags was one string"):
        status = await handlers.import_cards([str(name) for name in names])
    assert status.count("tags was one string") == 5 and status.endswith("(and 3 more)")


async def _outputs(handler: Any, *args: Any) -> list[Any]:
    seen: list[Any] = []
    try:
        async for output in handler(*args):
            seen.append(output)
    except gr.Error as exc:
        seen.append(exc)
    return seen


async def test_the_status_line_shows_a_failure_too(handlers: CardHandlers) -> None:
    export = status_of_last_action(handlers.export, "Export", blank=(None,))
    *shown, error = await _outputs(export, None, "this NPC", "JSON")
    assert shown == [(None, "✗ Export failed: Choose an NPC first: search or list, then pick one "
                      "(or give its id).")]  # fmt: skip
    assert isinstance(error, gr.Error) and "Choose an NPC first" in error.message
    imported = status_of_last_action(handlers.import_cards, "Import")
    with pytest.warns(UserWarning, match="asset 'storm'"):  # a pop-up in the browser
        shown = await _outputs(imported, [str(CARDS / "kestrel_v3.json")])
    assert shown[0].startswith("Imported 1 card: Kestrel Vance. Notes: kestrel_v3.json: asset")
    *shown, error = await _outputs(imported, [])
    assert shown == [
        "✗ Import failed: Choose one or more card files (.json, .png, .charx, or a zip of them) "
        "to import."
    ]


@pytest.mark.server
@pytest.mark.slow
def test_export_and_import_over_the_api(tmp_path: Path) -> None:
    """As the README shows: export a card, import cards, through gradio_client."""
    from gradio_client import handle_file

    with api_client(Services(make_settings(tmp_path, library_autosave=True))) as client:
        files = [handle_file(str(CARDS / name)) for name in ("odile_v2.json", "kestrel_v3.json")]
        status = client.predict(files, api_name="/library_import")
        assert status.startswith("Imported 2 cards: Odile Marchetti, Kestrel Vance.")
        rows, _, _ = client.predict("Imported", "", api_name="/library_list")
        odile = next(row[-1] for row in rows["data"] if row[1] == "Odile Marchetti")
        path, line = client.predict(
            odile, "this NPC", "Character Card V3 (PNG)", api_name="/library_export"
        )
        assert path.endswith("Odile_Marchetti.png") and "as Character Card V3 (PNG)" in line
        world, _ = client.predict(
            odile, "its whole world", "Character Card V2 (JSON)", api_name="/library_export"
        )
        names = zipfile.ZipFile(world).namelist()
        assert world.endswith("Imported.cards.zip") and len(names) == 2
        with pytest.raises(Exception, match="YAML is not in the list of choices"):
            client.predict(odile, "this NPC", "YAML", api_name="/library_export")
