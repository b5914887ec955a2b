"""A picture of a cast's relationships: NPCs on a circle, ties coloured by weight.

Drawn with Pillow (it ships with Gradio), so no plotting library is needed:
red is hostile (-1), grey neutral, green devoted (+1); secret ties are dashed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from app.models import NPC

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

SIZE = 900
NODE_RADIUS = 34
BACKGROUND = (250, 248, 244)
TEXT = (40, 40, 40)


def weight_colour(weight: float) -> tuple[int, int, int]:
    """-1 -> red, 0 -> grey, +1 -> green, linearly in between."""
    weight = max(-1.0, min(1.0, weight))
    grey = (150, 150, 150)
    end = (200, 40, 40) if weight < 0 else (40, 150, 60)
    t = abs(weight)
    return tuple(round(g + (e - g) * t) for g, e in zip(grey, end, strict=True))  # type: ignore[return-value]


def _layout(count: int) -> list[tuple[float, float]]:
    centre, radius = SIZE / 2, SIZE / 2 - NODE_RADIUS - 70
    return [
        (
            centre + radius * math.cos(2 * math.pi * i / count - math.pi / 2),
            centre + radius * math.sin(2 * math.pi * i / count - math.pi / 2),
        )
        for i in range(count)
    ]


def _dashed(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    end: tuple[float, float],
    fill: tuple[int, int, int],
    width: int,
    dash: float = 12.0,
) -> None:
    length = math.dist(start, end)
    steps = max(1, int(length // dash))
    for step in range(0, steps, 2):
        a, b = step / steps, min(1.0, (step + 1) / steps)
        draw.line(
            [
                (start[0] + (end[0] - start[0]) * a, start[1] + (end[1] - start[1]) * a),
                (start[0] + (end[0] - start[0]) * b, start[1] + (end[1] - start[1]) * b),
            ],
            fill=fill,
            width=width,
        )


def _arrow_tip(start: tuple[float, float], end: tuple[float, float]) -> list[tuple[float, float]]:
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    tip = (end[0] - NODE_RADIUS * math.cos(angle), end[1] - NODE_RADIUS * math.sin(angle))
    spread = 0.4
    return [
        tip,
        (tip[0] - 16 * math.cos(angle - spread), tip[1] - 16 * math.sin(angle - spread)),
        (tip[0] - 16 * math.cos(angle + spread), tip[1] - 16 * math.sin(angle + spread)),
    ]


def relationship_graph(npcs: Sequence[NPC]) -> Image.Image:
    """A PIL image of the ties among ``npcs`` (ties to others are left out)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=15)
    small = ImageFont.load_default(size=12)
    if not npcs:
        draw.text((SIZE / 2, SIZE / 2), "No NPCs", fill=TEXT, font=font, anchor="mm")
        return image
    positions = dict(zip((npc.id for npc in npcs), _layout(len(npcs)), strict=True))
    for npc in npcs:
        for tie in npc.relationships:
            if tie.target_id not in positions:
                continue
            start, end = positions[npc.id], positions[tie.target_id]
            colour = weight_colour(tie.weight)
            width = 2 + round(3 * abs(tie.weight))
            if tie.secret:
                _dashed(draw, start, end, colour, width)
            else:
                draw.line([start, end], fill=colour, width=width)
            draw.polygon(_arrow_tip(start, end), fill=colour)
            middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
            draw.text(middle, tie.type, fill=colour, font=small, anchor="mm")
    for npc in npcs:
        x, y = positions[npc.id]
        draw.ellipse(
            [x - NODE_RADIUS, y - NODE_RADIUS, x + NODE_RADIUS, y + NODE_RADIUS],
            fill=(255, 255, 255),
            outline=TEXT,
            width=2,
        )
        initials = "".join(part[0] for part in npc.name.split()[:2]).upper()
        draw.text((x, y), initials, fill=TEXT, font=font, anchor="mm")
        draw.text((x, y + NODE_RADIUS + 14), npc.name, fill=TEXT, font=font, anchor="mm")
    legend = "red = hostile · grey = neutral · green = devoted · dashed = secret"
    draw.text((SIZE / 2, SIZE - 18), legend, fill=TEXT, font=small, anchor="mm")
    return image


def relationship_graph_png(npcs: Sequence[NPC]) -> bytes:
    buffer = io.BytesIO()
    relationship_graph(npcs).save(buffer, format="PNG")
    return buffer.getvalue()
