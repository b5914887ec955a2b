"""The Generate tab: handlers called directly, and the launched app through gradio_client."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import gradio as gr
import pytest

from app.backends.registry import BackendRegistry
from app.errors import NPCForgeError
from app.ui.errors import user_errors
from app.ui.generate_tab import NO_WORLD, GenerateHandlers
from app.ui.personalities_tab import PersonalityHandlers
from app.wiring import Services
from tests.conftest import MakeServices, make_settings
from tests.fake_openai import FakeOpenAIServer
from tests.gated import GateBackend
from tests.threaded_server import free_port


def _handlers(services: Services, tmp_path: Path) -> GenerateHandlers:
    return GenerateHandlers(services.cast, services.worlds, tmp_path / "exports")


def _world_name(handlers: GenerateHandlers) -> str:
    return handlers.world_choices()[1]


async def _all(agen) -> list:  # type: ignore[no-untyped-def]
    return [item async for item in agen]


async def test_generate_streams_cards_then_a_file(services: Services, tmp_path: Path) -> None:
    handlers = _handlers(services, tmp_path)
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
    # One update before anything finished, one per NPC, one with the file.
    assert len(updates) == 1 + 6 + 1
    assert updates[0][0] == "" and "6 generating: Maud, Bran" in updates[0][3]
    counts = [html.count('class="npc-card"') for html, *_ in updates]
    assert counts == [0, 1, 2, 3, 4, 5, 6, 6]
    for (before, *_), (after, *_) in itertools.pairwise(updates):
        assert after.startswith(before)  # the cards only grow: Gradio sends "append" diffs
    html, cast, file, status, view = updates[-1]
    assert html.count('class="npc-card"') == 6 and not status.startswith("Stopped")
    assert [npc["name"] for npc in cast["npcs"][:2]] == ["Maud", "Bran"]
    assert "grumpy" in cast["npcs"][1]["personality_traits"]
    assert all("curious" in npc["personality_traits"] for npc in cast["npcs"])
    assert cast["seed"] == 5 and cast["failed"] == []
    assert file is not None and json.loads(Path(file).read_text())["npcs"] == cast["npcs"]
    assert "**6/6**" in status and view.total == 6


async def test_npc_text_is_escaped(services: Services, tmp_path: Path) -> None:
    handlers = _handlers(services, tmp_path)
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
        ({"seed": "abc"}, "whole number"),
        ({"seed": str(2**63)}, "The seed must be between 0 and"),
        ({"count": "many"}, "whole number"),
        ({"temperature": "hot"}, "between 0 and 2"),
        ({"traits": ["brave", "cowardly"]}, "contradict"),
        ({"traits": ["x" * 100_000]}, "longer than 40 characters"),
        ({"names": "Zo\ud800e"}, r"The names holds a character that is not valid text \(U\+D800"),
        ({"world": NO_WORLD, "setting": "A bay\udfff"}, "The setting text holds a character"),
        ({"traits": ["brave\ud801"]}, "A trait holds a character"),
    ],
)
async def test_bad_input_is_a_clear_error(
    services: Services,
    tmp_path: Path,
    kwargs: dict,
    message: str,  # type: ignore[type-arg]
) -> None:
    handlers = _handlers(services, tmp_path)
    values = {
        "world": _world_name(handlers), "upload": None, "setting": "", "count": 3, "names": "",
        "traits": [], "backend": "procedural", "temperature": 0.9, "seed": 1,
    }  # fmt: skip
    values.update(kwargs)
    with pytest.raises(NPCForgeError, match=message):
        await _all(handlers.generate_npcs(*values.values()))
    # Through the error door the UI wires, it is a Gradio message, not a traceback.
    with pytest.raises(gr.Error, match=message):
        await _all(user_errors(handlers.generate_npcs)(*values.values()))


async def test_unexpected_errors_become_one_line(caplog: pytest.LogCaptureFixture) -> None:
    @user_errors
    async def broken() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(gr.Error, match=r"went wrong on the server \(RuntimeError\)"):
        await broken()
    assert "a bug" in caplog.text  # the details go to the log


async def test_malformed_upload_is_a_clear_error(services: Services, tmp_path: Path) -> None:
    bad = tmp_path / "my_world.json"
    bad.write_text('{"era": 1')
    handlers = _handlers(services, tmp_path)
    with pytest.raises(NPCForgeError, match=r"World file my_world\.json: is not valid JSON"):
        await _all(handlers.generate_npcs(NO_WORLD, str(bad), "", 2, "", [], "procedural", 0.9, 1))


async def test_empty_seed_means_a_random_cast(services: Services, tmp_path: Path) -> None:
    handlers = _handlers(services, tmp_path)
    seeds = set()
    for _ in range(3):
        *_, (_, cast, _, _, _) = await _all(
            handlers.generate_npcs(
                _world_name(handlers), None, "", 1, "", [], "procedural", 0.9, ""
            )
        )
        seeds.add(cast["seed"])
    assert len(seeds) == 3


async def test_stop_keeps_every_finished_npc_and_gives_the_file(
    tmp_path: Path, make_services: MakeServices
) -> None:
    settings = make_settings(tmp_path, backend="gated", library_autosave=True)
    registry = BackendRegistry()
    gate = GateBackend(open_for=3)
    registry.register("gated", lambda settings, context: gate)
    services = make_services(settings, registry)
    handlers = _handlers(services, tmp_path)
    updates = []
    async for update in handlers.generate_npcs(
        _world_name(handlers), None, "", 10, "", [], "gated", 0.9, 7
    ):
        updates.append(update)
        view = update[4]
        if view.run is not None and sum(n is not None for n in view.npcs) == 3:
            handlers.stop(view)  # what the Stop button does
    html, cast, file, status, view = updates[-1]
    assert html.count('class="npc-card"') == 3 and len(cast["npcs"]) == 3
    assert status.startswith("Stopped: **3/10**") and "3 saved to the library" in status
    assert file is not None and len(json.loads(Path(file).read_text())["npcs"]) == 3
    assert gate.cancelled == 1 and gate.in_flight == 0  # the 4th was cancelled, not left running
    assert await services.library.count() == 3


async def test_failed_npcs_show_and_retry_fills_them(
    openai_services: Services, openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    handlers = _handlers(openai_services, tmp_path)
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
    openai_services: Services, openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    handlers = _handlers(openai_services, tmp_path)
    world = _world_name(handlers)
    args = (world, None, "", 2, "", [], "openai", 0.9, 3)
    await _all(handlers.generate_npcs(*args))
    html = (await _all(handlers.generate_npcs(*args)))[-1][0]
    assert html.count(">cached<") == 2 and len(openai_server.requests) == 2
    html = (await _all(handlers.generate_npcs(*args, use_cache=False)))[-1][0]
    assert ">cached<" not in html and len(openai_server.requests) == 4


def test_world_list_refreshes(services: Services, tmp_path: Path) -> None:
    handlers = _handlers(services, tmp_path)
    update = handlers.world_dropdown("No Such World")
    assert update["value"] == NO_WORLD and update["choices"] == handlers.world_choices()


def test_personalities_browse_filters(services: Services) -> None:
    handlers = PersonalityHandlers(services.assets.personalities)
    data = services.assets.personalities()
    trait = next(t for t in data.traits.values() if t.opposite)
    traits, _, summary = handlers.browse(trait.name, "all")
    names = [row[0] for row in traits["value"]]
    assert trait.name in names and trait.opposite in names  # matched by name and by opposite
    only = handlers.browse("", trait.polarity)[0]["value"]
    assert {row[1] for row in only} == {trait.polarity}
    assert f"of {len(data.traits)} traits" in summary


@pytest.mark.server
@pytest.mark.slow
def test_launched_app_streams_every_card_over_the_api(tmp_path: Path) -> None:
    """As the README shows: gradio_client's submit sees one update per NPC, and the
    library endpoints take any NPC id and a world filter, through the API."""
    from gradio_client import Client

    from app.ui.app import serve, shutdown

    services = Services(make_settings(tmp_path, library_autosave=True))
    demo = serve(services, host="127.0.0.1", port=free_port())
    try:
        client = Client(demo.local_url, verbose=False)
        world = services.worlds.names()[0]
        job = client.submit(
            world, None, "", 12, "Maud", ["curious"], "procedural", 0.9, "11",
            api_name="/generate_npcs",
        )  # fmt: skip
        updates = list(job)
        html, cast, file, status = job.result()
        ready = [len(update[1]["npcs"]) for update in updates]
        assert ready[0] == 0 and all(n in ready for n in range(1, 13))  # card by card
        assert len(cast["npcs"]) == 12 and cast["npcs"][0]["name"] == "Maud"
        assert html.count('class="npc-card"') == 12 and Path(file).is_file()
        assert "12/12" in status and "12 saved to the library" in status
        npc_id = cast["npcs"][3]["id"]
        card, _ = client.predict(npc_id, "backstory", api_name="/library_get")
        assert cast["npcs"][3]["name"] in card
        _, _, found = client.predict("a person", 5, world, "", api_name="/library_search")
        assert found.startswith("5 closest")
        with pytest.raises(Exception, match="less than minimum value 1"):
            client.predict(
                world, None, "", 0, "", [], "procedural", 0.9, "1", api_name="/generate_npcs"
            )
        names = client.view_api(return_format="dict", print_info=False)
        assert not names["unnamed_endpoints"]
        assert not [name for name in names["named_endpoints"] if "lambda" in name]
    finally:
        shutdown(services, demo)
