"""The cast graph: a force/community layout where no two labels overlap, drawn as SVG."""

from __future__ import annotations

import re

import pytest

from app.models import NPC, Relationship
from app.services.graph import GraphLayouts, graph_svg, layout_cast
from app.ui.cast_graph import cast_graph_html, clicked_npc
from app.wiring import Services
from tests.casts import outcomes


async def _cast(services: Services, count: int, seed: int = 5) -> list[NPC]:
    world = services.worlds.get("Saltmere")
    npcs = [outcome.npc for outcome in await outcomes(services, world, count, seed=seed)]
    assert all(npc is not None for npc in npcs)
    refiner = services.refine.refiner("procedural")
    return await refiner.relationships(npcs, world, seed=3, temperature=0.9)  # type: ignore[arg-type]


def _npc(services_npc: NPC, npc_id: str, name: str, ties: list[Relationship]) -> NPC:
    return services_npc.model_copy(update={"id": npc_id, "name": name, "relationships": ties})


def _tie(target: NPC, kind: str = "ally", weight: float = 0.8, **extra: object) -> Relationship:
    return Relationship(
        target_id=target.id, target_name=target.name, type=kind, weight=weight, **extra
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [2, 12, 50])
async def test_no_two_labels_overlap_and_every_tie_is_drawn(services: Services, count: int) -> None:
    cast = await _cast(services, count)
    graph = layout_cast(cast, world="Saltmere")
    assert graph.overlapping_labels() == []
    assert len(graph.nodes) == count
    ties = sum(1 for npc in cast for tie in npc.relationships)
    assert len(graph.edges) == ties > 0
    # Every label lies inside the drawing.
    x, y, width, height = graph.view
    for node in graph.nodes:
        left, top, right, bottom = node.label_box()
        assert x <= left and right <= x + width and y <= top and bottom <= y + height
    assert layout_cast(cast, world="Saltmere") == graph  # deterministic


async def test_ties_form_communities(services: Services) -> None:
    base = (await _cast(services, 2))[0]
    a = [_npc(base, f"a{i}", f"Alder {i}", []) for i in range(4)]
    b = [_npc(base, f"b{i}", f"Birch {i}", []) for i in range(4)]
    a = [
        npc.model_copy(update={"relationships": [_tie(o) for o in a if o is not npc]}) for npc in a
    ]
    b = [
        npc.model_copy(update={"relationships": [_tie(o) for o in b if o is not npc]}) for npc in b
    ]
    loner = _npc(base, "c0", "Cedar", [])
    graph = layout_cast([*a, *b, loner])
    group = {node.id: node.community for node in graph.nodes}
    assert len({group[n.id] for n in a}) == 1 and len({group[n.id] for n in b}) == 1
    assert group["a0"] != group["b0"] != group["c0"] != group["a0"]


async def test_the_svg_carries_tips_and_ids_and_escapes_names(services: Services) -> None:
    base = (await _cast(services, 2))[0]
    target = _npc(base, "npc-2", "Maud <b>", [])
    source = _npc(
        base, "npc-1", "Ada & Co",
        [_tie(target, "rival", -0.6, secret=True, description='Owes her "everything"')],
    )  # fmt: skip
    back = target.model_copy(update={"relationships": [_tie(source, "friend", 0.4)]})
    svg = graph_svg(layout_cast([source, back], world="Bay"), selected="npc-1")
    assert "<b>" not in svg and "Maud &lt;b&gt;" in svg and "Ada &amp; Co" in svg
    assert 'data-tip="Ada &amp; Co → Maud &lt;b&gt;: rival (-0.6, secret). Owes her' in svg
    assert 'class="node selected" data-id="npc-1"' in svg
    assert svg.count('stroke-dasharray="6 4"') == 1  # the secret tie only
    curves = re.findall(r'<path class="hit" d="([^"]+)"', svg)
    assert len(curves) == 2 and curves[0] != curves[1]  # A->B and B->A bend apart
    assert "<script" not in svg and "http" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_an_empty_world_and_a_click() -> None:
    assert "Open an NPC" in cast_graph_html([], GraphLayouts())

    class Event:
        id = "npc-7"

    assert clicked_npc(Event()) == "npc-7"  # type: ignore[arg-type]


async def test_two_hundred_npcs_still_leave_every_label_free(services: Services) -> None:
    """The most the Library draws (GRAPH_MAX_NPCS), with long names and dense ties."""
    import random

    from app.ui.library_tab import GRAPH_MAX_NPCS

    base = (await _cast(services, 2))[0]
    rng = random.Random(4)
    npcs = [_npc(base, f"n{i}", f"Wilhelmina {i} of Kolbeinsey", []) for i in range(GRAPH_MAX_NPCS)]
    npcs = [
        npc.model_copy(update={"relationships": [_tie(other) for other in rng.sample(npcs, 3)]})
        for npc in npcs
    ]
    graph = layout_cast(npcs)
    assert graph.overlapping_labels() == []
    assert len(graph.nodes) == GRAPH_MAX_NPCS


async def test_a_world_is_laid_out_once_until_its_ties_change(services: Services) -> None:
    cast = await _cast(services, 12)
    layouts = services.graphs
    first = cast_graph_html(cast, layouts, selected=cast[0].id)
    second = cast_graph_html(cast, layouts, selected=cast[5].id)
    assert first != second  # the opened NPC is marked
    assert layouts.memo.stats().misses == 1 and layouts.memo.stats().hits == 1
    edited = [cast[0].model_copy(update={"relationships": []}), *cast[1:]]
    cast_graph_html(edited, layouts)
    assert layouts.memo.stats().misses == 2
    assert "graph.layouts" in services.stats.table()
