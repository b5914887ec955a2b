"""The UI in a real browser: Debian's chromium driven by Playwright.

Never `playwright install`: the browser is the system's (`apt-get install
chromium`). Without it the test is skipped on a developer machine and fails
in CI (CI=true), where `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from app.wiring import Services
from tests.threaded_server import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.server]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return path


@contextmanager
def app_page(services: Services) -> Iterator[Any]:
    """The app served on 127.0.0.1 and a chromium page open on it; both closed after."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    from app.ui.app import serve, shutdown

    demo = serve(services, host="127.0.0.1", port=free_port())
    try:
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(demo.local_url, wait_until="load")
                yield page
            finally:
                browser.close()
    finally:
        shutdown(services, demo)


def test_generate_in_the_browser(services: Services, tmp_path: Path) -> None:
    with app_page(services) as page:
        page.get_by_role("button", name="Generate", exact=True).wait_for(timeout=30_000)
        page.get_by_role("button", name="Generate", exact=True).click()
        finished = page.locator("article.npc-card:not(.npc-pending):not(.npc-failed)")
        finished.nth(4).wait_for(timeout=30_000)
        assert finished.count() == 5
        assert page.locator("article.npc-pending").count() == 0
        page.get_by_text("5/5").first.wait_for(timeout=10_000)
        page.screenshot(path=str(tmp_path / "generate.png"), full_page=True)
        # The Stats tab shows the cache table.
        page.get_by_role("tab", name="Stats").click()
        page.get_by_text("json_files").first.wait_for(timeout=15_000)


def test_stop_keeps_the_finished_cards_in_the_browser(tmp_path: Path) -> None:
    """Stop after three NPCs: their cards stay, the status says so, the JSON is offered."""
    from app.backends.registry import BackendRegistry
    from tests.conftest import make_settings
    from tests.gated import GateBackend

    gate = GateBackend(open_for=3)  # the 4th call waits until Stop cancels it
    registry = BackendRegistry()
    registry.register("gated", lambda settings, context: gate)
    services = Services(make_settings(tmp_path, backend="gated"), registry)
    with app_page(services) as page:
        generate = page.get_by_role("button", name="Generate", exact=True)
        generate.wait_for(timeout=30_000)
        page.get_by_label("How many NPCs").first.fill("10")
        generate.click()
        cards = page.locator("#npc-cards article.npc-card")
        cards.nth(2).wait_for(timeout=30_000)
        page.get_by_text("7 generating").first.wait_for(timeout=10_000)
        page.get_by_role("button", name="Stop", exact=True).click()
        page.get_by_text("Stopped:").first.wait_for(timeout=15_000)
        assert cards.count() == 3
        assert page.get_by_text("npc-cast-", exact=False).count() >= 1  # the JSON file
        page.screenshot(path=str(tmp_path / "stopped.png"), full_page=True)
    assert gate.cancelled == 1 and gate.in_flight == 0


def test_chat_in_the_browser(tmp_path: Path) -> None:
    """Find an NPC, say something, and read its reply in the chat."""
    import asyncio

    from tests import casts
    from tests.conftest import make_settings

    services = Services(make_settings(tmp_path, library_autosave=True))

    async def one_npc() -> str:
        world = services.worlds.resolve("saltmere", None).world
        [outcome] = await casts.outcomes(services, world, 1, seed=4, names=["Maud Flour"])
        assert outcome.npc is not None
        await services.library.save([outcome.npc])
        return outcome.npc.occupation

    occupation = asyncio.run(one_npc())
    with app_page(services) as page:
        page.get_by_role("tab", name="Chat").click()
        page.get_by_role("button", name="Find", exact=True).click()
        page.get_by_text("Talking to").first.wait_for(timeout=15_000)
        page.get_by_label("Say").fill("Who are you?")
        page.get_by_role("button", name="Send", exact=True).click()
        page.get_by_text(f"{occupation.capitalize()}, if you must know").first.wait_for(
            timeout=15_000
        )
        page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)


def test_sign_in_then_generate_and_see_the_quota_in_the_browser(tmp_path: Path) -> None:
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, auth=("ann:pw-ann",), quota_npcs_per_hour=7)
    with app_page(Services(settings)) as page:
        page.get_by_label("username").fill("ann")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        page.get_by_text("Incorrect").first.wait_for(timeout=15_000)
        page.get_by_label("username").fill("ann")  # the failed try reloaded the form
        page.get_by_label("password").fill("pw-ann")
        page.get_by_role("button", name="Login").click()
        generate = page.get_by_role("button", name="Generate", exact=True)
        generate.wait_for(timeout=30_000)
        generate.click()
        page.get_by_text("5/5").first.wait_for(timeout=30_000)
        generate.click()  # 5 more would pass 7 an hour: refused, saying when to retry
        page.get_by_text("Quota reached: 7 NPCs per hour").first.wait_for(timeout=15_000)
        page.screenshot(path=str(tmp_path / "quota.png"), full_page=True)
        page.get_by_role("tab", name="Stats").click()
        page.get_by_text("5 / 7").first.wait_for(state="attached", timeout=15_000)
        page.screenshot(path=str(tmp_path / "stats.png"), full_page=True)
