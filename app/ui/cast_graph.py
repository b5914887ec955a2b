"""The interactive relationship graph of a world's cast, for the Library tab.

The server lays the graph out (networkx) and sends one self-contained SVG;
the few lines of script below add what a browser does with it, offline (no
library is fetched): wheel or buttons to zoom, drag to pan, hover for a
tie's description or an NPC's occupation (its ties light up), click an NPC
to open it (the ``node_click`` event carries its id). Zoom and pan survive a
re-render of the same world, e.g. after opening another of its NPCs.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import gradio as gr

from app.models import NPC
from app.services.graph import CastGraph, GraphLayouts, graph_svg

CLICK_EVENT = "node_click"
LEGEND = (
    "Ties: <b style='color:#c82828'>red</b> hostile · grey neutral · "
    "<b style='color:#28963c'>green</b> devoted · dashed = secret · arrows point from who "
    "feels to whom. Node colours are communities. Scroll or +/− to zoom, drag to pan, "
    "hover for details, click an NPC to open it."
)
EMPTY = "<p class='cast-graph-empty'>Open an NPC to see its world's cast and ties here.</p>"

# Bound once on the component's root, so the listeners survive every re-render of
# its HTML; ``watch`` restores the zoom when the same world is drawn again.
SCRIPT = """
const state = { view: null, key: null, drag: null, moved: false };
const svg = () => element.querySelector('svg.cast-graph');
const tip = () => element.querySelector('.cast-graph-tip');
const base = (s) => s.dataset.viewbox.split(' ').map(Number);
const show = (s, v) => { state.view = v; s.setAttribute('viewBox', v.join(' ')); };
const toSvg = (s, x, y) => {
  const p = s.createSVGPoint(); p.x = x; p.y = y;
  return p.matrixTransform(s.getScreenCTM().inverse());
};
const zoom = (s, factor, cx, cy) => {
  const [x, y, w, h] = state.view || base(s);
  const full = base(s);
  const f = Math.min(Math.max(factor, full[2] / 40 / w), (full[2] * 4) / w);
  show(s, [cx - (cx - x) * f, cy - (cy - y) * f, w * f, h * f]);
};
const restore = () => {
  const s = svg();
  if (!s) return;
  if (state.key === s.dataset.key && state.view) show(s, state.view);
  else { state.key = s.dataset.key; state.view = null; }
};
element.addEventListener('wheel', (e) => {
  const s = svg();
  if (!s || !s.contains(e.target)) return;
  e.preventDefault();
  const p = toSvg(s, e.clientX, e.clientY);
  zoom(s, e.deltaY > 0 ? 1.15 : 1 / 1.15, p.x, p.y);
}, { passive: false });
element.addEventListener('pointerdown', (e) => {
  const s = svg();
  if (!s || !s.contains(e.target) || e.button !== 0) return;
  state.drag = { x: e.clientX, y: e.clientY, view: state.view || base(s) };
  state.moved = false;
});
window.addEventListener('pointermove', (e) => {
  const s = svg();
  if (!state.drag || !s) return;
  const dx = e.clientX - state.drag.x, dy = e.clientY - state.drag.y;
  if (Math.abs(dx) + Math.abs(dy) > 4) state.moved = true;
  if (!state.moved) return;
  const scale = s.getScreenCTM().a;
  const [x, y, w, h] = state.drag.view;
  show(s, [x - dx / scale, y - dy / scale, w, h]);
});
window.addEventListener('pointerup', () => { state.drag = null; });
element.addEventListener('click', (e) => {
  const s = svg();
  const button = e.target.closest('[data-zoom]');
  if (button && s) {
    const [x, y, w, h] = state.view || base(s);
    if (button.dataset.zoom === 'reset') {
      state.view = null;
      s.setAttribute('viewBox', base(s).join(' '));
    } else zoom(s, button.dataset.zoom === 'in' ? 1 / 1.3 : 1.3, x + w / 2, y + h / 2);
    return;
  }
  const node = e.target.closest('g.node');
  if (node && !state.moved) trigger('node_click', { id: node.dataset.id });
});
element.addEventListener('mouseover', (e) => {
  const s = svg(), t = tip();
  if (!s || !t) return;
  const item = e.target.closest('[data-tip]');
  s.classList.remove('focus');
  s.querySelectorAll('.lit').forEach((el) => el.classList.remove('lit'));
  if (!item) { t.hidden = true; return; }
  t.textContent = item.dataset.tip;
  t.hidden = false;
  // Light what is hovered: an NPC with its ties and their other ends, or one tie.
  const ids = item.classList.contains('node')
    ? [item.dataset.id]
    : [item.dataset.source, item.dataset.target];
  s.classList.add('focus');
  item.classList.add('lit');
  const node = item.classList.contains('node');
  s.querySelectorAll('g.tie').forEach((tie) => {
    const touches = ids.includes(tie.dataset.source) || ids.includes(tie.dataset.target);
    if (node && touches) tie.classList.add('lit');
  });
  const lit = new Set(ids);
  s.querySelectorAll('g.tie.lit').forEach((tie) => {
    lit.add(tie.dataset.source);
    lit.add(tie.dataset.target);
  });
  s.querySelectorAll('g.node').forEach((n) => {
    if (lit.has(n.dataset.id)) n.classList.add('lit');
  });
});
element.addEventListener('mousemove', (e) => {
  const t = tip();
  if (!t || t.hidden) return;
  const box = element.getBoundingClientRect();
  t.style.left = `${e.clientX - box.left + 14}px`;
  t.style.top = `${e.clientY - box.top + 14}px`;
});
element.addEventListener('mouseleave', () => { const t = tip(); if (t) t.hidden = true; });
watch('value', restore);
restore();
"""

CSS = """
.cast-graph-wrap { position: relative; }
.cast-graph-tools { position: absolute; top: 6px; right: 6px; display: flex; gap: 4px; }
.cast-graph-tools button { width: 2em; height: 2em; border: 1px solid #999; border-radius: 4px;
  background: #fff; color: #222; cursor: pointer; font-weight: 700; }
.cast-graph-tip { position: absolute; z-index: 5; max-width: 360px; padding: 6px 8px;
  background: #222; color: #fff; border-radius: 4px; font-size: 13px; pointer-events: none; }
.cast-graph-legend { font-size: 12px; margin: 4px 0 0; }
"""


def graph_html(graph: CastGraph, *, selected: str | None = None) -> str:
    """The graph with its zoom buttons, tooltip box and legend."""
    if not graph.nodes:
        return EMPTY
    count = f"{len(graph.nodes)} NPCs · {len(graph.edges)} ties in {escape(graph.world)}"
    return (
        '<div class="cast-graph-wrap"><div class="cast-graph-tools">'
        '<button type="button" data-zoom="in" title="Zoom in">+</button>'
        '<button type="button" data-zoom="out" title="Zoom out">−</button>'
        '<button type="button" data-zoom="reset" title="Fit">⤢</button></div>'
        f'{graph_svg(graph, selected=selected)}<div class="cast-graph-tip" hidden></div>'
        f'<p class="cast-graph-legend">{count}. {LEGEND}</p></div>'
    )


def cast_graph_html(
    npcs: Sequence[NPC], layouts: GraphLayouts, *, selected: str | None = None
) -> str:
    """Lay out (or recall the layout of) and draw a cast (blocking: call it in a thread)."""
    world = npcs[0].world if npcs else ""
    return graph_html(layouts.layout(npcs, world=world), selected=selected)


def cast_graph_component() -> gr.HTML:
    """The component; listen to ``.node_click`` (its data has the NPC ``id``)."""
    return gr.HTML(
        EMPTY,
        js_on_load=SCRIPT,
        css_template=CSS,
        elem_id="cast-graph",
        label="Relationship graph",
    )


def clicked_npc(event: gr.EventData) -> str:
    """The id of the NPC a click on the graph chose."""
    npc_id = getattr(event, "id", None)
    return str(npc_id) if npc_id else ""
