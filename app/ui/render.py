"""HTML for NPC cards. Pure functions, no Gradio: every NPC string is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from app.models import NPC


def _chips(items: Sequence[str]) -> str:
    return "".join(f'<span class="npc-chip">{escape(item)}</span>' for item in items)


def _timing(npc: NPC) -> str:
    if npc.timing is None:
        return ""
    t = npc.timing
    return (
        '<details class="npc-timing"><summary>timing</summary>'
        f"queue {t.queue_ms:.0f} ms · backend {t.backend_ms:.0f} ms · parse {t.parse_ms:.1f} ms"
        f" · repair {t.repair_ms:.0f} ms · total {t.total_ms:.0f} ms</details>"
    )


def npc_card(npc: NPC, position: int) -> str:
    """One finished NPC."""
    lines = "".join(f"<li>“{escape(line)}”</li>" for line in npc.sample_lines)
    badges = "".join(
        f'<span class="npc-badge">{label}</span>'
        for label, shown in (("cached", npc.cached), ("repaired", npc.repaired))
        if shown
    )
    # style order: cards arrive in finishing order and are shown in request order.
    return (
        f'<article class="npc-card" data-npc-id="{escape(npc.id)}" style="order:{position}">'
        f'<header><span class="npc-pos">#{position}</span>'
        f"<h3>{escape(npc.name)}</h3>{badges}</header>"
        f'<p class="npc-meta">{escape(npc.occupation)} · {npc.age_text()} · '
        f"{escape(npc.gender)}</p>"
        f'<p class="npc-traits">{_chips(npc.personality_traits)}</p>'
        f"<p><b>Appearance.</b> {escape(npc.appearance)}</p>"
        f"<p><b>Backstory.</b> {escape(npc.backstory)}</p>"
        f"<p><b>Wants.</b> {escape(npc.motivation)}</p>"
        f"<details><summary>Secret</summary><p>{escape(npc.secret)}</p></details>"
        f"<p><b>Speaks.</b> {escape(npc.speech_style)}</p>"
        f'<ul class="npc-lines">{lines}</ul>'
        f"<footer>{escape(npc.backend)} · seed {npc.seed} · {escape(npc.id)}{_timing(npc)}</footer>"
        "</article>"
    )


def failed_card(position: int, label: str, error: str) -> str:
    return (
        f'<article class="npc-card npc-failed" style="order:{position}">'
        f'<header><span class="npc-pos">#{position}</span><h3>{escape(label)}</h3></header>'
        f"<p>Failed: {escape(error)}</p>"
        "<p>Press <b>Retry failed</b> to try this one again; the rest of the cast is kept.</p>"
        "</article>"
    )


EMPTY_CAST = '<div class="npc-empty">No NPCs yet: choose a world and press Generate.</div>'
