"""Cast graph benchmark: layout time and label overlaps for 12, 50, 100 and 200 NPCs.

    python benchmarks/graph.py

Each cast is real procedural NPCs of a shipped world with procedural
relationships (200 = two casts of 100 in one world). Prints the median of
three layouts (the first call also imports networkx and is reported apart),
the ties, the communities found, the overlapping label pairs (target 0) and
the drawing's size in pixels (it is shown at about 1:1 at full width).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.models import NPC
from app.services.graph import layout_cast
from app.wiring import Services
from config import Settings
from tests import casts

SIZES = (12, 50, 100, 200)


async def _cast(services: Services, count: int, seed: int) -> list[NPC]:
    world = services.worlds.get("Saltmere")
    outcomes = await casts.outcomes(services, world, count, seed=seed, backend="procedural")
    npcs = [o.npc for o in outcomes if isinstance(o.npc, NPC)]
    return await services.refine.refiner("procedural").relationships(
        npcs, world, seed=3, temperature=0.9
    )


async def _casts() -> list[NPC]:
    settings = Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp()))  # type: ignore[call-arg]
    services = Services(settings)
    try:
        return await _cast(services, 100, 5) + await _cast(services, 100, 6)
    finally:
        await services.aclose()


def main() -> None:
    npcs = asyncio.run(_casts())
    started = time.perf_counter()
    layout_cast(npcs[:2])
    print(f"first layout (imports networkx): {time.perf_counter() - started:.2f} s")
    print(f"{'NPCs':>5} {'median s':>9} {'ties':>5} {'groups':>6} {'overlaps':>8}  size px")
    for size in SIZES:
        cast = npcs[:size]
        times = []
        for _ in range(3):
            started = time.perf_counter()
            graph = layout_cast(cast, world="Saltmere")
            times.append(time.perf_counter() - started)
        groups = len({node.community for node in graph.nodes})
        overlaps = len(graph.overlapping_labels())
        width, height = graph.view[2], graph.view[3]
        print(
            f"{size:>5} {statistics.median(times):>9.2f} {len(graph.edges):>5} {groups:>6} "
            f"{overlaps:>8}  {width:.0f} x {height:.0f}"
        )


if __name__ == "__main__":
    main()
