"""Variety across a cast: no sentence said twice, whatever order the cast runs in."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from app.backends.procedural import ProceduralBackend
from app.backends.procedural_period import Period
from app.models import NPC, World
from app.services.content_check import cast_report, parse_content_rules
from app.services.prompts import npc_request
from app.services.worlds import list_world_files, load_world_file, world_from_setting
from app.wiring import Services
from config import Settings
from tests import casts
from tests.conftest import ASSETS_DIR, WORLDS_DIR
from utils.cached_json import JSONFileCache

LIGHTHOUSE = world_from_setting("lighthouse island, Outer Hebrides 1890", max_chars=5000)


def _rules() -> Any:
    return parse_content_rules(orjson.loads((ASSETS_DIR / "content_rules.json").read_bytes()))


async def _cast(services: Services, world: World, count: int, **kw: Any) -> list[NPC]:
    outcomes = await casts.outcomes(services, world, count, backend="procedural", **kw)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    return [o.npc for o in outcomes if o.npc is not None]


async def _drafts(settings: Settings, world: World, order: list[int], **kw: Any) -> list[Any]:
    """Each slot's NPC from a fresh backend, requested concurrently in ``order``."""
    backend = ProceduralBackend(settings)
    specs = casts.specs_for(settings, world, len(order), **kw)
    replies = await asyncio.gather(*(backend.complete_json(npc_request(specs[i])) for i in order))
    by_slot = dict(zip(order, (reply.data for reply in replies), strict=True))
    return [by_slot[i] for i in range(len(order))]


@pytest.mark.slow
async def test_a_100_npc_cast_of_every_shipped_world_repeats_no_sentence(
    services: Services,
) -> None:
    worlds = [load_world_file(p, JSONFileCache()) for p in list_world_files(WORLDS_DIR).values()]
    for world in [*worlds, LIGHTHOUSE]:
        for seed in (7, 8):
            cast = [npc.model_dump() for npc in await _cast(services, world, 100, seed=seed)]
            report = cast_report(cast, Period(None, None), _rules())
            assert report.sentences >= 700  # appearance 3, backstory 2, motivation, secret
            assert report.repeated_sentences == 0, (world.name, report.repeated.most_common(3))


async def test_a_cast_is_the_same_in_any_generation_order(settings: Settings) -> None:
    count = 40
    in_order = await _drafts(settings, LIGHTHOUSE, list(range(count)), seed=21)
    for shuffle_seed in (1, 2):
        order = list(range(count))
        random.Random(shuffle_seed).shuffle(order)  # the last slots first, the first last
        assert await _drafts(settings, LIGHTHOUSE, order, seed=21) == in_order
    # And a lone slot asked for on its own, by a backend that drafted nothing before.
    assert (await _drafts(settings, LIGHTHOUSE, [0, 1, 2, 3], seed=21))[3] == in_order[3]


async def test_later_slots_draft_the_earlier_ones_once(settings: Settings) -> None:
    backend = ProceduralBackend(settings)
    specs = casts.specs_for(settings, LIGHTHOUSE, 30, seed=4)
    for spec in reversed(specs):  # slot 29 first drafts slots 0..28 for its record
        await backend.complete_json(npc_request(spec))
    records = backend.tables.casts_memo.stats()
    assert (records.misses, records.size) == (1, 1)  # one record for the whole cast


async def test_designer_named_npcs_do_not_share_sentences(services: Services) -> None:
    names = ["Morag Bain", "Hector Munro", "Isla Gunn", "Rab Kerr"]
    cast = await _cast(services, LIGHTHOUSE, 30, seed=5, names=names)
    assert [npc.name for npc in cast[:4]] == names
    report = cast_report([npc.model_dump() for npc in cast], Period(None, None), _rules())
    assert report.repeated_sentences == 0, report.repeated.most_common(3)
    assert len({npc.appearance.split(".")[0].split(",")[0] for npc in cast[:4]}) > 1


async def test_an_occupation_gets_its_article(services: Services) -> None:
    silk = world_from_setting("Silk Road caravan town, 1250", max_chars=5000)
    cast = await _cast(services, silk, 60, seed=7)
    vowels = [npc for npc in cast if npc.occupation[0] in "aeio"]
    assert vowels  # interpreters, astrologers: the case this is about
    for npc in vowels:
        text = f"{npc.backstory} {npc.motivation} {npc.secret}"
        assert f" a {npc.occupation}" not in text, text


async def test_the_stats_show_the_cast_records(services: Services) -> None:
    assert "procedural.casts" in services.stats.names()
    await _cast(services, LIGHTHOUSE, 10, seed=12)
    assert "procedural.casts" in services.stats.table()
    assert services.assets.tables().casts_memo.stats().misses == 1  # one record for the cast
