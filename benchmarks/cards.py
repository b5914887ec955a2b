"""Cards benchmark: importing card files and exporting a whole world.

    python benchmarks/cards.py [--cards 200] [--npcs 100]

Prints, in one run: the import of ``--cards`` files (half V2 JSON, half V3
PNG, made from the test cards with new names) into an in-memory library,
the kept cards written to a temporary folder as the app writes them; the
export of a world of ``--npcs`` generated NPCs in each card format; and the
schema check of one card. Times are wall-clock medians of three runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.models import NPC, World
from app.services.card_schemas import card_problems
from app.services.card_store import CardStore
from app.services.cards import npc_to_card, portrait_png
from app.services.exports import EXPORT_FORMATS, ExportInput, ExportService, build_export
from app.services.png_chunks import with_text_chunks

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "tests" / "cards"


class _Library:
    """The library calls an import makes, in memory (Chroma is not what is measured)."""

    def __init__(self) -> None:
        self.npcs: dict[str, NPC] = {}

    async def save(self, npcs: Sequence[NPC]) -> None:
        self.npcs.update({npc.id: npc for npc in npcs})

    async def get_many(self, ids: Sequence[str]) -> list[NPC]:
        return [self.npcs[i] for i in ids if i in self.npcs]


def _median(run: Callable[[], Any]) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _files(count: int) -> list[tuple[str, bytes]]:
    v2 = json.loads((CARDS / "odile_v2.json").read_text())
    v3 = json.loads((CARDS / "kestrel_v3.json").read_text())
    art = portrait_png("art")
    files = []
    for number in range(count // 2):
        v2["data"]["name"] = f"Odile {number}"
        files.append((f"odile{number}.json", json.dumps(v2).encode()))
        v3["data"]["name"] = f"Kestrel {number}"
        chunk = base64.b64encode(json.dumps(v3).encode()).decode()
        files.append((f"kestrel{number}.png", with_text_chunks(art, {"ccv3": chunk})))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=200)
    parser.add_argument("--npcs", type=int, default=100)
    args = parser.parse_args()

    files = _files(args.cards)

    def run_import() -> None:
        with tempfile.TemporaryDirectory() as folder:
            service = ExportService(cast(Any, _Library()), cast(Any, None), CardStore(Path(folder)))
            report = asyncio.run(service.import_cards(files))
            assert len(report.imported) == len(files) and not report.problems

    seconds = _median(run_import)
    print(f"import {len(files)} cards: {seconds:.2f} s ({seconds / len(files) * 1000:.1f} ms/card)")

    world_file = json.loads((ROOT / "assets" / "worlds" / "saltmere.json").read_text())
    world = World(**world_file | {"name": "Saltmere"})
    profile = json.loads((ROOT / "tests" / "cards" / "odile_v2.json").read_text())["data"]
    npcs = [
        NPC(
            name=f"Maud {n}",
            age=40,
            gender="female",
            occupation="baker",
            appearance="Flour to the elbows.",
            personality_traits=["warm", "stubborn"],
            backstory=profile["description"][:300],
            motivation="Feed the village.",
            secret="She waters the ale.",
            speech_style="Quick and warm.",
            sample_lines=["Bread's up!", "Mind the oven."],
            id=f"npc-{n}",
            world="Saltmere",
            backend="procedural:v1",
            seed=n,
        )
        for n in range(args.npcs)
    ]
    for fmt in EXPORT_FORMATS:
        if not fmt.startswith(("Character Card", "SillyTavern")):
            continue
        given = ExportInput(npcs, world, now=time.time(), whole_world=True)
        size = len(build_export(given, fmt).data)
        seconds = _median(lambda given=given, fmt=fmt: build_export(given, fmt))
        print(f"export {len(npcs)} NPCs as {fmt}: {seconds:.2f} s, {size / 1024:.0f} KiB")
    card = npc_to_card(npcs[0], world)
    seconds = _median(lambda: [card_problems(card) for _ in range(100)]) / 100
    print(f"schema check of one card: {seconds * 1000:.2f} ms")


if __name__ == "__main__":
    main()
