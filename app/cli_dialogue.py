"""``npc-forge dialogue``: lines for NPCs and situations, as a file games read.

Without ``--out`` each line is printed as a JSON line the moment it is ready;
with it, the lines are written in request order as CSV (a localisation table),
JSON, Yarn Spinner or Ink, picked by the file's suffix.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from app.errors import InputError

if TYPE_CHECKING:  # the parser is built for --help: keep the app out of that import
    from app.models import NPC
    from app.services.dialogue import DialogueLine
    from app.wiring import Services

EXIT_OK, EXIT_PARTIAL = 0, 1


def add_dialogue_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    dialogue = commands.add_parser(
        "dialogue",
        help="write dialogue lines for NPCs and situations (CSV, JSON, Yarn, Ink)",
        description="Lines for each NPC in each situation, from the response cache when "
        "they are there; only the missing ones cost backend calls (one per NPC).",
    )
    dialogue.add_argument(
        "--npc", action="append", default=[], help="an NPC id from the library (repeatable)"
    )
    dialogue.add_argument("--world", help="also every NPC of this world in the library")
    dialogue.add_argument("--cast", help="NPCs from a JSON Lines file that `generate` wrote")
    dialogue.add_argument("--situations", help="a file of situations, one per line")
    dialogue.add_argument(
        "--shipped",
        nargs="*",
        metavar="KIND",
        help="the shipped situations: all of them, or only these kinds (greeting, barter, ...)",
    )
    dialogue.add_argument("--variants", type=int, default=1, help="lines per situation (1)")
    dialogue.add_argument("--backend", help="auto (default), procedural or openai")
    dialogue.add_argument(
        "-o",
        "--out",
        default="-",
        help="a .csv, .json, .yarn or .ink file (default: JSON Lines on stdout)",
    )


def _exists(path: str, what: str) -> str:
    if not Path(path).is_file():
        raise InputError(f"{path} does not exist; give {what}.")
    return path


def _read(path: str, what: str) -> str:
    return Path(_exists(path, what)).read_text(encoding="utf-8", errors="replace")


def _cast(path: str) -> list[NPC]:
    from app.cli_generate import read_finished

    npcs = read_finished(Path(_exists(path, "a JSON Lines file of NPCs")))
    if not npcs:
        raise InputError(f"{path} holds no NPCs; write one with `generate --out FILE`.")
    return npcs


async def _npcs(args: argparse.Namespace, services: Services) -> list[NPC]:
    npcs = await asyncio.to_thread(_cast, args.cast) if args.cast else []
    if args.npc or args.world or not npcs:
        npcs += await services.dialogue_planner.npcs(args.npc, args.world)
    return npcs


def _situations(args: argparse.Namespace, services: Services) -> list[str]:
    planner = services.dialogue_planner
    text = _read(args.situations, "a file of situations, one per line") if args.situations else ""
    picked: list[str] = []
    if args.shipped is not None:
        shipped = planner.shipped()
        unknown = [kind for kind in args.shipped if kind not in shipped]
        if unknown:
            raise InputError(
                f"No shipped situations of kind {', '.join(unknown)}; "
                f"the kinds are {', '.join(shipped)}."
            )
        picked = list(args.shipped or shipped)
    return planner.situations(text, picked)


async def run_dialogue(
    args: argparse.Namespace, services: Services, out: TextIO | None = None
) -> int:
    import orjson

    out = out or sys.stdout  # read now: tests and callers may have replaced it
    from app.services.dialogue_exports import export_format, export_lines
    from utils.jsonio import atomic_write_bytes

    to_file = args.out != "-"
    fmt = export_format(Path(args.out).suffix or "?") if to_file else None
    situations = await asyncio.to_thread(_situations, args, services)
    npcs = await _npcs(args, services)
    requests = services.dialogue_planner.requests(npcs, situations, args.variants)
    started = time.perf_counter()
    ordered: list[DialogueLine | None] = [None] * len(requests)
    async for delivered in services.dialogue.stream(requests, backend=args.backend):
        ordered[delivered.index] = delivered.line
        if not to_file:
            out.write(orjson.dumps(delivered.line.as_dict()).decode() + "\n")
            out.flush()
    lines = [line for line in ordered if line is not None]
    if fmt is not None:
        _, data = export_lines(lines, fmt)
        await asyncio.to_thread(atomic_write_bytes, Path(args.out), data)
    for line in lines:
        if line.error:
            print(
                f"failed: {line.npc_name} / {line.situation} / {line.variant}: {line.error}",
                file=sys.stderr,
            )
    _summary(services, args, lines, time.perf_counter() - started)
    return EXIT_PARTIAL if any(line.error for line in lines) else EXIT_OK


def _summary(
    services: Services, args: argparse.Namespace, lines: list[DialogueLine], seconds: float
) -> None:
    report = services.dialogue.last_run
    guarded = services.backends.get(args.backend)
    ok = sum(line.ok for line in lines)
    where = f" -> {args.out}" if args.out != "-" else ""
    print(
        f"{ok}/{len(lines)} lines from {guarded.name}: {report.cached} cached, "
        f"{report.unique - report.cached} new in {report.calls} calls "
        f"({services.dialogue.limits().get(guarded.name, 0)} at once) in {seconds:.2f} s{where}",
        file=sys.stderr,
    )
