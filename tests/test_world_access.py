"""Saved worlds belong to someone: the owner and admins change them, editors they
grant save over and rename, everyone else reads and uses them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.errors import InputError
from app.models import World
from app.services.library import EVERYONE, Viewer
from app.services.world_access import TEAM, WorldGrant
from app.services.worlds import WorldService
from app.ui.worlds_tab import WorldsHandlers
from app.wiring import Services
from tests.casts import outcomes
from tests.conftest import WORLDS_DIR, MakeServices, make_settings
from utils.cached_json import JSONFileCache

ANN, BOB = Viewer("ann", sees_all=False), Viewer("bob", sees_all=False)
ADMIN = Viewer("root", sees_all=True)
ACCOUNTS = ("ann:pw-a", "bob:pw-b", "root:pw-r:admin")


def _service(tmp_path: Path) -> WorldService:
    """A worlds service on ``tmp_path`` (a second one is another process or a restart)."""
    saved = tmp_path / "data" / "worlds"
    return WorldService(WORLDS_DIR, saved, JSONFileCache(), max_setting_chars=1000)


def _world(name: str = "Gull Rock", detail: str = "A rock in the sea.") -> World:
    return World(name=name, era="Victorian", time_period="1890", detail=detail)


class Request:
    """What Gradio passes a handler: the signed-in user."""

    def __init__(self, username: str) -> None:
        self.username = username
        self.client = None


def test_the_owner_changes_their_world_and_another_designer_is_refused(tmp_path: Path) -> None:
    worlds = _service(tmp_path)
    worlds.save(_world(), by=ANN, owner="ann")
    worlds.save(_world(detail="A rock, a light."), replace=True, by=ANN)
    assert worlds.get("Gull Rock").detail == "A rock, a light."
    for change in (
        lambda: worlds.save(_world(detail="Bob's rock."), replace=True, by=BOB),
        lambda: worlds.rename("Gull Rock", "Bob Rock", by=BOB),
    ):
        with pytest.raises(InputError, match="is ann's world: only ann, an editor they grant"):
            change()
    for change in (
        lambda: worlds.delete("Gull Rock", by=BOB),
        lambda: worlds.grant("Gull Rock", "bob", by=BOB),
    ):
        with pytest.raises(InputError, match=r"Only ann \(its owner\) or an admin may"):
            change()
    with pytest.raises(InputError, match=r"choose another name \(it is not yours to save over"):
        worlds.save(_world(detail="Bob's rock."), by=BOB, owner="bob")
    assert worlds.get("Gull Rock").detail == "A rock, a light."  # nothing changed
    assert worlds.get("Gull Rock").name == "Gull Rock"


def test_a_grant_lets_an_editor_save_over_and_rename_and_a_revoke_stops_them(
    tmp_path: Path,
) -> None:
    worlds = _service(tmp_path)
    worlds.save(_world(), by=ANN, owner="ann")
    assert worlds.grant("Gull Rock", "bob", by=ANN) == WorldGrant("ann", ("bob",))
    assert worlds.grant("Gull Rock", "bob", by=ANN) == WorldGrant("ann", ("bob",))  # once
    worlds.save(_world(detail="Bob's rock."), replace=True, by=BOB)
    worlds.rename("Gull Rock", "Gannet Rock", by=BOB)
    assert worlds.get("Gannet Rock").detail == "Bob's rock."
    # Editors may not delete it or pass it on: a grant lends a world, it does not give it away.
    for change in (
        lambda: worlds.delete("Gannet Rock", by=BOB),
        lambda: worlds.grant("Gannet Rock", "cy", by=BOB),
        lambda: worlds.revoke("Gannet Rock", "bob", by=BOB),
    ):
        with pytest.raises(
            InputError, match="You may save over and rename 'Gannet Rock'; only ann"
        ):
            change()
    assert worlds.revoke("Gannet Rock", "bob", by=ANN) == WorldGrant("ann")
    with pytest.raises(InputError, match="is ann's world"):
        worlds.save(_world("Gannet Rock", "Bob again."), replace=True, by=BOB)
    with pytest.raises(
        InputError, match=r"bob is not an editor of 'Gannet Rock' \(editors: nobody"
    ):
        worlds.revoke("Gannet Rock", "bob", by=ANN)
    with pytest.raises(InputError, match="ann owns 'Gannet Rock' already"):
        worlds.grant("Gannet Rock", "ann", by=ANN)


def test_an_admin_changes_every_saved_world_and_old_ones_are_the_teams(tmp_path: Path) -> None:
    worlds = _service(tmp_path)
    worlds.save(_world(), by=ANN, owner="ann")
    worlds.grant("Gull Rock", "bob", by=ADMIN)
    worlds.rename("Gull Rock", "Gannet Rock", by=ADMIN)
    assert worlds.grant_of("Gannet Rock") == WorldGrant("ann", ("bob",))  # an admin keeps the owner
    # A world saved before owners existed has no record: the team's, changed by admins only.
    worlds.save(_world("Old Harbour"))
    assert worlds.grant_of("Old Harbour") == TEAM
    with pytest.raises(InputError, match="'Old Harbour' belongs to the team: only an admin may"):
        worlds.rename("Old Harbour", "Mine", by=ANN)
    worlds.save(_world("Old Harbour", "Rebuilt."), replace=True, by=ADMIN)
    worlds.delete("Old Harbour", by=ADMIN)
    shipped = worlds.names()[0]
    with pytest.raises(InputError, match="is a shipped world and stays read-only"):
        worlds.grant(shipped, "bob", by=ADMIN)


def test_grants_survive_a_restart_and_count_at_once_in_another_process(tmp_path: Path) -> None:
    app, cli = _service(tmp_path), _service(tmp_path)  # two processes on one data directory
    app.save(_world(), by=ANN, owner="ann")
    cli.grant("Gull Rock", "bob", by=EVERYONE)
    app.save(_world(detail="Bob's rock."), replace=True, by=BOB)  # the app sees it at once
    restarted = _service(tmp_path)
    assert restarted.grant_of("Gull Rock") == WorldGrant("ann", ("bob",))
    cli.revoke("Gull Rock", "bob", by=EVERYONE)
    with pytest.raises(InputError, match="is ann's world"):
        restarted.rename("Gull Rock", "Bob Rock", by=BOB)


def test_grants_from_many_processes_at_once_are_all_kept(tmp_path: Path) -> None:
    """Each grant is a read-modify-write of one record: the worlds' file lock keeps
    every one, whichever order they run in."""
    from concurrent.futures import ThreadPoolExecutor

    _service(tmp_path).save(_world(), by=ANN, owner="ann")
    users = [f"user{number}" for number in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:  # a service each, as separate processes
        list(pool.map(lambda user: _service(tmp_path).grant("Gull Rock", user, by=ANN), users))
    assert sorted(_service(tmp_path).grant_of("Gull Rock").editors) == sorted(users)


def test_access_stays_out_of_the_world_file_moves_on_rename_and_goes_on_delete(
    tmp_path: Path,
) -> None:
    worlds = _service(tmp_path)
    path = worlds.save(_world(), by=ANN, owner="ann")
    worlds.grant("Gull Rock", "bob", by=ANN)
    assert "owner" not in json.loads(path.read_bytes()) and b"bob" not in path.read_bytes()
    records = tmp_path / "data" / "world_access"
    assert [p.name for p in records.iterdir()] == ["gull_rock.json"]
    worlds.rename("Gull Rock", "Gannet Rock", by=ANN)
    assert [p.name for p in records.iterdir()] == ["gannet_rock.json"]
    assert not path.exists()
    worlds.delete("Gannet Rock", by=ANN)
    assert list(records.iterdir()) == []
    # A new world where a deleted one was starts with its own owner, no old editors.
    worlds.save(_world("Gannet Rock"), by=BOB, owner="bob")
    assert worlds.grant_of("Gannet Rock") == WorldGrant("bob")


def test_a_broken_record_makes_the_world_the_teams_never_open(tmp_path: Path) -> None:
    worlds = _service(tmp_path)
    worlds.save(_world(), by=ANN, owner="ann")
    record = tmp_path / "data" / "world_access" / "gull_rock.json"
    for broken in (b"{not json", b'{"owner": 3}', b'["ann"]'):
        record.write_bytes(broken)
        assert worlds.grant_of("Gull Rock") == TEAM
        with pytest.raises(InputError, match="belongs to the team"):
            worlds.save(_world(), replace=True, by=ANN)


def test_a_cast_world_is_the_teams_and_never_replaces_a_world_with_the_same_file_name(
    tmp_path: Path,
) -> None:
    worlds = _service(tmp_path)
    worlds.save(_world("Kelp-Haven", "Ann's haven."), by=ANN, owner="ann")
    worlds.remember(_world("Kelp Haven", "A cast's haven."))  # kelp_haven.json as well
    assert worlds.get("Kelp-Haven").detail == "Ann's haven."
    assert worlds.grant_of("Kelp-Haven") == WorldGrant("ann")
    assert worlds.grant_of("Kelp Haven") == TEAM


# -- the cast follows a rename, never someone else's NPCs -------------------------------
async def _cast_of(services: Services, world: World, owners: list[str | None]) -> None:
    made = [o.npc for o in await outcomes(services, world, len(owners)) if o.npc is not None]
    await services.library.save(
        [npc.owned_by(owner) for npc, owner in zip(made, owners, strict=True)]
    )


async def test_a_rename_that_would_move_other_users_npcs_is_refused_an_admins_moves_all(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services = make_services(make_settings(tmp_path, library_autosave=True, auth=ACCOUNTS))
    builder = services.world_builder
    world = _world()
    await builder.save(world, by=ANN, owner="ann")
    await builder.grant("Gull Rock", "bob", by=ANN)
    await _cast_of(services, world, ["ann", "ann"])
    # bob may rename ann's world, but not move ann's NPCs: refused, nothing changes.
    with pytest.raises(InputError, match="2 of the 2 NPCs of 'Gull Rock' belong to other users"):
        await builder.rename("Gull Rock", "Gannet Rock", by=BOB)
    _, moved = await builder.rename("Gull Rock", "Gannet Rock", by=ANN)  # all hers: they move
    assert moved == 2
    await _cast_of(services, world.model_copy(update={"name": "Gannet Rock"}), ["bob", None])
    with pytest.raises(InputError, match="2 of the 4 NPCs of 'Gannet Rock' belong to other"):
        await builder.rename("Gannet Rock", "Ann Rock", by=ANN)
    assert services.worlds.grant_of("Gannet Rock").owner == "ann"
    assert {npc.world for npc in await services.library.list_npcs()} == {"Gannet Rock"}
    _, moved = await builder.rename("Gannet Rock", "Skerry", by=ADMIN)  # an admin moves them all
    npcs = await services.library.list_npcs()
    assert moved == 4 and {npc.world for npc in npcs} == {"Skerry"}
    assert sorted(str(npc.owner) for npc in npcs) == ["None", "ann", "ann", "bob"]  # owners kept


async def test_only_known_accounts_get_a_grant_and_without_sign_in_grants_are_refused(
    tmp_path: Path, make_services: MakeServices
) -> None:
    signed = make_services(make_settings(tmp_path / "a", auth=ACCOUNTS)).world_builder
    await signed.save(_world(), by=ANN, owner="ann")
    with pytest.raises(InputError, match=r"no account called 'cy' \(accounts: ann, bob, root\)"):
        await signed.grant("Gull Rock", "cy", by=ANN)
    with pytest.raises(InputError, match="--auth USER:PASS"):
        await signed.grant("Gull Rock", "cy", by=ANN)
    with pytest.raises(InputError, match="Only ann"):  # no account list for bob
        await signed.grant("Gull Rock", "cy", by=BOB)
    open_app = make_services(make_settings(tmp_path / "b")).world_builder
    await open_app.save(_world())
    with pytest.raises(InputError, match="Nobody signs in to this app, so everyone may change"):
        await open_app.grant("Gull Rock", "bob")
    await open_app.rename("Gull Rock", "Gannet Rock")  # without sign-in all is as before
    handlers = WorldsHandlers(open_app, tmp_path / "x")
    assert await handlers.access("Gannet Rock") == ("", {"visible": False, "__type__": "update"})


# -- the World Builder tab's handlers ----------------------------------------------------
async def test_the_tab_shows_the_owner_line_and_the_editors_field_to_who_may_grant(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services = make_services(make_settings(tmp_path, auth=ACCOUNTS))
    handlers = WorldsHandlers(services.world_builder, tmp_path / "x", services.admission)
    ann, bob, root = Request("ann"), Request("bob"), Request("root")
    form = ("Gull Rock", "Victorian", "1890", [["Overview", "A rock."]], [])
    status, loaded, *_ = await handlers.save(*form, request=ann)  # type: ignore[arg-type]
    assert status.startswith("✓ Saved") and loaded == "Gull Rock"
    line, box = await handlers.access(loaded, ann)  # type: ignore[arg-type]
    assert "**Owner:** ann · **Editors:** none" in line and box["visible"] is True
    line, box = await handlers.access(loaded, bob)  # type: ignore[arg-type]
    assert "Read-only for you" in line and "Ask ann to grant you editing" in line
    assert box["visible"] is False
    *_, note, _, loaded = await handlers.load("Gull Rock", bob)  # type: ignore[arg-type]
    assert "read-only for you" in note and loaded == "Gull Rock"
    with pytest.raises(InputError, match="is ann's world"):
        await handlers.save_over(*form, request=bob)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"Only ann \(its owner\) or an admin may grant"):
        await handlers.grant(loaded, "bob", bob)  # type: ignore[arg-type]
    status, line = await handlers.grant(loaded, "bob", ann)  # type: ignore[arg-type]
    assert "**bob** may now save over and rename" in status and "**Editors:** bob" in line
    line, box = await handlers.access(loaded, bob)  # type: ignore[arg-type]
    assert "You may save over and rename 'Gull Rock'; only ann" in line
    assert box["visible"] is False
    name, status, loaded, *_ = await handlers.rename(loaded, "Gannet Rock", bob)  # type: ignore[arg-type]
    assert name == loaded == "Gannet Rock" and status.startswith("✓ Renamed")
    with pytest.raises(InputError, match=r"only ann \(its owner\) or an admin may delete"):
        await handlers.delete(loaded, True, bob)  # type: ignore[arg-type]
    status, line = await handlers.revoke(loaded, "bob", root)  # type: ignore[arg-type]
    assert "**bob** may no longer change" in status and "**Editors:** none" in line
    with pytest.raises(InputError, match="is ann's world"):
        await handlers.rename(loaded, "Bob Rock", bob)  # type: ignore[arg-type]
    assert "Gannet Rock (owner ann)" in (await handlers.refresh())[1]
    await handlers.delete(loaded, True, ann)  # type: ignore[arg-type]
    line, box = await handlers.access(loaded, bob)  # type: ignore[arg-type]
    assert "There is no saved world called 'Gannet Rock'" in line and box["visible"] is False


# -- over the API, signed in -------------------------------------------------------------
@pytest.mark.server
@pytest.mark.slow
def test_two_designers_and_an_admin_over_the_api(tmp_path: Path) -> None:
    from gradio_client import Client

    from app.ui.app import serve, shutdown
    from tests.threaded_server import free_port

    def start() -> tuple[Services, object, dict[str, Client]]:
        services = Services(make_settings(tmp_path, auth=ACCOUNTS))
        demo = serve(services, host="127.0.0.1", port=free_port())
        clients = {
            user: Client(demo.local_url, auth=(user, password), verbose=False)
            for user, password in (("ann", "pw-a"), ("bob", "pw-b"), ("root", "pw-r"))
        }
        return services, demo, clients

    detail = {"headers": ["section", "text"], "data": [["overview", "A rock in the sea."]]}
    rules = {"headers": ["guardrail", "text"], "data": [["technology", "no steam engines"]]}
    form = ("Gull Rock", "Victorian", "1890", detail, rules)
    services, demo, users = start()
    try:
        status, loaded, *_ = users["ann"].predict(*form, api_name="/world_save")
        assert status.startswith("✓ Saved **Gull Rock**") and loaded == "Gull Rock"
        users["ann"].predict(*form, api_name="/world_save_over")  # the owner edits
        for call, args in [
            ("/world_rename", ("Gull Rock", "Gannet Rock")),
            ("/world_save_over", form),
            ("/worlds_grant", ("Gull Rock", "bob")),
        ]:
            with pytest.raises(Exception, match="ann"):  # "is ann's world" / "Only ann"
                users["bob"].predict(*args, api_name=call)
        with pytest.raises(Exception, match="no account called 'cy'"):
            users["ann"].predict("Gull Rock", "cy", api_name="/worlds_grant")
        status, line = users["ann"].predict("Gull Rock", "bob", api_name="/worlds_grant")
        assert "**bob** may now save over" in status and "**Editors:** bob" in line
        users["bob"].predict(*form, api_name="/world_save_over")
        assert users["bob"].predict("Gull Rock", api_name="/worlds_access") == {
            "world": "Gull Rock", "owner": "ann", "editors": ["bob"],
            "you_may": ["save over", "rename"],
        }  # fmt: skip
        with pytest.raises(Exception, match="no saved world called 'Nowhere'"):
            users["bob"].predict("Nowhere", api_name="/worlds_access")
    finally:
        shutdown(services, demo)
    services, demo, users = start()  # a restart keeps the grant
    try:
        name, *_ = users["bob"].predict("Gull Rock", "Gannet Rock", api_name="/world_rename")
        assert name == "Gannet Rock"
        with pytest.raises(Exception, match="only ann"):
            users["bob"].predict("Gannet Rock", True, api_name="/world_delete")
        users["root"].predict("Gannet Rock", "bob", api_name="/worlds_revoke")
        with pytest.raises(Exception, match="is ann's world"):
            users["bob"].predict("Gannet Rock", "Bob Rock", api_name="/world_rename")
        listing = users["bob"].predict("Gannet Rock", api_name="/worlds_list")[1]
        assert "Gannet Rock (owner ann)" in listing
        users["ann"].predict("Gannet Rock", True, api_name="/world_delete")
    finally:
        shutdown(services, demo)


# -- the CLI -----------------------------------------------------------------------------
def test_the_cli_grants_revokes_and_shows_who_edits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_data_dir: Path
) -> None:
    from app.cli import main

    _service(tmp_path).save(_world(), by=ANN, owner="ann")
    auth_file = tmp_path / "team.txt"
    auth_file.write_text("ann:pw-a\nbob:pw-b\nroot:pw-r:admin\n")
    assert main(["worlds", "grant", "Gull Rock", "bob", "--auth-file", str(auth_file)]) == 0
    assert capsys.readouterr().out == "'Gull Rock': owner ann; editors bob\n"
    assert main(["worlds", "show", "Gull Rock"]) == 0
    shown = capsys.readouterr()
    assert json.loads(shown.out)["name"] == "Gull Rock"  # stdout stays the world's file
    assert shown.err == "'Gull Rock': owner ann; editors bob\n"
    assert main(["worlds"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "saved    Gull Rock  (gull_rock.json)  owner ann; editors bob"
    )
    assert main(["worlds", "grant", "Gull Rock", "cy", "--auth", "ann:pw-a"]) == 2
    err = capsys.readouterr().err
    assert "no account called 'cy' (accounts: ann)" in err and "--auth-file" in err
    assert main(["worlds", "grant", "Gull Rock", "cy"]) == 2  # no accounts here at all
    assert "Nobody signs in to this app" in capsys.readouterr().err
    assert main(["worlds", "revoke", "Gull Rock", "bob"]) == 0
    assert capsys.readouterr().out == "'Gull Rock': owner ann\n"
    assert _service(tmp_path).grant_of("Gull Rock") == WorldGrant("ann")


# -- in the browser, as two users ----------------------------------------------------------
@pytest.mark.browser
@pytest.mark.server
@pytest.mark.slow
def test_an_owner_grants_and_revokes_an_editor_in_the_browser(tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    from app.ui.app import serve, shutdown
    from tests.test_browser import CHROMIUM_ARGS, _chromium
    from tests.threaded_server import free_port

    shots = tmp_path  # pytest keeps the last runs' folders: look at the screenshots
    services = Services(make_settings(tmp_path, auth=ACCOUNTS))
    services.worlds.save(_world(), by=ANN, owner="ann")
    demo = serve(services, host="127.0.0.1", port=free_port())

    def signed_in(browser: Any, user: str, password: str) -> Any:
        page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        page.goto(demo.local_url, wait_until="load")
        page.get_by_label("username").fill(user)
        page.get_by_label("password").fill(password)
        page.get_by_role("button", name="Login").click()
        page.get_by_role("tab", name="World Builder").click()
        return page

    def load(page: Any, name: str) -> None:
        start = page.get_by_label("Start from a world")
        start.click()
        start.fill(name)
        page.get_by_role("option", name=name, exact=True).click()
        page.get_by_role("button", name="Load", exact=True).click()
        page.locator("#world-access").get_by_text("Owner:").wait_for(timeout=15_000)

    try:
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
            try:
                ann = signed_in(browser, "ann", "pw-a")
                load(ann, "Gull Rock")
                editors = ann.get_by_label("Editors: grant or revoke an account")
                editors.fill("bob")
                ann.get_by_role("button", name="Grant editing").click()
                ann.get_by_text("bob may now save over and rename").wait_for(timeout=15_000)
                assert "Editors: bob" in ann.locator("#world-access").inner_text()
                ann.screenshot(path=str(shots / "owner-granted.png"), full_page=True)

                bob = signed_in(browser, "bob", "pw-b")
                load(bob, "Gull Rock")
                access = bob.locator("#world-access").inner_text()
                assert "You may save over and rename 'Gull Rock'; only ann" in access
                assert not bob.get_by_label("Editors: grant or revoke an account").is_visible()
                bob.get_by_label("Yes, delete it").check()
                bob.get_by_role("button", name="Delete this world").click()
                bob.get_by_text("only ann (its owner) or an admin may delete").first.wait_for(
                    timeout=15_000
                )
                bob.screenshot(path=str(shots / "editor-refused-delete.png"), full_page=True)
                bob.get_by_label("New name").fill("Gannet Rock")
                bob.get_by_role("button", name="Rename", exact=True).click()
                bob.get_by_text("✓ Renamed Gull Rock to Gannet Rock").wait_for(timeout=20_000)

                load(ann, "Gannet Rock")
                editors.fill("bob")
                ann.get_by_role("button", name="Revoke editing").click()
                ann.get_by_text("bob may no longer change").wait_for(timeout=15_000)
                bob.get_by_role("button", name="Save over this world").click()
                bob.get_by_text("is ann's world").first.wait_for(timeout=15_000)
                bob.screenshot(path=str(shots / "revoked-refused.png"), full_page=True)
            finally:
                browser.close()
    finally:
        shutdown(services, demo)
    assert services.worlds.grant_of("Gannet Rock") == WorldGrant("ann")


async def test_the_world_of_a_signed_in_users_cast_is_theirs(
    tmp_path: Path, make_services: MakeServices
) -> None:
    """A setting typed into Generate becomes a world of its own when the cast is
    saved: the maker's, so they may fix it in the World Builder later."""
    from app.ui.generate_tab import NO_WORLD, GenerateHandlers

    services = make_services(make_settings(tmp_path, auth=ACCOUNTS, library_autosave=True))
    handlers = GenerateHandlers(services.cast, services.worlds, tmp_path / "x", services.admission)
    ann = services.admission.caller("ann", None)
    setting = "A lighthouse island in the Outer Hebrides, 1890"
    form = (NO_WORLD, None, setting, 2, "", [], "procedural", 0.9, "7")
    [_ async for _ in handlers.generate_npcs(*form, caller=ann)]
    await services.cast.aclose()  # the library write and the world kept with it
    (name,) = [n for n in services.worlds.user_worlds() if "lighthouse" in n.lower()]
    assert services.worlds.grant_of(name) == WorldGrant("ann")
