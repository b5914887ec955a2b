"""The Chat tab: handlers called directly, and the launched app through gradio_client."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import InputError
from app.ui.chat_tab import NEW, ChatHandlers
from app.wiring import Services
from tests import casts
from tests.conftest import MakeServices, make_settings
from tests.threaded_server import free_port


async def _services_with_npc(tmp_path: Path, make_services: MakeServices) -> tuple[Services, str]:
    services = make_services(make_settings(tmp_path, library_autosave=True))
    world = services.worlds.resolve("saltmere", None).world
    [outcome] = await casts.outcomes(services, world, 1, seed=4, names=["Maud Flour"])
    assert outcome.npc is not None
    await services.library.save([outcome.npc])
    return services, outcome.npc.id


async def test_send_streams_into_the_chat_and_lists_the_conversation(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services, npc_id = await _services_with_npc(tmp_path, make_services)
    handlers = ChatHandlers(services.chat, services.library, services.memory, tmp_path / "exports")
    picker, status = await handlers.find("Maud")
    assert picker["value"] == npc_id and "1 NPCs found" in status
    shown, conversations, _, status, _ = await handlers.open_npc(npc_id)
    assert shown == [] and conversations["value"] == NEW and "Maud Flour" in status
    updates = [u async for u in handlers.send(npc_id, NEW, "Ada", "Who are you?")]
    assert len(updates) >= 3
    assert updates[0][0] == [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "…"},
    ]
    bubbles, choice, _, _, cleared = updates[-1]
    assert [b["role"] for b in bubbles] == ["user", "assistant"] and "Maud Flour" in bubbles[1][
        "content"
    ]
    assert cleared == "" and choice["value"].startswith("chat-")
    # Exported, and found again when the NPC is opened later.
    path = await handlers.export(npc_id, choice["value"], "SillyTavern chat (JSONL)")
    assert Path(path).read_text().count("\n") == 3
    shown, conversations, *_ = await handlers.open_npc(npc_id)
    assert len(shown) == 2 and conversations["value"] == choice["value"]


async def test_chat_without_an_npc_says_what_to_do(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services = make_services(make_settings(tmp_path))
    handlers = ChatHandlers(services.chat, services.library, services.memory, tmp_path)
    with pytest.raises(InputError, match="Choose an NPC first"):
        [u async for u in handlers.send(None, NEW, "", "Hello")]
    with pytest.raises(InputError, match="Start a conversation first"):
        [u async for u in handlers.regenerate("npc-x", NEW)]


@pytest.mark.server
@pytest.mark.slow
def test_chat_streams_over_the_api(tmp_path: Path) -> None:
    """As the README shows: submit the chat endpoint and iterate the updates."""
    from gradio_client import Client

    from app.ui.app import serve, shutdown

    services = Services(make_settings(tmp_path, library_autosave=True))
    demo = serve(services, host="127.0.0.1", port=free_port())
    try:
        client = Client(demo.local_url, verbose=False)
        *_, (_, cast, _, _) = client.submit(
            "Saltmere", None, "", 1, "Maud Flour", [], "procedural", 0.9, "4", True,
            api_name="/generate_npcs",
        )  # fmt: skip
        npc_id = cast["npcs"][0]["id"]
        job = client.submit(npc_id, "", "Ada", "Where are you from?", "auto", api_name="/chat")
        updates = list(job)
        bubbles, picker, _, _, said = job.result()
        assert len(updates) >= 3  # the reply arrived in pieces
        assert bubbles[-1]["role"] == "assistant" and bubbles[-1]["content"] and said == ""
        conversation = picker["value"]  # the conversation picker's new value: its id
        assert conversation.startswith("chat-")
        again = client.predict(
            npc_id, conversation, "Ada", "Who are you?", "auto", api_name="/chat"
        )
        # Gradio hands chat messages out as lists of parts: [{"type": "text", "text": ...}]
        assert len(again[0]) == 4 and "Maud Flour" in again[0][-1]["content"][0]["text"]
    finally:
        shutdown(services, demo)


async def test_memory_search_import_and_clear_from_the_tab(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services, npc_id = await _services_with_npc(tmp_path, make_services)
    handlers = ChatHandlers(services.chat, services.library, services.memory, tmp_path / "x")
    chat = tmp_path / "old.jsonl"
    chat.write_text(
        '{"user_name": "Ada", "character_name": "Maud Flour"}\n'
        '{"name": "Ada", "is_user": true, "is_system": false, "send_date": "2026-02-01T10:00:00Z",'
        ' "mes": "I buried the silver under the old oak.", "extra": {}}\n'
        '{"name": "Maud Flour", "is_user": false, "is_system": false,'
        ' "send_date": "June 5, 2024 10:15pm", "mes": "Your secret is safe."}\n'
    )
    assert await handlers.memory_import(npc_id, str(chat)) == "Imported 2 memories."
    rows, status = await handlers.memory_search(npc_id, "where is the silver?", "")
    assert rows[0][0] == "I buried the silver under the old oak." and "of 2 memories" in status
    with pytest.raises(InputError, match="Tick 'Yes, forget everything' first"):
        await handlers.memory_clear(npc_id, False)
    assert await handlers.memory_clear(npc_id, True) == ("Forgot 2 memories.", False)
    assert await services.memory.count(npc_id) == 0
