"""The Dialogue tab: handlers called directly, and the launched app through gradio_client."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from app.errors import InputError
from app.ui.dialogue_tab import NO_WORLD, DialogueHandlers, render_lines
from app.wiring import Services
from tests import casts
from tests.conftest import MakeServices, make_settings
from tests.threaded_server import free_port


async def _app(tmp_path: Path, make_services: MakeServices) -> tuple[Services, list[str]]:
    services = make_services(make_settings(tmp_path, library_autosave=True))
    world = services.worlds.resolve("saltmere", None).world
    outcomes = await casts.outcomes(services, world, 3, seed=4)
    npcs = [o.npc for o in outcomes if o.npc is not None]
    await services.library.save(npcs)
    return services, [npc.id for npc in npcs]


def _handlers(services: Services, tmp_path: Path) -> DialogueHandlers:
    return DialogueHandlers(
        services.dialogue,
        services.dialogue_planner,
        services.library,
        tmp_path / "exports",
        services.backends.names(),
    )


async def test_generate_lock_regenerate_export(tmp_path: Path, make_services: MakeServices) -> None:
    services, ids = await _app(tmp_path, make_services)
    handlers = _handlers(services, tmp_path)
    picker, worlds, status = await handlers.find("", [])
    assert {value for _, value in picker["choices"]} == set(ids)
    assert worlds["choices"][1:] == ["Saltmere"]
    updates = [
        u
        async for u in handlers.generate(
            ids[:1], "Saltmere", "greets the player at dawn\nplayer steals", ["rumour"], 2, "auto"
        )
    ]
    html, lines, status, locks, pick, state, _ = updates[-1]
    assert len(lines) == 3 * 4 * 2 and all(line["line"] for line in lines)  # the world's 3
    assert "24/24" in status and "0 cached" in status and "dlg-new" in html
    assert len(pick["choices"]) == 24 and locks["value"] == []
    assert updates[0][1][0]["line"] is None and "writing" in updates[0][0]  # placeholders first
    # Lock one line, regenerate another: the locked one stays, the other changes.
    keep, change = lines[0], lines[1]
    *_, again = [u async for u in handlers.generate(
        ids[:1], "Saltmere", "greets the player at dawn\nplayer steals", ["rumour"], 2,
        "auto", [keep["key"]], state,
    )]  # fmt: skip
    assert "24 cached" in again[2] and again[1][0]["line"] == keep["line"]
    html, lines, status, state = await handlers.regenerate(
        change["key"], "auto", [keep["key"]], again[5]
    )
    assert lines[1]["line"] != change["line"] and lines[1]["key"] == change["key"]
    assert lines[0] == again[1][0] and "dlg-locked" in html
    with pytest.raises(InputError, match="locked"):
        await handlers.regenerate(keep["key"], "auto", [keep["key"]], state)
    path = await handlers.export(state, "CSV (localisation table)")
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    assert [row["key"] for row in rows] == [line["key"] for line in lines]
    assert rows[1]["line"] == lines[1]["line"]


async def test_stop_keeps_the_finished_lines(tmp_path: Path, make_services: MakeServices) -> None:
    services, ids = await _app(tmp_path, make_services)
    handlers = _handlers(services, tmp_path)
    run = handlers.generate(ids, NO_WORLD, "", ["greeting", "barter"], 3, "auto")
    first = await anext(run)
    assert all(line["line"] is None for line in first[1])  # 3 NPCs x 6 situations x 3
    handlers.stop(first[6])
    *_, last = [u async for u in run]
    done = last[1]
    assert 0 < len(done) < 54 and all(line["line"] for line in done)
    assert last[2].startswith("Stopped:") and last[5] == done


async def test_bad_input_says_what_to_do(tmp_path: Path, make_services: MakeServices) -> None:
    services, ids = await _app(tmp_path, make_services)
    handlers = _handlers(services, tmp_path)
    with pytest.raises(InputError, match="at least one NPC"):
        [u async for u in handlers.generate([], NO_WORLD, "hello", [], 1, "auto")]
    with pytest.raises(InputError, match="at least one situation"):
        [u async for u in handlers.generate(ids, NO_WORLD, "\n# only a comment\n", [], 1, "auto")]
    with pytest.raises(InputError, match="No NPC with id 'npc-nobody'"):
        [u async for u in handlers.generate(["npc-nobody"], NO_WORLD, "hi", [], 1, "auto")]
    with pytest.raises(InputError, match="nothing to export"):
        await handlers.export([], "Ink")


def test_rendered_lines_are_escaped_and_grouped() -> None:
    line = {
        "key": "k1", "npc_id": "n1", "npc_name": "<b>Maud</b>", "situation": "greets <i>",
        "variant": 1, "line": "<script>x</script>", "cached": True, "error": None,
    }  # fmt: skip
    html = render_lines([line, {**line, "key": "k2", "variant": 2, "line": None, "error": "no"}])
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;Maud" in html
    assert html.count("<section") == 1 and html.count("<h4") == 1
    assert "dlg-cached" in html and "dlg-failed" in html


@pytest.mark.server
@pytest.mark.slow
def test_generate_dialogue_over_the_api(tmp_path: Path) -> None:
    """As the README shows: generate a cast, then its dialogue, through gradio_client."""
    from gradio_client import Client

    from app.ui.app import serve, shutdown

    services = Services(make_settings(tmp_path, library_autosave=True))
    demo = serve(services, host="127.0.0.1", port=free_port())
    try:
        client = Client(demo.local_url, verbose=False)
        *_, (_, cast, _, _) = client.submit(
            "Saltmere", None, "", 2, "", [], "procedural", 0.9, "4", True,
            api_name="/generate_npcs",
        )  # fmt: skip
        ids = [npc["id"] for npc in cast["npcs"]]
        html, lines, status, *_ = client.predict(
            ids, "(no world: only the NPCs picked)", "greets the player at dawn",
            ["barter: haggles over the price of an item"], 2, "auto", [],
            api_name="/generate_dialogue",
        )  # fmt: skip
        assert len(lines) == 2 * 2 * 2 and all(line["line"] for line in lines)
        assert "8/8" in status and html.count('class="dlg-line"') == 8
        path = client.predict("Yarn Spinner", api_name="/dialogue_export")
        assert Path(path).read_text(encoding="utf-8").count("title:") == 4
    finally:
        shutdown(services, demo)


async def test_a_designer_writes_lines_only_with_the_backends_allowed(
    tmp_path: Path, make_services: MakeServices
) -> None:
    from types import SimpleNamespace

    settings = make_settings(
        tmp_path,
        backend="auto",
        library_autosave=True,
        openai_base_url="http://127.0.0.1:9/v1",
        openai_api_key="sk-owner",
        auth=("ann:pw", "root:pw:admin"),
    )
    services = make_services(settings)
    world = services.worlds.resolve("saltmere", None).world
    [outcome] = await casts.outcomes(services, world, 1, seed=4, backend="procedural")
    assert outcome.npc is not None
    bobs = outcome.npc.owned_by("bob")
    await services.library.save([outcome.npc, bobs])
    handlers = DialogueHandlers(
        services.dialogue, services.dialogue_planner, services.library, tmp_path,
        services.backends.names(), services.admission,
    )  # fmt: skip
    ann = SimpleNamespace(username="ann", client=SimpleNamespace(host="10.0.0.2"))
    form = ([outcome.npc.id], NO_WORLD, "greets the player", [], 1)
    with pytest.raises(InputError, match="may use the backends procedural"):
        [u async for u in handlers.generate(*form, "openai", request=ann)]  # type: ignore[arg-type]
    *_, last = [u async for u in handlers.generate(*form, "auto", request=ann)]  # type: ignore[arg-type]
    assert "from `procedural:v1`" in last[2] and last[1][0]["line"]
    with pytest.raises(InputError, match="No NPC with id"):  # another designer's NPC
        [u async for u in handlers.generate([bobs.id], *form[1:], "auto", request=ann)]  # type: ignore[arg-type]
    picker, *_ = await handlers.find("", [], request=ann)  # type: ignore[arg-type]
    assert [value for _, value in picker["choices"]] == [outcome.npc.id]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ((["a\udfffb"], "", "hi", [], 1, "auto"), "not valid text"),
        (([], "\ud800", "hi", [], 1, "auto"), "not valid text"),
        ((["npc-x"], "", {"a": 1}, [], 1, "auto"), "The situations must be text"),
        ((["npc-x"], "", "hi", [3], 1, "auto"), "must be a list of texts"),
        ((["npc-x"], "", "hi\ud800", [], 1, "auto"), "not valid text"),
        ((["npc-x"], [], "hi", [], 1, "auto"), "The world must be text"),
    ],
)
async def test_odd_api_input_is_refused_with_a_message(
    tmp_path: Path, make_services: MakeServices, form: tuple[object, ...], message: str
) -> None:
    services = make_services(make_settings(tmp_path))
    handlers = _handlers(services, tmp_path)
    with pytest.raises(InputError, match=message):
        [u async for u in handlers.generate(*form)]  # type: ignore[arg-type]
