"""``npc-forge worlds [list|show|new|rename|delete|grant|revoke]``: the World Builder
on the terminal.

``new`` makes a user world from flags (``--era``, ``--time-period``,
``--detail section=text``, ``--guardrail name=text``), from a world file
(``--from``) or drafted from a pitch (``--pitch``); flags given next to
``--from`` or ``--pitch`` override what they brought. Shipped worlds stay
read-only. ``show`` prints a world as its file holds it, so
``worlds show X > x.json`` is a download (its owner and editors go to stderr).
``grant NAME USER`` / ``revoke NAME USER`` let an account save over and rename a
saved world, or stop it; the CLI runs as the machine's owner (an admin), and the
accounts are the app's (``--auth``/``--auth-file`` here, or the environment).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from app.errors import InputError

if TYPE_CHECKING:  # the parser is built for --help: keep the app out of that import
    from app.models import World
    from app.services.world_access import WorldGrant
    from app.services.world_builder import WorldBuilder
    from app.wiring import Services

EXIT_OK = 0


def add_worlds_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    worlds = commands.add_parser(
        "worlds",
        help="list, show, make, rename, delete worlds or grant editing (default: list)",
        description="Worlds: the shipped ones (read-only) and your own, under the data directory.",
    )
    actions = worlds.add_subparsers(dest="worlds_action", metavar="ACTION")
    actions.add_parser(
        "list", help="every world: shipped, then saved ones (with owner and editors)"
    )
    show = actions.add_parser("show", help="print a world as JSON (its file's content)")
    show.add_argument("name", help="the world's name or file stem")
    new = actions.add_parser(
        "new", help="save a new world (the team's: made from the CLI, it has no owner)"
    )
    new.add_argument("name", nargs="?", help="its name (default: the drafted or file's name)")
    source = new.add_mutually_exclusive_group()
    source.add_argument("--from", dest="source", help="start from a world file or a world's name")
    source.add_argument("--pitch", help="draft it from one line, e.g. 'a lighthouse island, 1890'")
    new.add_argument("--era", help="the era, e.g. 'Victorian Scotland'")
    new.add_argument("--time-period", help="e.g. '1890' or 'the 25th century'")
    new.add_argument(
        "--detail", action="append", default=[], metavar="SECTION=TEXT",
        help="a detail section (repeatable), e.g. --detail 'places=The lighthouse, the jetty'",
    )  # fmt: skip
    new.add_argument(
        "--guardrail", action="append", default=[], metavar="NAME=TEXT",
        help="a rule every prompt gets (repeatable), e.g. --guardrail 'tone=bleak'",
    )  # fmt: skip
    new.add_argument("--backend", help="backend that drafts a --pitch (default auto)")
    new.add_argument("--seed", type=int, help="seed for a --pitch draft")
    new.add_argument("--replace", action="store_true", help="save over your world of that name")
    rename = actions.add_parser("rename", help="rename a saved world (its NPCs follow)")
    rename.add_argument("name")
    rename.add_argument("new_name")
    delete = actions.add_parser("delete", help="delete a saved world")
    delete.add_argument("name")
    for action, text in (
        ("grant", "let an account save over and rename a saved world"),
        ("revoke", "take an account's editing of a saved world back"),
    ):
        command = actions.add_parser(action, help=text)
        command.add_argument("name", help="the saved world's name")
        command.add_argument("user", help="the account's name")
        command.add_argument(
            "--auth", action="append", default=None, metavar="USER:PASS[:ROLE]",
            help="the app's accounts, as for `ui` (default: NPC_FORGE_AUTH)",
        )  # fmt: skip
        command.add_argument(
            "--auth-file", help="the app's auth file, as for `ui` (default: NPC_FORGE_AUTH_FILE)"
        )


def _pairs(values: list[str], flag: str) -> list[list[str]]:
    rows = []
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} {value!r}: write it as name=text.")
        rows.append([key.strip(), text.strip()])
    return rows


def _overridden(rows: list[list[str]], given: list[list[str]]) -> list[list[str]]:
    """``rows`` with the sections named in ``given`` replaced, the new ones added."""
    from app.services.world_builder import section_key

    by_key = {section_key(row[0]): row for row in given}
    kept = [by_key.pop(section_key(row[0]), row) for row in rows]
    return kept + list(by_key.values())


async def _start(args: argparse.Namespace, builder: WorldBuilder) -> World | None:
    """The world ``new`` starts from: a file, a known world, a draft, or nothing."""
    if args.pitch:
        draft = await builder.draft(args.pitch, backend=args.backend, seed=args.seed)
        print(f"Drafted from the pitch by {draft.backend}.", file=sys.stderr)
        return draft.world
    if args.source:
        path = Path(args.source)
        if path.suffix == ".json":  # a file; a world's name otherwise
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                raise InputError(f"Cannot read {path} ({exc.strerror}).") from None
            return builder.upload(data, path.name)
        return await builder.get(args.source)
    return None


async def _new(args: argparse.Namespace, builder: WorldBuilder, out: TextIO) -> int:
    from app.services.world_builder import check_form, form_rows

    start = await _start(args, builder)
    detail, guardrails = form_rows(start) if start is not None else ([], [])
    detail = _overridden(detail, _pairs(args.detail, "--detail"))
    guardrails = _overridden(guardrails, _pairs(args.guardrail, "--guardrail"))
    check = check_form(
        args.name or (start.name if start else ""),
        args.era or (start.era if start else ""),
        args.time_period or (start.time_period if start else ""),
        detail,
        guardrails,
    )
    world = check.required()
    path = await builder.save(world, replace=args.replace)
    print(f"Saved world {world.name!r} to {path}", file=out)
    return EXIT_OK


def _access(name: str, grant: WorldGrant) -> str:
    return f"{name!r}: {grant.describe()}"


async def run_worlds(
    args: argparse.Namespace, services: Services, out: TextIO | None = None
) -> int:
    from app.services.world_access import TEAM
    from app.services.world_builder import world_json

    out = out or sys.stdout
    builder = services.world_builder
    action = args.worlds_action or "list"
    if action == "list":
        for entry in await builder.list_worlds():
            kind = "shipped" if entry.shipped else "saved"
            owned = f"  {entry.grant.describe()}" if entry.grant not in (None, TEAM) else ""
            print(f"{kind:<8} {entry.name}  ({entry.path.name}){owned}", file=out)
    elif action == "show":
        world = await builder.get(args.name)
        out.write(world_json(world).decode() + "\n")
        if not services.worlds.is_shipped(world.name):  # stdout stays the world's file
            print(_access(world.name, await builder.grant_of(world.name)), file=sys.stderr)
    elif action in ("grant", "revoke"):
        change = builder.grant if action == "grant" else builder.revoke
        print(_access(args.name, await change(args.name, args.user)), file=out)
    elif action == "new":
        return await _new(args, builder, out)
    elif action == "rename":
        renamed, moved = await builder.rename(args.name, args.new_name)
        print(f"Renamed {args.name!r} to {renamed.name!r}; {moved} NPCs moved with it.", file=out)
    elif action == "delete":
        path, left = await builder.delete(args.name)
        kept = f" {left} NPCs of it stay in the library." if left else ""
        print(f"Deleted world {args.name!r} ({path.name}).{kept}", file=out)
    return EXIT_OK
