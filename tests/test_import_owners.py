"""An import is the importer's and never changes who owns an NPC already in
the library: a card of someone else's NPC becomes the importer's own copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.models import NPC
from app.services.exports import ExportService
from app.services.library import Viewer
from app.wiring import Services
from tests.conftest import MakeServices, make_settings
from tests.npc_fixtures import valid_profile

V2_PNG = "Character Card V2 (PNG)"


@pytest.fixture
def services(tmp_path: Path, make_services: MakeServices) -> Services:
    return make_services(make_settings(tmp_path, auth=("ann:pw", "bob:pw")))


def _view(services: Services, name: str) -> ExportService:
    return services.exports.seen_by(services.library.as_seen_by(Viewer(name, sees_all=False)))


def _npc(name: str, owner: str | None) -> NPC:
    npc = NPC(
        **valid_profile(name), id=f"npc-{name.lower()}", world="Saltmere", backend="p", seed=1
    )
    return npc.owned_by(owner)


async def test_an_import_never_takes_an_npc_from_its_owner(services: Services) -> None:
    maud = _npc("Maud", "ann")
    await services.library.save([maud])
    card = (await _view(services, "ann").export(maud.id, "this NPC", V2_PNG)).data

    # The machine's owner imports her card (the CLI): it stays Ann's, in place.
    report = await services.exports.import_cards([("maud.png", card)])
    assert [(npc.id, npc.owner) for npc in report.imported] == [(maud.id, "ann")]
    # Ann imports it again: the same NPC, hers.
    report = await _view(services, "ann").import_cards([("maud.png", card)], "ann")
    assert [(npc.id, npc.owner) for npc in report.imported] == [(maud.id, "ann")]
    assert await services.library.count() == 1
    # An unedited export still gives the card back as it came.
    assert (await _view(services, "ann").export(maud.id, "this NPC", V2_PNG)).data == card


async def test_a_card_of_someone_elses_npc_becomes_the_importers_copy(services: Services) -> None:
    maud, odo = _npc("Maud", "ann"), _npc("Odo", None)  # Ann's, and the team's
    await services.library.save([maud, odo])
    cards = [
        (f"{npc.name}.png", (await services.exports.export(npc.id, "this NPC", V2_PNG)).data)
        for npc in (maud, odo)
    ]
    bob = _view(services, "bob")

    report = await bob.import_cards(cards, "bob")
    assert report.problems == []
    copies = {npc.name: npc for npc in report.imported}
    assert {npc.owner for npc in copies.values()} == {"bob"}
    assert copies["Maud"].id not in (maud.id, odo.id) and copies["Odo"].id != odo.id
    assert (
        "Maud: the card is of an NPC that is not yours to change; imported as your own copy."
        in (report.notes)
    )
    # The originals are untouched, and nothing of Ann's is named to Bob but the card's own text.
    assert await services.library.get(maud.id) == maud
    assert await services.library.get(odo.id) == odo
    # Importing again replaces Bob's copies instead of making more.
    again = await bob.import_cards(cards, "bob")
    assert {npc.id for npc in again.imported} == {npc.id for npc in copies.values()}
    assert await services.library.count() == 4
