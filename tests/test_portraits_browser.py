"""Portraits and play buttons in the real browser: the cards show a face, a line plays."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.wiring import Services
from tests.test_browser import app_page

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.server]


def test_cards_show_portraits_and_their_lines_play(services: Services, tmp_path: Path) -> None:
    with app_page(services) as page:
        page.get_by_role("button", name="Generate", exact=True).wait_for(timeout=30_000)
        page.get_by_role("button", name="Generate", exact=True).click()
        portraits = page.locator("article.npc-card img.npc-portrait")
        portraits.nth(4).wait_for(timeout=30_000)
        widths = portraits.evaluate_all("images => images.map(image => image.naturalWidth)")
        assert widths == [512] * 5  # the SVGs decoded
        played = page.locator("article.npc-card audio.npc-voice").first.evaluate(
            """async audio => { await audio.play();
                 await new Promise(done => setTimeout(done, 300));
                 return [audio.error === null, audio.readyState >= 2, audio.currentTime > 0]; }"""
        )
        assert played == [True, True, True]
        page.locator("article.npc-card").first.screenshot(path=str(tmp_path / "card.png"))
