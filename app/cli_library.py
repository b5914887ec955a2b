"""``npc-forge library list|search|show|edit|delete|share|unshare``: the library on the terminal.

What the Library tab does, for scripts: ``--json`` everywhere for pipes
(``show --json`` prints the NPC as the generate command writes it). A delete
takes the NPC's memories, conversations and imported card with it, as in the UI.
``share``/``unshare`` share a user's NPC with the team (or take it back), as
its owner does with the Library tab's "Shared with the team".
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from app.services.library import EDITABLE_FIELDS, MAX_RESULTS, field_text

if TYPE_CHECKING:  # the parser is built for --help: keep the app out of that import
    from app.models import NPC
    from app.wiring import Services

EXIT_OK = 0
SHOWN_FIELDS = ("appearance", "personality_traits", "backstory", "motivation", "secret")


def add_library_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    library = commands.add_parser("library", help="list, search, show, edit or delete saved NPCs")
    actions = library.add_subparsers(dest="library_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="saved NPCs, a line each")
    listing.add_argument("--world", help="only this world's NPCs")
    listing.add_argument("--tag", help="only NPCs with this tag")
    listing.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    search = actions.add_parser("search", help="the NPCs closest in meaning to a text")
    search.add_argument("query", help="e.g. 'grumpy blacksmith with a secret'")
    search.add_argument("-k", type=int, default=5, help=f"how many, 1-{MAX_RESULTS} (default 5)")
    search.add_argument("--world", help="only this world's NPCs")
    search.add_argument("--tag", help="only NPCs with this tag")
    show = actions.add_parser("show", help="one NPC, whole")
    show.add_argument("id", help="the NPC's id (see list or search)")
    edit = actions.add_parser("edit", help="set one field of an NPC by hand")
    edit.add_argument("id", help="the NPC's id")
    edit.add_argument(
        "field", choices=EDITABLE_FIELDS, metavar="FIELD", help=", ".join(EDITABLE_FIELDS)
    )
    edit.add_argument(
        "value", help="the new text (lists: comma-separated; sample lines: one per line)"
    )
    delete = actions.add_parser("delete", help="delete an NPC with its memories and chats")
    delete.add_argument("id", help="the NPC's id")
    share = actions.add_parser("share", help="share a user's NPC with the team")
    share.add_argument("id", help="the NPC's id")
    unshare = actions.add_parser("unshare", help="make a shared NPC its owner's alone again")
    unshare.add_argument("id", help="the NPC's id")
    for action in (listing, search, show, edit, delete, share, unshare):
        action.add_argument("--json", action="store_true", help="JSON out")


def _row(npc: NPC, **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "id": npc.id,
        "name": npc.name,
        "occupation": npc.occupation,
        "world": npc.world,
        "owner": npc.owner,
        "shared": npc.shared,
    }


def _line(npc: NPC, prefix: str = "") -> str:
    return f"{prefix}{npc.id}  {npc.name} · {npc.occupation} ({npc.world})"


def _print_json(value: Any, out: TextIO) -> None:
    out.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _print_npc(npc: NPC, out: TextIO) -> None:
    print(f"{npc.identity()}  [{npc.id}]", file=out)
    print(f"World: {npc.world}" + (f" · tags: {', '.join(npc.tags)}" if npc.tags else ""), file=out)
    for name in SHOWN_FIELDS:
        print(f"{name.replace('_', ' ').capitalize()}: {field_text(npc, name)}", file=out)
    print(f"Speech: {npc.speech_style}", file=out)
    for line in npc.sample_lines:
        print(f'  "{line}"', file=out)
    for tie in npc.relationships:
        secret = " (secret)" if tie.secret else ""
        print(f"  -> {tie.target_name}: {tie.type}{secret}", file=out)


async def run_library(
    args: argparse.Namespace, services: Services, out: TextIO | None = None
) -> int:
    # sys.stdout now, not at import (a test or a caller may have replaced it since)
    out = out if out is not None else sys.stdout
    library = services.library
    action = args.library_action
    if action == "list":
        npcs = await library.list_npcs(world=args.world, tag=args.tag, limit=max(1, args.limit))
        if args.json:
            _print_json([_row(npc) for npc in npcs], out)
        else:
            print("\n".join(_line(npc) for npc in npcs) or "No NPCs saved yet.", file=out)
    elif action == "search":
        hits = await library.search(args.query, k=args.k, world=args.world, tag=args.tag)
        if args.json:
            _print_json([_row(hit.npc, match=round(1 - hit.distance, 4)) for hit in hits], out)
        else:
            lines = [_line(hit.npc, f"{1 - hit.distance:.2f}  ") for hit in hits]
            print("\n".join(lines) or "No NPC matches yet.", file=out)
    elif action in ("show", "edit"):
        npc = await (
            library.get(args.id)
            if action == "show"
            else library.edit_field(args.id, args.field, args.value)
        )
        if args.json:
            _print_json(npc.model_dump(mode="json"), out)
        else:
            _print_npc(npc, out)
    elif action in ("share", "unshare"):
        npc = await library.share(args.id, action == "share")
        if args.json:
            _print_json(_row(npc), out)
        else:
            how = "shared with the team" if npc.shared else f"{npc.owner}'s alone"
            print(f"{npc.name} ({npc.id}) is {how}.", file=out)
    else:
        removed = await services.removal.remove(args.id)
        if args.json:
            gone = {"memories": removed.memories, "conversations": removed.conversations}
            _print_json(_row(removed.npc, **gone), out)
        else:
            print(removed.summary(), file=out)
    return EXIT_OK
