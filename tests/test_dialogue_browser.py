"""The Dialogue tab in a real browser: pick a world's cast, shipped situations, Generate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.wiring import Services
from tests import casts
from tests.conftest import make_settings
from tests.test_browser import app_page

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.server]


def test_dialogue_in_the_browser(tmp_path: Path) -> None:
    services = Services(make_settings(tmp_path, library_autosave=True))

    async def cast() -> None:
        world = services.worlds.resolve("saltmere", None).world
        outcomes = await casts.outcomes(services, world, 3, seed=4)
        await services.library.save([o.npc for o in outcomes if o.npc is not None])

    asyncio.run(cast())
    with app_page(services) as page:
        page.get_by_role("tab", name="Dialogue").click()
        page.get_by_text("3 NPCs found").first.wait_for(timeout=15_000)
        page.get_by_label("…or a whole world's cast").first.click()
        page.get_by_role("option", name="Saltmere").click()
        page.get_by_label("Situations, one per line").fill(
            "greets the player at dawn\nplayer steals from the stall\nasked about the missing ship"
        )
        page.get_by_role("button", name="Generate lines").click()
        page.get_by_text("27/27").first.wait_for(timeout=30_000)
        lines = page.locator("li.dlg-line")
        assert lines.count() == 27
        assert page.locator("section.dlg-npc").count() == 3
        assert page.locator(".dlg-new").count() == 27
        page.screenshot(path=str(tmp_path / "dialogue.png"), full_page=True)
        page.get_by_role("button", name="Generate lines").click()
        page.get_by_text("27 cached").first.wait_for(timeout=30_000)
        assert page.locator(".dlg-cached").count() == 27
