"""``npc-forge cards import|export|check``: Character Cards from the command line.

``import`` reads card files (PNG or JSON, V1/V2/V3) into the library, each
kept whole beside its NPC; ``export`` writes an NPC, or its whole world, in
any export format; ``check`` says whether files are spec-valid cards, as
strict validators see them, without importing anything.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from app.errors import InputError

if TYPE_CHECKING:  # the parser is built for --help: keep the app out of that import
    from app.wiring import Services

EXIT_OK, EXIT_PARTIAL, EXIT_NONE = 0, 1, 2
# Short names for the export formats (the UI's labels work too).
FORMAT_NAMES = {
    "json": "JSON",
    "jsonl": "JSON Lines",
    "csv": "CSV",
    "md": "Markdown",
    "v2-json": "Character Card V2 (JSON)",
    "v2-png": "Character Card V2 (PNG)",
    "v3-json": "Character Card V3 (JSON)",
    "v3-png": "Character Card V3 (PNG)",
    "charx": "Character Card V3 (CHARX)",
    "lorebook": "SillyTavern World Info (JSON)",
}


def add_cards_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    cards = commands.add_parser("cards", help="import, export or check Character Cards")
    actions = cards.add_subparsers(dest="cards_action", metavar="ACTION", required=True)
    load = actions.add_parser(
        "import", help="card files (.png, .json, .charx, or a zip of them) into the library"
    )
    load.add_argument("files", nargs="+", help="Character Card V1/V2/V3 files")
    out = actions.add_parser("export", help="an NPC, or its whole world, in a format")
    out.add_argument("npc_id", help="the NPC's id (see the Library tab, or generate --save)")
    out.add_argument(
        "--format", "-f", default="v2-png",
        help=f"{', '.join(FORMAT_NAMES)} (default v2-png), or a format's full name",
    )  # fmt: skip
    out.add_argument("--world", action="store_true", help="the NPC's whole world (a zip of cards)")
    out.add_argument("-o", "--out", help="file to write (default: the export's own name)")
    check = actions.add_parser("check", help="are these files spec-valid V2/V3 cards?")
    check.add_argument("files", nargs="+", help="card files (.png, .json or .charx)")


def _format(name: str) -> str:
    from app.services.exports import EXPORT_FORMATS

    label = FORMAT_NAMES.get(name.lower(), name)
    if label not in EXPORT_FORMATS:
        raise InputError(f"Unknown format {name!r}; use one of {', '.join(FORMAT_NAMES)}.")
    return label


def _read(paths: list[str]) -> list[tuple[str, bytes]]:
    files = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise InputError(
                f"{name} does not exist; give card files (.png, .json, .charx or a zip of them)."
            )
        files.append((path.name, path.read_bytes()))
    return files


def check_cards(paths: list[str], out: TextIO) -> int:
    """Each file's card against the spec schema, as it is in the file (before any mending)."""
    from app.services.card_import import raw_card
    from app.services.card_schemas import card_problems

    bad = 0
    for name, data in _read(paths):
        try:
            problems = card_problems(raw_card(data, name))
        except InputError as exc:
            problems = [str(exc).removeprefix(f"{name}: ")]
        bad += bool(problems)
        print(f"{name}: {'valid' if not problems else 'INVALID'}", file=out)
        for problem in problems:
            print(f"  {problem}", file=out)
    return EXIT_OK if not bad else EXIT_PARTIAL


async def run_cards(args: argparse.Namespace, services: Services, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up now: tests and callers may replace it
    if args.cards_action == "check":
        return await asyncio.to_thread(check_cards, args.files, out)
    if args.cards_action == "import":
        report = await services.exports.import_cards(await asyncio.to_thread(_read, args.files))
        for npc in report.imported:
            print(f"{npc.id}\t{npc.name}", file=out)
        for line in [*report.notes, *report.problems]:
            print(line, file=sys.stderr)
        count, files = len(report.imported), len(args.files)
        refused = f"; {len(report.problems)} refused" if report.problems else ""
        print(
            f"Imported {count} card{'s' * (count != 1)} from {files} file{'s' * (files != 1)}"
            f"{refused}.",
            file=sys.stderr,
        )
        return EXIT_OK if not report.problems else EXIT_PARTIAL if count else EXIT_NONE
    scope = "its whole world" if args.world else "this NPC"
    exported = await services.exports.export(args.npc_id, scope, _format(args.format))
    path = Path(args.out or exported.filename)
    await asyncio.to_thread(path.write_bytes, exported.data)
    plural = "s" if exported.count != 1 else ""
    print(f"Wrote {path} ({exported.count} NPC{plural}, {len(exported.data):,} bytes).", file=out)
    return EXIT_OK
