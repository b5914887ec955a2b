"""The Generate tab: handlers called directly, and the launched app through gradio_client."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from app.clients import Services
from app.ui.generate_tab import NO_WORLD, GenerateHandlers
from app.ui.personalities_tab import PersonalityHandlers
from tests.fake_openai import FakeOpenAIServer


def _world_name(handlers: GenerateHandlers) -> str:
    return handlers.world_choices()[1]


async def _all(agen) -> list:  # type: ignore[no-untyped-def]
    return [item async for item in agen]


async def test_generate_streams_cards_then_a_file(services: Services) -> None:
    handlers = GenerateHandlers(services)
    updates = await _all(
        handlers.generate_npcs(
            _world_name(handlers),
            None,
            "",
            6,
            "Maud\nBran: grumpy",
            ["curious"],
            "procedural",
            0.9,
            5,
        )
    )
    assert len(updates) >= 2
    first_html = updates[0][0]
    assert first_html.count("npc-pending") == 6  # placeholders before anything finished
    html, cast, file, status, view = updates[-1]
    assert html.count('class="npc-card"') == 6 and "npc-pending" not in html
    assert [npc["name"] for npc in cast["npcs"][:2]] == ["Maud", "Bran"]
    assert "grumpy" in cast["npcs"][1]["personality_traits"]
    assert all("curious" in npc["personality_traits"] for npc in cast["npcs"])
    assert cast["seed"] == 5 and cast["failed"] == []
    assert file is not None and json.loads(Path(file).read_text())["npcs"] == cast["npcs"]
    assert "**6/6**" in status and view.total == 6


async def test_npc_text_is_escaped(services: Services) -> None:
    handlers = GenerateHandlers(services)
    updates = await _all(
        handlers.generate_npcs(
            _world_name(handlers),
            None,
            "",
            1,
            "<script>alert(1)</script>",
            [],
            "procedural",
            0.9,
            1,
        )
    )
    html = updates[-1][0]
    assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "between 1 and 100"),
        ({"count": 10_000}, "between 1 and 100"),
        ({"world": NO_WORLD, "setting": ""}, "setting text is empty"),
        ({"world": NO_WORLD, "setting": "x" * 1_048_576}, "the limit is 20,000"),
        ({"backend": "skynet"}, "Unknown backend"),
        ({"seed": 1.5}, "whole number"),
        ({"traits": ["brave", "cowardly"]}, "contradict"),
    ],
)
async def test_bad_input_is_a_gradio_error(services: Services, kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    handlers = GenerateHandlers(services)
    values = {
        "world": _world_name(handlers), "upload": None, "setting": "", "count": 3, "names": "",
        "traits": [], "backend": "procedural", "temperature": 0.9, "seed": 1,
    }  # fmt: skip
    values.update(kwargs)
    with pytest.raises(gr.Error, match=message):
        await _all(handlers.generate_npcs(*values.values()))


async def test_malformed_upload_is_a_clear_error(services: Services, tmp_path: Path) -> None:
    bad = tmp_path / "my_world.json"
    bad.write_text('{"era": 1')
    handlers = GenerateHandlers(services)
    with pytest.raises(gr.Error, match=r"World file my_world\.json: is not valid JSON"):
        await _all(handlers.generate_npcs(NO_WORLD, str(bad), "", 2, "", [], "procedural", 0.9, 1))


async def test_failed_npcs_show_and_retry_fills_them(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    handlers = GenerateHandlers(openai_services)
    openai_server.fail(403)  # not retryable: the first NPC fails at once
    updates = await _all(
        handlers.generate_npcs(
            _world_name(handlers), None, "", 3, "Ada\nBran\nCei", [], "openai", 0.9, 2
        )
    )
    html, cast, _, status, view = updates[-1]
    assert html.count("npc-failed") == 1 and "HTTP 403" in html
    assert len(cast["npcs"]) == 2 and cast["failed"][0]["position"] in (1, 2, 3)
    assert "1 failed" in status
    kept = {npc["id"] for npc in cast["npcs"]}

    retried = await _all(handlers.retry_failed(view, "openai"))
    html, cast, file, status, view = retried[-1]
    assert "npc-failed" not in html and len(cast["npcs"]) == 3 and file
    assert kept <= {npc["id"] for npc in cast["npcs"]}  # the earlier NPCs were kept as they were
    assert len(openai_server.requests) == 4


async def test_same_seed_again_comes_from_the_cache_unless_regenerating(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    handlers = GenerateHandlers(openai_services)
    world = _world_name(handlers)
    args = (world, None, "", 2, "", [], "openai", 0.9, 3)
    await _all(handlers.generate_npcs(*args))
    html = (await _all(handlers.generate_npcs(*args)))[-1][0]
    assert html.count(">cached<") == 2 and len(openai_server.requests) == 2
    html = (await _all(handlers.generate_npcs(*args, use_cache=False)))[-1][0]
    assert ">cached<" not in html and len(openai_server.requests) == 4


def test_world_list_refreshes(services: Services, tmp_path: Path) -> None:
    handlers = GenerateHandlers(services)
    update = handlers.world_dropdown("No Such World")
    assert update["value"] == NO_WORLD and update["choices"] == handlers.world_choices()


def test_personalities_browse_filters(services: Services) -> None:
    handlers = PersonalityHandlers(services)
    data = services.personalities
    trait = next(t for t in data.traits.values() if t.opposite)
    traits, _, summary = handlers.browse(trait.name, "all")
    names = [row[0] for row in traits["value"]]
    assert trait.name in names and trait.opposite in names  # matched by name and by opposite
    only = handlers.browse("", trait.polarity)[0]["value"]
    assert {row[1] for row in only} == {trait.polarity}
    assert f"of {len(data.traits)} traits" in summary


@pytest.mark.server
@pytest.mark.slow
def test_launched_app_answers_generate_npcs_over_the_api(services: Services) -> None:
    from gradio_client import Client

    from app.ui import create_app
    from app.ui.app import launch_options

    demo = create_app(services)
    demo.launch(
        server_name="127.0.0.1",
        server_port=None,
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(services),
    )
    try:
        client = Client(demo.local_url, verbose=False)
        world = GenerateHandlers(services).world_choices()[1]
        html, cast, file, status = client.predict(
            world,
            None,
            "",
            4,
            "Maud",
            ["curious"],
            "procedural",
            0.9,
            11,
            api_name="/generate_npcs",
        )
        assert len(cast["npcs"]) == 4 and cast["npcs"][0]["name"] == "Maud"
        assert html.count('class="npc-card"') == 4
        assert Path(file).is_file() and "4/4" in status
        with pytest.raises(Exception, match="less than minimum value 1"):
            client.predict(
                world, None, "", 0, "", [], "procedural", 0.9, 1, api_name="/generate_npcs"
            )
    finally:
        demo.close()
