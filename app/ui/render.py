"""HTML for NPC cards. Pure functions, no Gradio: every NPC string is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Protocol

from app.models import NPC


class MediaLinks(Protocol):
    """A card's portrait and the audio of its sample lines (app/ui/media_routes.py)."""

    def portrait_uri(self, npc: NPC) -> str: ...

    def line_url(self, npc: NPC, line: str) -> str: ...


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


def _line(npc: NPC, line: str, media: MediaLinks | None) -> str:
    if media is None:
        return f"<li>“{escape(line)}”</li>"
    src = escape(media.line_url(npc, line))
    return (
        f"<li>“{escape(line)}” "
        f'<audio class="npc-voice" controls preload="none" src="{src}"></audio></li>'
    )


def voice_lines(npc: NPC, media: MediaLinks) -> str:
    """The sample lines with a play button each."""
    lines = "".join(_line(npc, line, media) for line in npc.sample_lines)
    return f'<ul class="npc-lines">{lines}</ul>'


def _whose(npc: NPC) -> str:
    """Whose the NPC is, when people sign in (nothing for the team's)."""
    return f"{escape(npc.owner)}'s · " if npc.owner else ""


def npc_card(npc: NPC, position: int, media: MediaLinks | None = None) -> str:
    """One finished NPC (with its portrait and play buttons when ``media`` is given)."""
    lines = "".join(_line(npc, line, media) for line in npc.sample_lines)
    portrait = (
        f'<img class="npc-portrait" src="{media.portrait_uri(npc)}" '
        f'alt="Portrait of {escape(npc.name)}" width="112" height="112">'
        if media is not None
        else ""
    )
    badges = "".join(
        f'<span class="npc-badge">{label}</span>'
        for label, shown in (
            ("cached", npc.cached),
            ("repaired", npc.repaired),
            ("shared with the team", npc.shared),
        )
        if shown
    )
    # style order: cards arrive in finishing order and are shown in request order.
    return (
        f'<article class="npc-card" data-npc-id="{escape(npc.id)}" style="order:{position}">'
        f'<header><span class="npc-pos">#{position}</span>'
        f"<h3>{escape(npc.name)}</h3>{badges}</header>{portrait}"
        f'<p class="npc-meta">{escape(npc.occupation)} · {npc.age_text()} · '
        f"{escape(npc.gender)}</p>"
        f'<p class="npc-traits">{_chips(npc.personality_traits)}</p>'
        f"<p><b>Appearance.</b> {escape(npc.appearance)}</p>"
        f"<p><b>Backstory.</b> {escape(npc.backstory)}</p>"
        f"<p><b>Wants.</b> {escape(npc.motivation)}</p>"
        f"<details><summary>Secret</summary><p>{escape(npc.secret)}</p></details>"
        f"<p><b>Speaks.</b> {escape(npc.speech_style)}</p>"
        f'<ul class="npc-lines">{lines}</ul>'
        f"<footer>{_whose(npc)}{escape(npc.backend)} · seed {npc.seed} · {escape(npc.id)}"
        f"{_timing(npc)}</footer>"
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
