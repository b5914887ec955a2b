"""``npc-forge memory import|search|clear``: an NPC's long-term memory, for scripts.

``search`` prints the ranked memories with their scores as a reply would use
them; ``--queries FILE`` answers one query per line, one JSON line each,
paying the start-up once.

The CLI runs as the machine's owner and sees every user's memories;
``--owner USER`` acts as one signed-in user would: ``import`` makes the
memories theirs, ``search`` reads only theirs and the team's, ``clear``
forgets only theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import orjson

from app.errors import InputError

if TYPE_CHECKING:  # the parser is built for --help: keep the app out of that import
    from app.wiring import Services

EXIT_OK, EXIT_PARTIAL = 0, 1


def add_memory_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    memory = commands.add_parser("memory", help="import, search or clear an NPC's memories")
    actions = memory.add_subparsers(dest="memory_action", metavar="ACTION", required=True)
    load = actions.add_parser("import", help="memories from a JSON Lines file, batched")
    load.add_argument("--npc", required=True, help="the NPC's id")
    load.add_argument("--player", help="whose memories these are (optional)")
    load.add_argument("file", help='JSON Lines: {"text": ..., "created_at": ISO-8601, ...}')
    owner = "the signed-in user whose memories these are (default: the team's)"
    load.add_argument("--owner", help=owner)
    search = actions.add_parser("search", help="the ranked memories for a query, with scores")
    search.add_argument("--npc", required=True, help="the NPC's id")
    asked = search.add_mutually_exclusive_group(required=True)
    asked.add_argument("--query", help="what to look for")
    asked.add_argument("--queries", help="a file of queries, one per line (JSON Lines out)")
    search.add_argument("-k", type=int, default=None, help="how many (default NPC_FORGE_MEMORY_K)")
    search.add_argument("--player", help="only this player's memories")
    search.add_argument("--at", help='"now" for recency, ISO-8601 (default: the real now)')
    search.add_argument("--json", action="store_true", help="JSON out")
    search.add_argument("--owner", help="only this user's memories and the team's")
    clear = actions.add_parser("clear", help="forget everything this NPC remembers")
    clear.add_argument("--npc", required=True, help="the NPC's id")
    clear.add_argument("--owner", help="forget only this user's memories of it")


def _lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path} does not exist; give {what}.")
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _at(value: str | None) -> float | None:
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--at {value!r} is not an ISO-8601 time, e.g. 2026-12-01T18:00:00Z."
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


async def run_memory(
    args: argparse.Namespace, services: Services, out: TextIO | None = None
) -> int:
    # sys.stdout now, not at import (a test or a caller may have replaced it since)
    out = out if out is not None else sys.stdout
    memory = services.memory
    if args.memory_action == "import":
        lines = await asyncio.to_thread(_lines, Path(args.file), "a JSON Lines file of memories")
        report = await memory.import_jsonl(args.npc, lines, player=args.player, owner=args.owner)
        print(report.summary(), file=out)
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_PARTIAL if report.bad else EXIT_OK
    if args.memory_action == "clear":
        if args.owner:
            removed = await memory.clear_owned(args.npc, args.owner)
            print(f"Forgot {removed:,} memories of {args.npc} by {args.owner}.", file=out)
        else:
            removed = await memory.clear(args.npc)
            print(f"Forgot {removed:,} memories of {args.npc}.", file=out)
        return EXIT_OK
    now = _at(args.at)
    owners = (args.owner, "") if args.owner else None
    if args.queries:
        queries = await asyncio.to_thread(_lines, Path(args.queries), "a file of queries")
        for query in filter(None, (q.strip() for q in queries)):
            found = await memory.retrieve(
                args.npc, query, player=args.player, owners=owners, k=args.k, now=now
            )
            row = {"query": query, "memories": [m.as_dict() for m in found]}
            out.write(orjson.dumps(row).decode() + "\n")
        return EXIT_OK
    found = await memory.retrieve(
        args.npc, args.query, player=args.player, owners=owners, k=args.k, now=now
    )
    if args.json:
        out.write(orjson.dumps([m.as_dict() for m in found], option=orjson.OPT_INDENT_2).decode())
        out.write("\n")
        return EXIT_OK
    if not found:
        print("No memories yet.", file=out)
    for rank, scored in enumerate(found, 1):
        print(
            f"{rank}. {scored.score:.2f} (recency {scored.recency:.2f}, importance "
            f"{scored.importance:.2f}, relevance {scored.relevance:.2f}, gate {scored.gate:.2f}) "
            f"{scored.text}",
            file=out,
        )
    return EXIT_OK
