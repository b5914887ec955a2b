"""A world's cast and its relationships as a graph: laid out with networkx, drawn as SVG.

The layout is a force layout (Fruchterman-Reingold, ``spring_layout``) pulled
into communities (Louvain, over the ties' strengths), so allies and rivals
cluster; then every node's label box is pushed apart until none overlaps,
which keeps 50 names readable. The SVG is self-contained (no script, no
CDN): colours and dashes carry the tie, ``data-*`` attributes carry what the
browser shows on hover and what a click opens. Red is hostile (-1), grey
neutral, green devoted (+1); secret ties are dashed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from html import escape

from app.cache.memo import Memo
from app.models import NPC

LAYOUT_MEMO_SIZE = 32

NODE_RADIUS = 11.0
LABEL_FONT_PX = 12
# A sans-serif character at 12 px is at most ~7 px wide: label boxes are sized with it.
CHAR_WIDTH_PX = 7.0
LABEL_GAP_PX = 6.0
BOX_PADDING_PX = 4.0
MARGIN_PX = 30.0
COMMUNITY_PULL = 0.35  # weight of the extra edges that hold a community together
PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2",
    "#edc948", "#ff9da7", "#9c755f", "#e15759", "#bab0ac",
)  # fmt: skip


# Inside the SVG, so a downloaded or embedded drawing looks the same; every rule is
# scoped to svg.cast-graph.
STYLE = (
    "svg.cast-graph{width:100%;height:auto;max-height:82vh;background:#faf8f4;"
    "font-family:system-ui,sans-serif;user-select:none;cursor:grab;touch-action:none}"
    "svg.cast-graph .ties path{fill:none}"
    "svg.cast-graph .tie path.hit{stroke:transparent;stroke-width:10}"
    "svg.cast-graph .node{cursor:pointer}"
    "svg.cast-graph .node circle{stroke:#2b2b2b;stroke-width:1.5}"
    "svg.cast-graph .node text{font-size:12px;text-anchor:middle;fill:#1f1f1f;"
    "paint-order:stroke;stroke:#faf8f4;stroke-width:3px;stroke-linejoin:round}"
    "svg.cast-graph .node.selected circle{stroke:#000;stroke-width:4}"
    "svg.cast-graph .node.selected text{font-weight:700}"
    "svg.cast-graph.focus .tie:not(.lit){opacity:.1}"
    "svg.cast-graph.focus .node:not(.lit){opacity:.3}"
)


def weight_colour(weight: float) -> tuple[int, int, int]:
    """-1 -> red, 0 -> grey, +1 -> green, linearly in between."""
    weight = max(-1.0, min(1.0, weight))
    grey = (150, 150, 150)
    end = (200, 40, 40) if weight < 0 else (40, 150, 60)
    t = abs(weight)
    return tuple(round(g + (e - g) * t) for g, e in zip(grey, end, strict=True))  # type: ignore[return-value]


def _hex(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


@dataclass(frozen=True, slots=True)
class GraphNode:
    id: str
    name: str
    occupation: str
    x: float
    y: float
    community: int
    ties: int

    def label_box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the node and its name under it, padded."""
        half = max(NODE_RADIUS, len(self.name) * CHAR_WIDTH_PX / 2) + BOX_PADDING_PX
        top = self.y - NODE_RADIUS - BOX_PADDING_PX
        bottom = self.y + NODE_RADIUS + LABEL_GAP_PX + LABEL_FONT_PX + BOX_PADDING_PX
        return (self.x - half, top, self.x + half, bottom)


@dataclass(frozen=True, slots=True)
class GraphEdge:
    source: str
    target: str
    source_name: str
    target_name: str
    type: str
    weight: float
    secret: bool
    description: str

    def tip(self) -> str:
        secret = ", secret" if self.secret else ""
        text = f"{self.source_name} → {self.target_name}: {self.type} ({self.weight:+.1f}{secret})"
        return f"{text}. {self.description}" if self.description else text


@dataclass(frozen=True, slots=True)
class CastGraph:
    """Nodes with positions in pixels, the ties among them, and the drawing's bounds."""

    world: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    view: tuple[float, float, float, float]  # x, y, width, height

    def overlapping_labels(self) -> list[tuple[str, str]]:
        """Pairs of NPCs whose label boxes overlap (the layout leaves none)."""
        boxes = [(node.name, node.label_box()) for node in self.nodes]
        return [
            (a, b)
            for i, (a, box_a) in enumerate(boxes)
            for b, box_b in boxes[i + 1 :]
            if _overlap(box_a, box_b) is not None
        ]


def _overlap(
    a: tuple[float, float, float, float], b: tuple[float, float, float, float]
) -> tuple[float, float] | None:
    dx = min(a[2], b[2]) - max(a[0], b[0])
    dy = min(a[3], b[3]) - max(a[1], b[1])
    return (dx, dy) if dx > 0 and dy > 0 else None


def _ties(npcs: Sequence[NPC]) -> list[GraphEdge]:
    ids = {npc.id for npc in npcs}
    return [
        GraphEdge(
            npc.id,
            tie.target_id,
            npc.name,
            tie.target_name,
            tie.type,
            tie.weight,
            tie.secret,
            tie.description,
        )
        for npc in npcs
        for tie in npc.relationships
        if tie.target_id in ids and tie.target_id != npc.id
    ]


def _communities(npcs: Sequence[NPC], edges: Sequence[GraphEdge], seed: int) -> dict[str, int]:
    """Community of each NPC (Louvain over the ties' strengths); the unconnected share one."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(npc.id for npc in npcs)
    for edge in edges:
        strength = abs(edge.weight) + 0.3
        if graph.has_edge(edge.source, edge.target):
            graph[edge.source][edge.target]["weight"] += strength
        else:
            graph.add_edge(edge.source, edge.target, weight=strength)
    connected = graph.subgraph([n for n in graph if graph.degree(n) > 0])
    groups = nx.community.louvain_communities(connected, weight="weight", seed=seed)
    ordered = sorted(groups, key=lambda group: (-len(group), min(group)))
    community = {node: index for index, group in enumerate(ordered) for node in group}
    lonely = len(ordered)
    return {npc.id: community.get(npc.id, lonely) for npc in npcs}


def _force_layout(
    npcs: Sequence[NPC], edges: Sequence[GraphEdge], community: dict[str, int], seed: int
) -> dict[str, tuple[float, float]]:
    """Unit-square positions: ties pull, communities hold together, all repel."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(npc.id for npc in npcs)
    for edge in edges:
        graph.add_edge(edge.source, edge.target, weight=abs(edge.weight) + 0.3)
    members: dict[int, list[str]] = {}
    for npc in npcs:
        members.setdefault(community[npc.id], []).append(npc.id)
    for group in members.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if not graph.has_edge(a, b):
                    graph.add_edge(a, b, weight=COMMUNITY_PULL)
    count = len(npcs)
    positions = nx.spring_layout(
        graph, k=1.6 / math.sqrt(count), iterations=200, weight="weight", seed=seed
    )
    return {node: (float(x), float(y)) for node, (x, y) in positions.items()}


ASPECT = 1.4  # wider than tall, as the Library's column is


def _canvas(nodes: Sequence[GraphNode]) -> tuple[float, float]:
    """Width and height that give every label box room: ~2.2x their total area."""
    area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in (n.label_box() for n in nodes))
    height = max(300.0, math.sqrt(area * 2.2 / ASPECT))
    return height * ASPECT, height


def _separate(nodes: list[GraphNode], rounds: int = 3000) -> list[GraphNode]:
    """Push apart nodes whose label boxes overlap, each pair along the axis that frees
    it soonest, all pairs at once per round (numpy), until none overlaps."""
    import numpy as np

    boxes = np.array([node.label_box() for node in nodes])
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    xs = np.array([node.x for node in nodes])
    ys = np.array([node.y for node in nodes])
    need_x = (widths[:, None] + widths[None, :]) / 2
    need_y = (heights[:, None] + heights[None, :]) / 2
    # Nodes on the same spot part by their order in the cast, so the result is stable.
    order = np.sign(np.arange(len(nodes))[:, None] - np.arange(len(nodes))[None, :])
    for _ in range(rounds):
        dx, dy = xs[:, None] - xs[None, :], ys[:, None] - ys[None, :]
        over_x, over_y = need_x - np.abs(dx), need_y - np.abs(dy)
        clash = (over_x > 0) & (over_y > 0)
        np.fill_diagonal(clash, False)
        if not clash.any():
            break
        sideways = clash & (over_x / need_x < over_y / need_y)
        upwards = clash & ~sideways
        side_x = np.where(dx != 0, np.sign(dx), order)
        side_y = np.where(dy != 0, np.sign(dy), order)
        # Half the overlap each (plus a pixel, so touching boxes part), halved again
        # because a node with several clashes gets every push at once.
        xs = xs + (np.where(sideways, side_x * (over_x / 2 + 1), 0.0)).sum(axis=1) * 0.8
        ys = ys + (np.where(upwards, side_y * (over_y / 2 + 1), 0.0)).sum(axis=1) * 0.8
    return [replace(n, x=float(x), y=float(y)) for n, x, y in zip(nodes, xs, ys, strict=True)]


def layout_cast(npcs: Sequence[NPC], *, world: str = "", seed: int = 7) -> CastGraph:
    """Positions for a cast and its ties (deterministic for a seed)."""
    edges = _ties(npcs)
    if not npcs:
        return CastGraph(world, (), (), (0.0, 0.0, 420.0, 200.0))
    community = _communities(npcs, edges, seed)
    unit = (
        _force_layout(npcs, edges, community, seed) if len(npcs) > 1 else {npcs[0].id: (0.0, 0.0)}
    )
    degree = {npc.id: 0 for npc in npcs}
    for edge in edges:
        degree[edge.source] += 1
        degree[edge.target] += 1
    draft = [
        GraphNode(
            npc.id,
            npc.name,
            npc.occupation,
            x=unit[npc.id][0],
            y=unit[npc.id][1],
            community=community[npc.id],
            ties=degree[npc.id],
        )
        for npc in npcs
    ]
    width, height = _canvas(draft)
    xs, ys = [n.x for n in draft], [n.y for n in draft]
    x_span, y_span = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    scaled = [
        replace(n, x=(n.x - min(xs)) / x_span * width, y=(n.y - min(ys)) / y_span * height)
        for n in draft
    ]
    nodes = _separate(scaled)
    boxes = [node.label_box() for node in nodes]
    left = min(b[0] for b in boxes) - MARGIN_PX
    top = min(b[1] for b in boxes) - MARGIN_PX
    right = max(b[2] for b in boxes) + MARGIN_PX
    bottom = max(b[3] for b in boxes) + MARGIN_PX
    return CastGraph(world, tuple(nodes), tuple(edges), (left, top, right - left, bottom - top))


def _edge_path(a: GraphNode, b: GraphNode) -> tuple[str, str]:
    """A tie bent to its right (so A->B and B->A never lie on each other), and its arrowhead."""
    dx, dy = b.x - a.x, b.y - a.y
    length = math.hypot(dx, dy) or 1.0
    bend = min(40.0, 0.12 * length)
    cx, cy = (a.x + b.x) / 2 - dy / length * bend, (a.y + b.y) / 2 + dx / length * bend
    # The arrow stops at the target's rim, pointing along the curve's last tangent.
    tx, ty = b.x - cx, b.y - cy
    tangent = math.hypot(tx, ty) or 1.0
    ux, uy = tx / tangent, ty / tangent
    tip_x, tip_y = b.x - ux * (NODE_RADIUS + 2), b.y - uy * (NODE_RADIUS + 2)
    back_x, back_y = tip_x - ux * 9, tip_y - uy * 9
    wing_x, wing_y = -uy * 4.5, ux * 4.5
    arrow = (
        f"{tip_x:.1f},{tip_y:.1f} {back_x + wing_x:.1f},{back_y + wing_y:.1f} "
        f"{back_x - wing_x:.1f},{back_y - wing_y:.1f}"
    )
    return f"M{a.x:.1f},{a.y:.1f} Q{cx:.1f},{cy:.1f} {b.x:.1f},{b.y:.1f}", arrow


def _node_svg(node: GraphNode, selected: bool) -> str:
    colour = PALETTE[node.community % len(PALETTE)]
    ring = " selected" if selected else ""
    tip = f"{node.name} — {node.occupation} · {node.ties} ties · click to open"
    label_y = node.y + NODE_RADIUS + LABEL_GAP_PX + LABEL_FONT_PX - 2
    return (
        f'<g class="node{ring}" data-id="{escape(node.id)}" data-tip="{escape(tip)}">'
        f"<title>{escape(tip)}</title>"
        f'<circle cx="{node.x:.1f}" cy="{node.y:.1f}" r="{NODE_RADIUS:.0f}" fill="{colour}"/>'
        f'<text x="{node.x:.1f}" y="{label_y:.1f}">{escape(node.name)}</text></g>'
    )


def graph_svg(graph: CastGraph, *, selected: str | None = None) -> str:
    """The graph as one self-contained SVG element (the page's script adds pan and zoom)."""
    x, y, width, height = graph.view
    view = f"{x:.0f} {y:.0f} {width:.0f} {height:.0f}"
    if not graph.nodes:
        return (
            f'<svg class="cast-graph" viewBox="{view}" data-viewbox="{view}" data-key="" '
            'xmlns="http://www.w3.org/2000/svg"><text x="210" y="100" text-anchor="middle">'
            "No NPCs in this world yet.</text></svg>"
        )
    by_id = {node.id: node for node in graph.nodes}
    ties = []
    for edge in graph.edges:
        path, arrow = _edge_path(by_id[edge.source], by_id[edge.target])
        colour = _hex(weight_colour(edge.weight))
        width_px = 1.2 + 2.3 * abs(edge.weight)
        dash = ' stroke-dasharray="6 4"' if edge.secret else ""
        tip = escape(edge.tip())
        ties.append(
            f'<g class="tie" data-source="{escape(edge.source)}" '
            f'data-target="{escape(edge.target)}" data-tip="{tip}"><title>{tip}</title>'
            f'<path class="hit" d="{path}"/>'
            f'<path d="{path}" stroke="{colour}" stroke-width="{width_px:.1f}"{dash}/>'
            f'<polygon points="{arrow}" fill="{colour}"/></g>'
        )
    nodes = "".join(_node_svg(node, node.id == selected) for node in graph.nodes)
    return (
        f'<svg class="cast-graph" viewBox="{view}" data-viewbox="{view}" '
        f'data-key="{escape(graph.world)}" xmlns="http://www.w3.org/2000/svg" '
        f'role="img" aria-label="Relationships of {escape(graph.world)}">'
        f'<style>{STYLE}</style><g class="ties">{"".join(ties)}</g>'
        f'<g class="nodes">{nodes}</g></svg>'
    )


def _cast_key(npcs: Sequence[NPC], world: str) -> str:
    """What the layout depends on: the world, each NPC's id, name and ties, in order."""
    digest = hashlib.blake2b(world.encode(), digest_size=16)
    for npc in npcs:
        digest.update(f"\0{npc.id}\0{npc.name}\0{npc.occupation}".encode())
        for tie in npc.relationships:
            digest.update(
                f"\1{tie.target_id}\1{tie.type}\1{tie.weight}\1{tie.secret}\1{tie.description}".encode()
            )
    return digest.hexdigest()


class GraphLayouts:
    """Cast layouts, remembered: opening one NPC after another of a world (each
    redraws the graph around it) lays the world out once, until its ties change."""

    def __init__(self, maxsize: int = LAYOUT_MEMO_SIZE) -> None:
        self.memo: Memo[str, CastGraph] = Memo("graph.layouts", maxsize)

    def layout(self, npcs: Sequence[NPC], *, world: str = "") -> CastGraph:
        """``layout_cast`` (blocking CPU work: call it in a thread)."""
        return self.memo.get(_cast_key(npcs, world), lambda: layout_cast(npcs, world=world))
