"""The Library's model calls (regenerate a field or an NPC, new relationships)
follow the caller's backend rules and quota, as a cast does: a designer cannot
spend the owner's API key through them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.errors import InputError
from app.services.quotas import QuotaExceededError
from app.ui.library_tab import LibraryHandlers
from app.wiring import Services
from tests import casts
from tests.conftest import MakeServices, make_settings


def _signed_in(name: str) -> Any:
    """What Gradio passes a handler for a signed-in user."""
    return SimpleNamespace(username=name, client=SimpleNamespace(host="10.0.0.9"))


@pytest.fixture
def services(tmp_path: Path, make_services: MakeServices) -> Services:
    settings = make_settings(
        tmp_path,
        openai_base_url="http://127.0.0.1:9/v1",  # never reached: refused first
        openai_api_key="sk-owner-key",
        auth=("ann:pw",),
        quota_npcs_per_hour=2,
    )
    return make_services(settings)


async def _anns_npc(services: Services) -> str:
    world = services.worlds.resolve("saltmere", None).world
    [outcome] = await casts.outcomes(services, world, 1, seed=3)
    assert outcome.npc is not None
    npc = outcome.npc.owned_by("ann")
    await services.library.save([npc])
    return npc.id


async def test_a_designer_cannot_regenerate_on_a_backend_their_role_may_not_use(
    services: Services,
) -> None:
    handlers = LibraryHandlers(
        services.library, services.refine, services.removal, services.admission
    )
    npc_id, ann = await _anns_npc(services), _signed_in("ann")
    for call in (
        handlers.regenerate_field(npc_id, "backstory", "openai", 0.9, ann),
        handlers.regenerate_npc(npc_id, [], "openai", 0.9, ann),
        handlers.generate_relationships(npc_id, "openai", 0.9, ann),
    ):
        with pytest.raises(InputError, match="may use the backends procedural"):
            await call
    # The openai backend was never even built, let alone called.
    assert [guarded.name for guarded in services.backends.active()] == ["procedural:v1"]


async def test_a_regenerated_npc_counts_against_the_quota(services: Services) -> None:
    handlers = LibraryHandlers(
        services.library, services.refine, services.removal, services.admission
    )
    npc_id, ann = await _anns_npc(services), _signed_in("ann")
    await handlers.regenerate_field(npc_id, "backstory", "auto", 0.9, ann)  # a field: free
    for _ in range(2):
        await handlers.regenerate_npc(npc_id, ["name"], "auto", 0.9, ann)
    assert services.quotas.used("npcs", "ann") == 2
    with pytest.raises(QuotaExceededError, match=r"2 NPCs per hour \(2 used, 0 left\)"):
        await handlers.regenerate_npc(npc_id, ["name"], "auto", 0.9, ann)


async def test_regenerating_an_npc_refreshes_the_field_being_edited(services: Services) -> None:
    """The edit box showed the old backstory after *Regenerate NPC*: pressing
    *Save field* next would have brought the old text back."""
    handlers = LibraryHandlers(services.library, services.refine, services.removal)
    npc_id = await _anns_npc(services)
    old = (await services.library.get(npc_id)).backstory
    _, value, status = await handlers.regenerate_npc(
        npc_id, ["name"], "procedural", 0.9, None, "backstory"
    )
    new = await services.library.get(npc_id)
    assert value == new.backstory != old and status.startswith(f"Regenerated {new.name}")
