"""An NPC's card says whose it is and that it is shared, when people sign in."""

from __future__ import annotations

from app.models import NPC
from app.ui.render import npc_card
from tests.npc_fixtures import valid_profile


def _npc(**changes: object) -> NPC:
    npc = NPC(**valid_profile("Maud Flour"), id="npc-maud", world="Saltmere", backend="p", seed=1)
    return npc.model_copy(update=changes)


def test_a_card_says_whose_and_shared() -> None:
    team = npc_card(_npc(), 1)
    assert "'s · " not in team and "shared with the team" not in team
    anns = npc_card(_npc(owner="ann"), 1)
    assert "<footer>ann's · p · seed 1" in anns and "shared with the team" not in anns
    shared = npc_card(_npc(owner="ann", shared=True), 1)
    assert '<span class="npc-badge">shared with the team</span>' in shared
    assert "&lt;b&gt;" in npc_card(_npc(owner="<b>"), 1)  # an account name is text, not HTML
