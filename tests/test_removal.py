"""Deleting an NPC takes what hangs on it: an NPC made again under the same id
(the same seed and request) starts with no memories, chats or imported card."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import InputError
from app.models import NPC
from app.services.card_store import KeptCard
from app.services.library import Viewer
from app.ui.library_tab import LibraryHandlers
from app.wiring import Services
from tests.conftest import MakeServices, make_settings
from tests.npc_fixtures import valid_profile


def _npc(name: str, owner: str | None = None) -> NPC:
    slug = name.lower().replace(" ", "-")
    npc = NPC(**valid_profile(name), id=f"npc-{slug}", world="Saltmere", backend="test", seed=1)
    return npc.owned_by(owner)


async def _with_history(services: Services, npc: NPC) -> None:
    """An NPC that was talked to and came from a card."""
    await services.library.save([npc])
    await services.memory.add(
        npc.id, [{"text": f"The player owes {npc.name} a crown.", "importance": 6}]
    )
    await services.chat.new_conversation(npc.id, "Wren")
    services.cards.put(KeptCard({"spec": "chara_card_v2", "data": {"name": npc.name}}, npc))


@pytest.fixture
def services(tmp_path: Path, make_services: MakeServices) -> Services:
    return make_services(make_settings(tmp_path))


async def test_removal_takes_memories_chats_and_card(services: Services) -> None:
    gone, kept = _npc("Bran Hollow"), _npc("Maud Flour")
    for npc in (gone, kept):
        await _with_history(services, npc)
    handlers = LibraryHandlers(services.library, services.refine, services.removal)

    _, status = await handlers.delete(gone.id)

    assert status == (
        f"Deleted Bran Hollow ({gone.id}) with every relationship pointing at them, "
        "1 memory and 1 conversation."
    )
    # The same NPC made again is a stranger to its old player.
    await services.library.save([gone])
    assert await services.memory.count(gone.id) == 0
    assert await services.chat.conversations(gone.id) == []
    assert services.cards.get(gone.id) is None
    # The NPC beside it lost nothing.
    assert await services.memory.count(kept.id) == 1
    assert len(await services.chat.conversations(kept.id)) == 1
    assert services.cards.get(kept.id) is not None


async def test_refused_removal_leaves_everything(services: Services) -> None:
    anns = _npc("Bran Hollow", owner="ann")
    await _with_history(services, anns)
    bobs_view = services.library.as_seen_by(Viewer("bob", sees_all=False))

    with pytest.raises(InputError, match="No NPC with id"):
        await services.removal.seen_by(bobs_view).remove(anns.id)

    assert await services.library.get(anns.id) == anns
    assert await services.memory.count(anns.id) == 1
    assert len(await services.chat.conversations(anns.id)) == 1
    assert services.cards.get(anns.id) is not None
