"""Export and import in the Library tab of a real browser; the status line
shows a failed export too."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.wiring import Services
from tests.conftest import make_settings
from tests.test_browser import app_page
from tests.test_cards_import import CARDS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.server]


def test_import_and_export_cards_in_the_browser(tmp_path: Path) -> None:
    services = Services(make_settings(tmp_path, library_autosave=True))
    with app_page(services) as page:
        page.get_by_role("tab", name="Library").click()
        export = page.get_by_role("button", name="Export", exact=True)
        page.get_by_text("Export", exact=True).first.click()  # open the accordion
        export.click()  # nothing chosen yet: the status line says the export failed
        page.get_by_text("✗ Export failed: Choose an NPC first").wait_for(timeout=15_000)
        page.get_by_text("Import Character Cards").click()
        page.locator("input[type=file][multiple]").set_input_files(
            [str(CARDS / "odile_v2.json"), str(CARDS / "kestrel_v3.json")]
        )
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("Imported 2 cards: Odile Marchetti, Kestrel Vance.").wait_for(
            timeout=30_000
        )
        page.get_by_role("button", name="List", exact=True).click()
        page.get_by_text("2 NPCs shown").wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "library-import.png"), full_page=True)
        export.click()
        page.get_by_text("Exported 1 NPC as JSON").wait_for(timeout=15_000)
        page.screenshot(path=str(tmp_path / "library-export.png"), full_page=True)
        page.locator('[aria-label="Kestrel_Vance.json"]').wait_for(timeout=15_000)
        # Any failed action shows on the status line, not only export and import.
        page.get_by_role("textbox", name="Value").fill("")
        page.get_by_role("button", name="Save field").click()
        page.get_by_text("✗ Save failed: backstory: String should have at least").wait_for(
            timeout=15_000
        )
