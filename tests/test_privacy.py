"""Each user's memories and conversations are their own; NPCs shared with the team (issue 13)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.errors import InputError
from app.models import NPC
from app.services.library import Viewer
from app.services.memory import MemoryDraft
from app.store.memory_store import MemoryKind
from app.ui.chat_tab import NEW, ChatHandlers
from app.ui.library_tab import LibraryHandlers
from app.wiring import Services
from tests import casts
from tests.conftest import MakeServices, make_settings
from tests.threaded_server import free_port

ACCOUNTS = ("ann:pw-ann", "bob:pw-bob", "root:pw-root:admin")
ANN_SAYS = "My sister lives in Harrow Bay and I owe the miller 12 crowns."
BOB_SAYS = "Don't tell anyone, but I found a map of the old mine under the bridge."


def signed_in(name: str) -> Any:
    """What Gradio hands a handler for a signed-in user's event."""
    return SimpleNamespace(username=name, client=SimpleNamespace(host="10.0.0.9"))


ANN, BOB, ROOT = signed_in("ann"), signed_in("bob"), signed_in("root")


async def _team_npc(services: Services, seed: int = 4, name: str = "Maud Flour") -> NPC:
    world = services.worlds.resolve("saltmere", None).world
    [outcome] = await casts.outcomes(services, world, 1, seed=seed, names=[name])
    assert outcome.npc is not None and outcome.npc.owner is None  # made without sign-in
    await services.library.save([outcome.npc])
    return outcome.npc


def _owners(rows: list[list[Any]]) -> set[str]:
    return {row[-1] for row in rows}


async def _say(handlers: ChatHandlers, npc_id: str, text: str, request: Any) -> list[Any]:
    *_, last = [u async for u in handlers.send(npc_id, NEW, "Ada", text, request=request)]
    return list(last)


async def test_two_designers_on_a_team_npc_keep_their_memories_and_conversations(
    tmp_path: Path, make_services: MakeServices
) -> None:
    settings = make_settings(tmp_path, auth=ACCOUNTS, memory_extract_every=2)
    services = make_services(settings)
    npc = await _team_npc(services)
    # A memory from before owners existed: the team's.
    await services.memory.add(
        npc.id, [MemoryDraft(text="The well froze last winter.", importance=5)]
    )
    handlers = ChatHandlers(
        services.chat, services.library, services.memory, tmp_path / "x", services.admission
    )
    _, ann_choice, *_ = await _say(handlers, npc.id, ANN_SAYS, ANN)
    _, bob_choice, *_ = await _say(handlers, npc.id, BOB_SAYS, BOB)
    await services.chat.aclose()  # the memory writer runs in the background
    stored = await services.memory.list_memories(npc.id)
    assert {m.owner for m in stored} == {"ann", "bob", None}

    # Recall, the memory panel and the count: each designer's own and the team's.
    rows, status = await handlers.memory_search(npc.id, "the miller and the map", "", ANN)
    assert _owners(rows) <= {"ann", "team"} and "ann" in _owners(rows)
    ann_count = sum(m.owner in ("ann", None) for m in stored)
    assert f"of {ann_count:,} memories" in status
    rows, _ = await handlers.memory_search(npc.id, "the miller and the map", "", BOB)
    assert _owners(rows) <= {"bob", "team"} and "bob" in _owners(rows)
    rows, status = await handlers.memory_search(npc.id, "the miller and the map", "", ROOT)
    assert {"ann", "bob"} <= _owners(rows) and f"of {len(stored):,} memories" in status
    *_, recalled, _, _ = await _say(handlers, npc.id, "What do you remember of the map?", ANN)
    assert recalled and "bob" not in _owners(recalled)
    await services.chat.aclose()

    # Conversations: each sees their own; the other's is "not found" everywhere.
    ann_id, bob_id = ann_choice["value"], bob_choice["value"]
    _, listed, *_ = await handlers.open_npc(npc.id, BOB)
    assert {value for _, value in listed["choices"]} == {NEW, bob_id}
    _, listed, *_ = await handlers.open_npc(npc.id, ROOT)
    labels = dict((value, label) for label, value in listed["choices"])
    assert labels[ann_id].endswith("· ann's") and labels[bob_id].endswith("· bob's")
    missing = f"No conversation '{ann_id}'"
    with pytest.raises(InputError, match=missing):
        await handlers.open_conversation(npc.id, ann_id, BOB)
    with pytest.raises(InputError, match=missing):
        await handlers.export(npc.id, ann_id, "Markdown", BOB)
    with pytest.raises(InputError, match=missing):
        [u async for u in handlers.send(npc.id, ann_id, "Bo", "Tell me her secrets.", request=BOB)]
    with pytest.raises(InputError, match=missing):
        [u async for u in handlers.regenerate(npc.id, ann_id, request=BOB)]
    assert len(await handlers.open_conversation(npc.id, ann_id, ROOT)) >= 2

    # Bob forgets his own memories only; the team's and Ann's stay; the admin clears all.
    bobs = sum(m.owner == "bob" for m in await services.memory.list_memories(npc.id))
    assert await handlers.memory_clear(npc.id, True, BOB) == (
        f"Forgot {bobs:,} of your memories (the team's stay).",
        False,
    )
    left = await services.memory.list_memories(npc.id)
    assert {m.owner for m in left} == {"ann", None}
    total = len(left)
    assert await handlers.memory_clear(npc.id, True, ROOT) == (f"Forgot {total:,} memories.", False)


async def test_a_conversation_from_before_sign_in_is_the_teams_to_read_not_to_talk_in(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services = make_services(make_settings(tmp_path, auth=ACCOUNTS))
    npc = await _team_npc(services)
    [*_, old] = [u async for u in services.chat.send(npc.id, None, "Hello, who are you?")]
    assert old.conversation.owner is None  # no sign-in: the team's
    handlers = ChatHandlers(
        services.chat, services.library, services.memory, tmp_path / "x", services.admission
    )
    shown, listed, *_ = await handlers.open_npc(npc.id, ANN)
    assert shown == [] and listed["value"] == NEW  # not opened to talk in
    assert [label for label, value in listed["choices"] if value == old.conversation.id] == [
        "Hello, who are you? · 2 messages · team's"
    ]
    assert len(await handlers.open_conversation(npc.id, old.conversation.id, ANN)) == 2
    with pytest.raises(InputError, match="press New conversation to talk"):
        [u async for u in handlers.send(npc.id, old.conversation.id, "", "Hi", request=ANN)]
    shown, listed, *_ = await handlers.open_npc(npc.id, ROOT)
    assert listed["value"] == old.conversation.id and len(shown) == 2
    *_, done = [u async for u in handlers.send(npc.id, old.conversation.id, "", "Hi", request=ROOT)]
    assert len(done[0]) == 4


async def test_imported_memories_are_the_importers_and_two_imports_do_not_collide(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services = make_services(make_settings(tmp_path, auth=ACCOUNTS))
    npc = await _team_npc(services)
    handlers = ChatHandlers(
        services.chat, services.library, services.memory, tmp_path / "x", services.admission
    )
    chat = tmp_path / "old.jsonl"
    chat.write_text(
        '{"user_name": "Ada", "character_name": "Maud Flour"}\n'
        '{"name": "Ada", "is_user": true, "send_date": "2026-02-01T10:00:00Z",'
        ' "mes": "I buried the silver under the old oak."}\n'
    )
    assert await handlers.memory_import(npc.id, str(chat), ANN) == "Imported 1 memories."
    assert await handlers.memory_import(npc.id, str(chat), BOB) == "Imported 1 memories."
    assert sorted(str(m.owner) for m in await services.memory.list_memories(npc.id)) == [
        "ann",
        "bob",
    ]
    for who in (ANN, BOB):
        rows, status = await handlers.memory_search(npc.id, "the silver", "", who)
        assert _owners(rows) == {who.username} and "1 of 1 memories" in status


async def test_an_npc_shared_with_the_team_is_seen_and_used_by_all_and_changed_by_its_owner(
    tmp_path: Path, make_services: MakeServices
) -> None:
    settings = make_settings(tmp_path, auth=ACCOUNTS)
    services = make_services(settings)
    team = await _team_npc(services)
    world = services.worlds.resolve("saltmere", None).world
    [made] = await casts.outcomes(services, world, 1, seed=9, names=["Tobin Reed"])
    assert made.npc is not None
    mine = made.npc.owned_by("ann")
    await services.library.save([mine])
    library = LibraryHandlers(
        services.library, services.refine, services.removal, services.admission
    )
    chat = ChatHandlers(
        services.chat, services.library, services.memory, tmp_path / "x", services.admission
    )
    unseen = f"No NPC with id '{mine.id}'"
    with pytest.raises(InputError, match=unseen):
        await library.open(mine.id, "backstory", BOB)
    box = await library.sharing(mine.id, ANN)
    assert box["value"] is False and box["interactive"] is True
    assert (await library.sharing(team.id, ANN))["interactive"] is False

    _, status = await library.share(mine.id, True, ANN)
    assert "shared with the team" in status
    rows, _, listed = await library.list_npcs(None, "", BOB)
    assert {row[-2] for row in rows} == {"team", "ann · shared"} and "2 in the library" in listed
    assert (await library.world_choices(BOB))[1:] == [world.name]
    rows, _, _ = await library.list_npcs(world.name, "", BOB)  # where: world and (mine or shared)
    assert len(rows) == 2
    hits, _, _ = await library.search("Tobin Reed", 5, None, "", BOB)
    assert mine.id in {row[-1] for row in hits}
    card, _ = await library.open(mine.id, "backstory", BOB)
    assert "Tobin Reed" in card
    assert (await library.sharing(mine.id, BOB))["interactive"] is False
    # Bob may talk to it (his conversation, his memories), but not change or unshare it.
    bubbles, *_ = await _say(chat, mine.id, "Who are you?", BOB)
    assert len(bubbles) == 2
    for change in (
        library.save_field(mine.id, "occupation", "baker", BOB),
        library.share(mine.id, False, BOB),
        library.delete(mine.id, BOB),
    ):
        with pytest.raises(InputError, match="read-only for you"):
            await change
    with pytest.raises(InputError, match="the team's already"):
        await library.share(team.id, True, ROOT)
    # An edit by its owner keeps it shared, and so does making the cast again.
    await library.save_field(mine.id, "occupation", "baker", ANN)
    await services.library.as_seen_by(Viewer("ann", sees_all=False)).save(
        [mine.model_copy(update={"occupation": "baker"})]
    )
    assert (await services.library.get(mine.id)).shared is True

    # A restart keeps it shared; unshared, it is Ann's alone again.
    await services.aclose()
    again = make_services(settings)
    library = LibraryHandlers(again.library, again.refine, again.removal, again.admission)
    assert (await library.open(mine.id, "occupation", BOB))[1] == "baker"
    _, status = await library.share(mine.id, False, ROOT)
    assert status == "Tobin Reed is yours alone again."
    with pytest.raises(InputError, match=unseen):
        await library.open(mine.id, "backstory", BOB)
    rows, _, _ = await library.list_npcs(None, "", ANN)
    assert {row[-2] for row in rows} == {"team", "ann"}


@pytest.mark.server
@pytest.mark.slow
def test_neither_designer_sees_the_others_memories_or_conversations_over_the_api(
    tmp_path: Path,
) -> None:
    import asyncio

    from gradio_client import Client, handle_file

    from app.ui.app import serve, shutdown

    settings = make_settings(tmp_path, auth=ACCOUNTS, library_autosave=True)
    services = Services(settings)
    npc = asyncio.run(_team_npc(services))
    chat = tmp_path / "old.jsonl"
    chat.write_text(
        '{"name": "Ada", "is_user": true, "send_date": "2026-02-01T10:00:00Z",'
        ' "mes": "I buried the silver under the old oak."}\n'
    )
    demo = serve(services, host="127.0.0.1", port=free_port())
    try:
        ann, bob, root = (
            Client(demo.local_url, auth=(name, f"pw-{name}"), verbose=False)
            for name in ("ann", "bob", "root")
        )
        assert ann.predict(npc.id, handle_file(str(chat)), api_name="/memory_import_chat") == (
            "Imported 1 memories."
        )
        _, listed, *_ = ann.predict(npc.id, "", "Ada", "Who are you?", "auto", api_name="/chat")
        ann_chat = listed["value"]
        assert ann_chat.startswith("chat-")
        rows, status = bob.predict(npc.id, "the silver", "", api_name="/memory_search")
        assert rows["data"] == [] and "0 of 0 memories" in status
        bubbles, listed, *_ = bob.predict(npc.id, api_name="/chat_open")
        assert bubbles == [] and listed["choices"] == [[NEW, NEW]]  # none of Ann's
        for call, args in [
            ("/chat", (npc.id, ann_chat, "Bo", "What did she say?", "auto")),
            ("/chat_export", (npc.id, ann_chat, "Markdown")),
        ]:
            with pytest.raises(Exception, match=f"No conversation '{ann_chat}'"):
                bob.predict(*args, api_name=call)
        assert bob.predict(npc.id, True, api_name="/memory_clear")[0] == (
            "Forgot 0 of your memories (the team's stay)."
        )
        rows, status = root.predict(npc.id, "the silver", "", api_name="/memory_search")
        assert [row[-1] for row in rows["data"]] == ["ann"] and "1 of 1 memories" in status

        # Shared over the API: Bob opens it; unshared, it is gone for him again.
        *_, (_, cast, _, _) = ann.submit(
            "Saltmere", None, "", 1, "Tobin Reed", [], "auto", 0.9, "9", True,
            api_name="/generate_npcs",
        )  # fmt: skip
        mine = cast["npcs"][0]["id"]
        _, status = ann.predict(mine, True, api_name="/library_share")
        assert "shared with the team" in status
        card, _ = bob.predict(mine, "backstory", api_name="/library_get")
        assert "Tobin Reed" in card
        with pytest.raises(Exception, match="read-only for you"):
            bob.predict(mine, False, api_name="/library_share")
        ann.predict(mine, False, api_name="/library_share")
        with pytest.raises(Exception, match=f"No NPC with id '{mine}'"):
            bob.predict(mine, "backstory", api_name="/library_get")
    finally:
        shutdown(services, demo)


async def test_the_memory_cli_acts_as_one_user_with_owner(
    tmp_path: Path, make_services: MakeServices
) -> None:
    import io

    import orjson

    from app.cli import build_parser
    from app.cli_memory import run_memory

    services = make_services(make_settings(tmp_path))
    file = tmp_path / "memories.jsonl"
    file.write_text('{"text": "I buried the silver under the old oak.", "created_at": 1}\n')

    async def cli(*args: str) -> str:
        out = io.StringIO()
        assert await run_memory(build_parser().parse_args(["memory", *args]), services, out) == 0
        return out.getvalue()

    await cli("import", "--npc", "npc-m", "--owner", "ann", str(file))
    await cli("import", "--npc", "npc-m", str(file))  # the team's copy
    search = ("search", "--npc", "npc-m", "--query", "the silver", "--json")
    assert {m.owner for m in await services.memory.list_memories("npc-m")} == {"ann", None}
    assert orjson.loads(await cli(*search, "--owner", "ann"))[0]["owner"] in ("ann", None)
    assert orjson.loads(await cli(*search, "--owner", "bob"))[0]["owner"] is None
    assert "Forgot 0 memories of npc-m by bob" in await cli(
        "clear", "--npc", "npc-m", "--owner", "bob"
    )
    assert "Forgot 1 memories of npc-m by ann" in await cli(
        "clear", "--npc", "npc-m", "--owner", "ann"
    )
    assert [m.owner for m in await services.memory.list_memories("npc-m")] == [None]


async def test_the_library_cli_shares_and_unshares_a_users_npc(
    tmp_path: Path, make_services: MakeServices
) -> None:
    import io

    from app.cli import build_parser
    from app.cli_library import run_library

    services = make_services(make_settings(tmp_path))
    team = await _team_npc(services)
    mine = team.model_copy(update={"id": "npc-ann-1", "name": "Tobin Reed"}).owned_by("ann")
    await services.library.save([mine])

    async def cli(*args: str) -> str:
        out = io.StringIO()
        assert await run_library(build_parser().parse_args(["library", *args]), services, out) == 0
        return out.getvalue()

    assert await cli("share", mine.id) == f"Tobin Reed ({mine.id}) is shared with the team.\n"
    bob = services.library.as_seen_by(Viewer("bob", sees_all=False))
    assert (await bob.get(mine.id)).shared
    assert '"shared": false' in await cli("unshare", mine.id, "--json")
    with pytest.raises(InputError, match=f"No NPC with id '{mine.id}'"):
        await bob.get(mine.id)
    with pytest.raises(InputError, match="the team's already"):
        await cli("share", team.id)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.server
def test_a_designer_shares_in_the_browser_and_sees_only_their_memories(tmp_path: Path) -> None:
    import asyncio

    from tests.test_browser import app_page

    settings = make_settings(tmp_path, auth=ACCOUNTS, library_autosave=True)
    services = Services(settings)
    team = asyncio.run(_team_npc(services))
    mine = team.model_copy(update={"id": "npc-ann-1", "name": "Tobin Reed"}).owned_by("ann")
    drafts = [
        MemoryDraft(text="Ann's sister lives in Harrow Bay.", importance=7, owner="ann"),
        MemoryDraft(text="Bob found a map under the bridge.", importance=7, owner="bob"),
        MemoryDraft(text="The well froze last winter.", importance=4),
    ]

    async def setup() -> None:
        await services.library.save([mine])
        await services.memory.add(team.id, drafts)

    asyncio.run(setup())
    with app_page(services) as page:
        page.get_by_label("username").fill("ann")
        page.get_by_label("password").fill("pw-ann")
        page.get_by_role("button", name="Login").click()
        page.get_by_role("tab", name="Library").click()
        page.get_by_role("button", name="List", exact=True).click()
        page.get_by_text("2 NPCs shown").first.wait_for(timeout=15_000)
        page.get_by_label("Open NPC").click()
        page.get_by_role("option", name="Tobin Reed", exact=False).click()
        # The box follows the opened NPC: Ann's, so it turns usable (check waits for that).
        page.get_by_label("Shared with the team").check(timeout=15_000)
        page.get_by_text("Tobin Reed is shared with the team").first.wait_for(timeout=15_000)
        page.get_by_role("button", name="List", exact=True).click()
        page.get_by_text("ann · shared").filter(visible=True).first.wait_for(timeout=15_000)
        page.screenshot(path=str(tmp_path / "shared.png"), full_page=True)

        page.get_by_role("tab", name="Chat").click()
        page.get_by_label("Find an NPC").fill(team.name)
        page.get_by_role("button", name="Find", exact=True).click()
        page.get_by_text("NPCs found").first.wait_for(timeout=15_000)
        page.get_by_text("This NPC's memory").click()
        page.get_by_label("What does it remember about…").fill("sister map well")
        page.get_by_role("button", name="Search memory").click()
        page.get_by_text("2 of 2 memories shown").first.wait_for(timeout=15_000)
        assert page.get_by_text("Bob found a map").count() == 0
    again = Services(settings)  # after a restart, still shared

    async def shared() -> bool:
        try:
            return (await again.library.get(mine.id)).shared
        finally:
            await again.aclose()

    assert asyncio.run(shared())


async def test_reflections_count_and_are_made_per_user(
    tmp_path: Path, make_services: MakeServices
) -> None:
    memory = make_services(make_settings(tmp_path)).memory

    def said(
        text: str, owner: str, created_at: float, kind: MemoryKind = "dialogue"
    ) -> MemoryDraft:
        return MemoryDraft(text=text, importance=6, owner=owner, created_at=created_at, kind=kind)

    await memory.add(
        "npc-r",
        [
            said("Ann owes the miller.", "ann", 10.0),
            said("Bob lost his horse.", "bob", 11.0),
            said("Bob is grieving.", "bob", 12.0, "reflection"),  # Bob's reflection...
            said("Ann's sister is ill.", "ann", 13.0),
        ],
    )
    # ...resets only Bob's count; Ann's still holds everything she said.
    assert await memory.importance_since_reflection("npc-r", ("ann",)) == 12
    assert await memory.importance_since_reflection("npc-r", ("bob",)) == 0


def test_memories_from_before_owners_become_the_teams_once(tmp_path: Path) -> None:
    from app.store.client import open_client
    from app.store.embeddings import MiniLMEmbeddings
    from app.store.memory_store import OWNERS_MARK, Memory, MemoryStore, collection_name

    client = open_client(make_settings(tmp_path))
    old = client.get_or_create_collection(
        collection_name("npc-old"),
        embedding_function=MiniLMEmbeddings(),  # type: ignore[arg-type]
        metadata={"hnsw:space": "cosine", "npc_id": "npc-old"},
    )
    meta = {"npc_id": "npc-old", "player": "", "kind": "dialogue", "importance": 5}
    old.add(  # as an older NPC Forge wrote it: no owner key
        ids=["mem-old"],
        embeddings=[[0.1] * 384],
        metadatas=[{**meta, "created_at": 1.0, "last_accessed": 1.0}],
        documents=["The well froze last winter."],
    )
    store = MemoryStore(client)
    assert store.count("npc-old", ("ann", "")) == 1 and store.count("npc-old", ("ann",)) == 0
    store.add(
        [Memory("mem-ann", "npc-old", "Ann's sister is ill.", "dialogue", 5, 2.0, 2.0, owner="ann")]
    )
    assert store.count("npc-old", ("ann", "")) == 2 and store.count("npc-old", ("bob", "")) == 1
    again = client.get_collection(collection_name("npc-old"))
    assert (again.metadata or {}).get(OWNERS_MARK) is True
    assert again.configuration_json["hnsw"]["space"] == "cosine"  # the search stays cosine


async def test_an_imported_card_of_a_shared_npc_is_the_importers_and_not_shared(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services = make_services(make_settings(tmp_path, auth=ACCOUNTS))
    team = await _team_npc(services)
    mine = team.model_copy(update={"id": "npc-ann-1", "name": "Tobin Reed"}).owned_by("ann")
    await services.library.save([mine])
    ann = services.library.as_seen_by(Viewer("ann", sees_all=False))
    bob = services.library.as_seen_by(Viewer("bob", sees_all=False))
    await ann.share(mine.id, True)
    card = await services.exports.seen_by(bob).export(
        mine.id, "this NPC", "Character Card V2 (JSON)"
    )
    assert b'"shared": true' in card.data or b'"shared":true' in card.data  # the card says so
    [copy] = (
        await services.exports.seen_by(bob).import_cards([(card.filename, card.data)], "bob")
    ).imported
    assert copy.owner == "bob" and copy.id != mine.id and copy.shared is False
    # Ann's own re-import keeps hers shared: an import never shares or unshares.
    [again] = (
        await services.exports.seen_by(ann).import_cards([(card.filename, card.data)], "ann")
    ).imported
    assert again.id == mine.id and again.shared is True
