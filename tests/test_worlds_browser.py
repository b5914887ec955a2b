"""The World Builder and the cast graph, launched: through gradio_client and in chromium."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.wiring import Services
from tests.conftest import make_settings
from tests.test_browser import app_page
from tests.test_graph import _cast
from tests.threaded_server import free_port

PITCH = "a lighthouse island in the Outer Hebrides, 1890"
NAME = "Lighthouse Island in the Outer Hebrides, 1890"

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_every_world_builder_action_has_an_endpoint(tmp_path: Path) -> None:
    from gradio_client import Client

    from app.ui.app import serve, shutdown

    services = Services(make_settings(tmp_path))
    demo = serve(services, host="127.0.0.1", port=free_port())
    try:
        client = Client(demo.local_url, verbose=False)
        name, era, time, detail, rules, status, _, loaded = client.predict(
            PITCH, "auto", "", api_name="/world_draft"
        )
        assert name == NAME and "✓ A valid world" in status
        status, _, _, _ = client.predict(name, era, time, detail, rules, api_name="/world_save")
        assert status.startswith("✓ Saved")
        checked, _ = client.predict(name, "", time, detail, rules, api_name="/world_check")
        assert "Era is empty" in checked
        _, listing = client.predict(NAME, api_name="/worlds_list")
        assert NAME in listing
        loaded = client.predict(NAME, api_name="/world_load")
        assert loaded[0] == NAME and "Loaded the saved world" in loaded[5] and loaded[-1] == NAME
        file = client.predict(name, era, time, detail, rules, api_name="/world_download")
        assert Path(file).read_text().startswith("{")
        renamed = client.predict(NAME, "Eilean Solas", api_name="/world_rename")
        assert renamed[0] == "Eilean Solas"
        deleted = client.predict("Eilean Solas", True, api_name="/world_delete")
        assert deleted[0].startswith("Deleted **Eilean Solas**")
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        for endpoint in ("/world_upload", "/world_save_over", "/relationships_show"):
            assert endpoint in api
    finally:
        shutdown(services, demo)


@pytest.mark.browser
def test_world_builder_in_the_browser(tmp_path: Path) -> None:
    shots = tmp_path  # pytest keeps the last runs' folders: look at the screenshots
    services = Services(make_settings(tmp_path))
    with app_page(services) as page:
        page.get_by_role("tab", name="World Builder").click()
        page.get_by_label("…or draft from a one-line pitch").fill(PITCH)
        page.get_by_role("button", name="Draft from pitch").click()
        page.get_by_text("✓ A valid world").wait_for(timeout=20_000)
        assert page.get_by_label("Name", exact=True).input_value() == NAME
        page.screenshot(path=str(shots / "world-builder-draft.png"), full_page=True)
        era = page.get_by_label("Era", exact=True)
        era.fill("")  # validation as you type
        page.get_by_text("Era is empty").wait_for(timeout=10_000)
        assert page.locator("#world-status").inner_text().startswith("Not a valid world yet")
        era.fill("Victorian Scotland")
        page.get_by_text("✓ A valid world").wait_for(timeout=10_000)
        assert '"era": "Victorian Scotland"' in page.locator(".cm-content").inner_text()
        page.get_by_role("button", name="Save as new world").click()
        page.get_by_text("✓ Saved").wait_for(timeout=10_000)
        assert NAME in page.locator("#world-list").inner_text()
        assert services.worlds.get(NAME).era == "Victorian Scotland"
        page.get_by_role("button", name="Download JSON").click()
        file_name = "lighthouse_island_in_the_outer_hebrides_1890.json"
        page.locator(f"#world-file a[download='{file_name}']").wait_for(timeout=10_000)
        page.screenshot(path=str(shots / "world-builder-saved.png"), full_page=True)
        # The Generate tab offers the new world.
        page.get_by_role("tab", name="Generate").click()
        page.get_by_label("World", exact=True).first.click()
        page.get_by_role("option", name=NAME).wait_for(timeout=10_000)


@pytest.mark.browser
def test_a_fifty_npc_cast_graph_pans_zooms_tips_and_opens(tmp_path: Path) -> None:
    shots = tmp_path  # pytest keeps the last runs' folders: look at the screenshots
    services = Services(make_settings(tmp_path, library_autosave=True))
    asyncio.run(_save_cast(services))
    with app_page(services) as page:
        page.get_by_role("tab", name="Library").click()
        page.get_by_role("button", name="List").click()
        nodes = page.locator("svg.cast-graph g.node")
        nodes.nth(49).wait_for(timeout=30_000)
        assert nodes.count() == 50
        graph = page.locator("#cast-graph")
        graph.scroll_into_view_if_needed()
        graph.screenshot(path=str(shots / "cast-graph-50.png"))
        svg = page.locator("svg.cast-graph")
        before = svg.get_attribute("viewBox")
        box = svg.bounding_box()
        assert box is not None and box["width"] > 1000  # full width: names readable unzoomed
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.wheel(0, -400)
        page.wait_for_function(
            f"document.querySelector('svg.cast-graph').getAttribute('viewBox') != '{before}'"
        )
        zoomed = svg.get_attribute("viewBox")
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 40)
        page.mouse.up()
        assert svg.get_attribute("viewBox") != zoomed  # panned
        page.locator("[data-zoom=reset]").click()
        assert svg.get_attribute("viewBox") == before
        # Hover a tie (at the middle of one that no node covers): its description shows.
        point = page.evaluate(
            """() => {
              for (const tie of document.querySelectorAll('svg.cast-graph g.tie')) {
                const p = tie.querySelector('path.hit');
                const q = p.getPointAtLength(p.getTotalLength() / 2);
                const s = p.ownerSVGElement.createSVGPoint(); s.x = q.x; s.y = q.y;
                const r = s.matrixTransform(p.getScreenCTM());
                const hit = document.elementFromPoint(r.x, r.y);
                if (hit && hit.closest('g.tie') === tie) return [r.x, r.y];
              }
            }"""
        )
        page.mouse.move(point[0], point[1])
        tip = page.locator(".cast-graph-tip")
        tip.wait_for(state="visible", timeout=5_000)
        assert " → " in tip.inner_text()
        graph.screenshot(path=str(shots / "cast-graph-hover.png"))
        # Click an NPC: it opens, and the graph marks it.
        node = nodes.nth(17)
        name = node.locator("text").text_content() or ""
        node.locator("circle").click()
        page.locator("svg.cast-graph g.node.selected text", has_text=name).wait_for(timeout=10_000)
        page.locator("article.npc-card", has_text=name).first.wait_for(timeout=10_000)


async def _save_cast(services: Services) -> None:
    await services.library.save(await _cast(services, 50))
