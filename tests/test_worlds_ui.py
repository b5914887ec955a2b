"""The World Builder tab's handlers, called directly, and its endpoints over the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.errors import InputError, WorldFileError
from app.models import World
from app.ui.worlds_tab import BLANK, WorldsHandlers
from app.wiring import Services
from tests.casts import outcomes
from tests.conftest import MakeServices, make_settings

PITCH = "a lighthouse island in the Outer Hebrides, 1890"


def _handlers(services: Services, tmp_path: Path) -> WorldsHandlers:
    return WorldsHandlers(services.world_builder, tmp_path / "exports")


async def test_a_pitch_becomes_a_form_that_saves_as_a_user_world(
    services: Services, tmp_path: Path
) -> None:
    handlers = _handlers(services, tmp_path)
    name, era, time, detail, rules, status, preview, loaded = await handlers.draft(
        PITCH, "auto", ""
    )
    assert name == "Lighthouse Island in the Outer Hebrides, 1890" and time == "1890"
    assert "Drafted by `procedural:v1`" in status and "✓ A valid world" in status
    assert loaded == ""  # a draft is not saved until the designer saves it
    assert [row[0] for row in detail][:3] == ["Overview", "Places", "People"]
    assert json.loads(preview)["guardrails"]["period"].startswith("Keep to the Victorian age")
    saved, loaded, picker, listing = await handlers.save(name, era, time, detail, rules)
    assert saved.startswith("✓ Saved") and loaded == name
    assert name in picker["choices"] and picker["value"] == name
    assert f"<b>Saved</b>: {name}" in listing.replace("&#x27;", "'")
    assert services.worlds.get(name).detail == {
        "_".join(row[0].lower().split()): row[1] for row in detail
    }
    with pytest.raises(InputError, match="already exists"):
        await handlers.save(name, era, time, detail, rules)
    detail[0][1] = "A rock, a light, two keepers."
    await handlers.save_over(name, era, time, detail, rules)
    assert services.worlds.get(name).detail["overview"] == "A rock, a light, two keepers."  # type: ignore[index]


async def test_validation_says_what_to_fix_as_you_type(services: Services, tmp_path: Path) -> None:
    handlers = _handlers(services, tmp_path)
    status, preview = handlers.check(
        "Gull Rock", "", "1890", [["Overview", ""], ["", "orphan text"]], [["tone", "bleak"]]
    )
    assert preview == ""
    assert "Era is empty" in status
    assert "Detail section 'Overview': write its text" in status
    assert "Detail section row 2: give it a name" in status
    api_table = {"headers": ["section", "text"], "data": [["Daily life", "Fog."]]}
    status, preview = handlers.check("Gull Rock", "Victorian", "1890", api_table, [])
    assert "✓ A valid world: 1 detail sections" in status
    assert json.loads(preview)["detail"] == {"daily_life": "Fog."}
    assert handlers.add_row([["a", "b"]]) == [["a", "b"], ["", ""]]
    assert handlers.remove_row([["a", "b"], ["", ""]]) == [["a", "b"]]


async def test_shipped_worlds_load_as_read_only_starting_points(
    services: Services, tmp_path: Path
) -> None:
    handlers = _handlers(services, tmp_path)
    shipped = services.worlds.names()[0]
    name, *_, status, _, loaded = await handlers.load(shipped)
    assert name == shipped and loaded == "" and "stays read-only" in status
    with pytest.raises(InputError, match="Load a saved world first"):
        await handlers.rename(loaded, "Mine")
    form = await handlers.load(shipped)
    with pytest.raises(InputError, match="stays read-only"):
        await handlers.save(*form[:5])
    assert (await handlers.load(BLANK))[0] == ""


async def test_upload_download_rename_delete(services: Services, tmp_path: Path) -> None:
    handlers = _handlers(services, tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"era": "x"}')
    with pytest.raises(WorldFileError, match="'time_period' is missing"):
        await handlers.upload(str(bad))
    good = tmp_path / "gull_rock.json"
    world = World(
        name="Gull Rock", era="Victorian", time_period="1890", detail={"overview": "A rock."}
    )
    good.write_text(world.model_dump_json())
    form = await handlers.upload(str(good))
    assert form[0] == "Gull Rock" and "Loaded gull_rock.json" in form[5]
    path = Path(await handlers.download(*form[:5]))
    assert path.name == "gull_rock.json" and World.model_validate_json(path.read_bytes()) == world
    await handlers.save(*form[:5])
    name, status, loaded, picker, _ = await handlers.rename("Gull Rock", "Gannet Rock")
    assert name == loaded == "Gannet Rock" and "Gannet Rock" in picker["choices"]
    with pytest.raises(InputError, match="Tick 'Yes, delete it'"):
        await handlers.delete(loaded, False)
    status, loaded, picker, _ = await handlers.delete("Gannet Rock", True)
    assert status.startswith("Deleted **Gannet Rock**") and loaded == ""
    assert "Gannet Rock" not in picker["choices"]


async def test_renaming_a_world_moves_its_cast_and_deleting_says_who_stays(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services = make_services(make_settings(tmp_path, library_autosave=True))
    handlers = _handlers(services, tmp_path)
    world = World(name="Gull Rock", era="Victorian", time_period="1890", detail="A rock.")
    await services.world_builder.save(world)
    cast = [o.npc for o in await outcomes(services, world, 3) if o.npc is not None]
    await services.library.save(cast)
    _, status, *_ = await handlers.rename("Gull Rock", "Gannet Rock")
    assert "its 3 NPCs in the library moved with it" in status
    assert {npc.world for npc in await services.library.list_npcs()} == {"Gannet Rock"}
    status, *_ = await handlers.delete("Gannet Rock", True)
    assert "Its 3 NPCs stay in the library" in status


async def test_a_free_text_cast_lands_in_its_own_library_world(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services = make_services(make_settings(tmp_path, library_autosave=True))
    for setting in (PITCH, "Silk Road caravan town, 1250"):
        resolved = services.worlds.resolve(None, setting)
        plan = await services.cast.plan(_request(resolved.world))
        async with services.cast.run(plan) as run:
            async for _ in run.outcomes():
                pass
            await run.saved()
    assert set(await services.library.worlds()) == {
        "Lighthouse Island in the Outer Hebrides, 1890",
        "Silk Road Caravan Town, 1250",
    }
    assert "Silk Road Caravan Town, 1250" in services.worlds.user_worlds()


def _request(world: World):  # type: ignore[no-untyped-def]
    from tests.casts import request

    return request(world, 2)


async def test_a_signed_in_designer_drafts_only_on_allowed_backends(
    tmp_path: Path, make_services: MakeServices
) -> None:
    settings = make_settings(
        tmp_path,
        backend="auto",
        openai_base_url="http://127.0.0.1:9/v1",
        openai_api_key="sk-owner",
        auth=("ann:pw",),
    )
    services = make_services(settings)
    handlers = WorldsHandlers(services.world_builder, tmp_path / "x", services.admission)

    class Request:
        username = "ann"
        client = None

    with pytest.raises(InputError, match="may use the backends procedural"):
        await handlers.draft(PITCH, "openai", "", Request())  # type: ignore[arg-type]
    form = await handlers.draft(PITCH, "auto", "", Request())  # type: ignore[arg-type]
    assert "Drafted by `procedural:v1`" in form[5]  # auto would have been openai


async def test_wrong_types_through_the_api_get_a_message(
    services: Services, tmp_path: Path
) -> None:
    handlers = _handlers(services, tmp_path)
    with pytest.raises(InputError, match="The world's name must be text, not list"):
        await handlers.load([["", "o"]])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="The era must be text, not int"):
        handlers.check("Bay", 7, "1890", [], [])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="A table must be a list of rows"):
        handlers.check("Bay", "Era", "1890", 5, [])
    with pytest.raises(InputError, match="The pitch must be text"):
        await handlers.draft({"a": 1}, "auto", "")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="The new name must be text"):
        await handlers.rename("Bay", 3)  # type: ignore[arg-type]
