"""Command line: ``ui`` (default), ``generate``, ``chat``, ``cards``, ``dialogue``, and more.

Kept light on purpose: ``--help`` and a procedural ``generate`` never import
gradio or the OpenAI SDK; those load only for the commands that use them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from app import __version__
from app.errors import NPCForgeError
from app.logs import configure_logging

if TYPE_CHECKING:
    from app.wiring import Services
    from config import Settings

log = logging.getLogger("npc_forge")

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npc-forge",
        description="Generate, browse and talk to non-player characters. "
        "With no command, starts the web UI.",
    )
    parser.add_argument("--version", action="version", version=f"npc-forge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    ui = commands.add_parser("ui", help="start the web UI (default)")
    ui.add_argument("--host", help="interface to bind (default: GRADIO_SERVER_NAME or 127.0.0.1)")
    ui.add_argument("--port", type=int, help="port (default: GRADIO_SERVER_PORT or 7860)")
    ui.add_argument("--share", action="store_true", help="also create a public Gradio share link")
    ui.add_argument("--backend", help="default backend in the UI (auto, procedural, openai)")
    ui.add_argument(
        "--auth",
        action="append",
        default=None,
        metavar="USER:PASS[:ROLE]",
        help="an account that may sign in (repeatable; role admin or designer, the default)",
    )
    ui.add_argument(
        "--auth-file", help="accounts, one user:password[:role] per line (see hash-password)"
    )
    ui.add_argument(
        "--no-auth",
        action="store_true",
        help="allow --share or a public --host without sign-in (anyone with the link gets in)",
    )
    commands.add_parser(
        "hash-password",
        help="read a password (not echoed) and print its hash for an auth file",
    )

    gen = commands.add_parser(
        "generate",
        help="generate a cast of NPCs as JSON Lines",
        description="Generate NPCs; each is written as soon as it is finished.",
    )
    gen.add_argument("--world", help="world file path, or a shipped world's name (see `worlds`)")
    gen.add_argument("--setting", help="free-text setting (alone, or as notes added to --world)")
    gen.add_argument("-n", "--count", type=int, default=5, help="how many NPCs (default 5)")
    gen.add_argument(
        "--name",
        action="append",
        default=[],
        help="a name to use (repeatable); 'Name: trait, trait' gives that NPC traits too",
    )
    gen.add_argument(
        "--traits", type=_split_list, default=[], help="traits every NPC gets, comma separated"
    )
    gen.add_argument("--backend", help="auto (default), procedural or openai")
    gen.add_argument("--seed", type=int, help="seed for a reproducible cast")
    gen.add_argument(
        "--temperature", type=float, help="creativity 0-2 (default NPC_FORGE_DEFAULT_TEMPERATURE)"
    )
    gen.add_argument("--concurrency", type=int, help="NPCs generated at once")
    gen.add_argument("--rpm", type=float, help="requests per minute limit")
    gen.add_argument("--model", help="model name for the openai backend")
    gen.add_argument(
        "--base-url", help="OpenAI-compatible server URL, e.g. http://127.0.0.1:11434/v1"
    )
    gen.add_argument("-o", "--out", default="-", help="output .jsonl file (default: stdout)")
    gen.add_argument(
        "--no-cache",
        action="store_true",
        help="ignore cached responses (new ones are still stored)",
    )
    gen.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    gen.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run: keep the NPCs already in --out, make the rest",
    )
    gen.add_argument(
        "--save",
        action="store_true",
        help="also keep the NPCs in the library, avoiding names it already has in this world",
    )

    chat = commands.add_parser(
        "chat",
        help="talk to a library NPC, replies streamed (lines from stdin)",
        description="Talk to an NPC of the library; it remembers earlier conversations.",
    )
    chat.add_argument("npc_id", help="the NPC's id (see the Library tab, or generate --save)")
    chat.add_argument("--player", help="your name, as the NPC should know you")
    chat.add_argument("--conversation", help="continue this conversation (its id)")
    chat.add_argument("--backend", help="auto (default), procedural or openai")

    from app.cli_memory import add_memory_parser

    add_memory_parser(commands)

    from app.cli_library import add_library_parser

    add_library_parser(commands)

    from app.cli_cards import add_cards_parser

    add_cards_parser(commands)

    from app.cli_media import add_media_parsers

    add_media_parsers(commands)

    from app.cli_dialogue import add_dialogue_parser

    add_dialogue_parser(commands)

    cache = commands.add_parser("cache", help="show or clear the response cache")
    cache.add_argument("action", choices=["stats", "clear"])

    stats = commands.add_parser("stats", help="print a running app's cache and latency figures")
    stats.add_argument(
        "--url", default="http://127.0.0.1:7860", help="the app's address (default %(default)s)"
    )
    stats.add_argument("--json", action="store_true", help="print the raw JSON")
    stats.add_argument(
        "--login", metavar="USER[:PASS]", help="an account, when the app asks to sign in"
    )

    commands.add_parser("backends", help="list the backends and which one 'auto' picks")
    from app.cli_worlds import add_worlds_parser

    add_worlds_parser(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    from config import get_settings

    return get_settings(
        backend=getattr(args, "backend", None),
        max_concurrency=getattr(args, "concurrency", None),
        requests_per_minute=getattr(args, "rpm", None),
        openai_model=getattr(args, "model", None),
        openai_base_url=getattr(args, "base_url", None),
        auth=tuple(args.auth) if getattr(args, "auth", None) else None,
        auth_file=getattr(args, "auth_file", None),
    )


def _secrets(settings: Settings) -> list[str]:
    """What the log redactor hides: the API key and the plain passwords of the
    accounts (given on the command line, in the environment or in the auth file)."""
    from app.services.accounts import Accounts

    key = settings.openai_api_key
    secrets = [key.get_secret_value()] if key is not None else []
    # Malformed accounts are refused with their message when the app starts.
    with contextlib.suppress(NPCForgeError):
        secrets += Accounts.from_settings(settings).passwords()
    return secrets


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "ui"
    try:
        settings = _settings(args)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        print(f"error: invalid setting: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_USAGE
    quiet = command != "ui" and "log_level" not in settings.model_fields_set
    configure_logging(settings.cli_log_level if quiet else settings.log_level, _secrets(settings))
    try:
        if command == "ui":
            return _run_ui(args, settings)
        if command == "generate":
            from app.cli_generate import run_generate

            return asyncio.run(_with_services(run_generate, args, settings))
        if command == "chat":
            from app.cli_chat import run_chat

            return asyncio.run(_with_services(run_chat, args, settings))
        if command == "library":
            from app.cli_library import run_library

            return asyncio.run(_with_services(run_library, args, settings))
        if command == "memory":
            from app.cli_memory import run_memory

            return asyncio.run(_with_services(run_memory, args, settings))
        if command == "cards":
            from app.cli_cards import run_cards

            return asyncio.run(_with_services(run_cards, args, settings))
        if command in ("portrait", "say"):
            from app.cli_media import run_portrait, run_say

            run = run_portrait if command == "portrait" else run_say
            return asyncio.run(_with_services(run, args, settings))
        if command == "dialogue":
            from app.cli_dialogue import run_dialogue

            return asyncio.run(_with_services(run_dialogue, args, settings))
        if command == "cache":
            return _cache_command(args.action, settings, sys.stdout)
        if command == "stats":
            from app.cli_stats import print_stats

            return print_stats(args.url, as_json=args.json, out=sys.stdout, login=args.login)
        if command == "hash-password":
            return _hash_password(settings, sys.stdout)
        if command == "backends":
            return _list_backends(settings, sys.stdout)
        if command == "worlds":
            from app.cli_worlds import run_worlds

            return asyncio.run(_with_services(run_worlds, args, settings))
    except NPCForgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except BrokenPipeError:  # `... | head` stopped reading: not a failure
        # Python's docs: point stdout at devnull, or flushing it at exit fails again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    raise AssertionError(f"unhandled command {command}")  # argparse rejects others


def _run_ui(args: argparse.Namespace, settings: Settings) -> int:
    from app.ui import launch
    from app.wiring import Services

    # `python main.py` with no command has none of the ui command's flags.
    launch(
        Services(settings),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        share=getattr(args, "share", False),
        no_auth=getattr(args, "no_auth", False),
    )
    return EXIT_OK


def _hash_password(settings: Settings, out: TextIO) -> int:
    import getpass

    from app.services.accounts import hash_password

    password = getpass.getpass("Password: ")
    if not password or password != getpass.getpass("Again: "):
        print("error: the two passwords differ (or are empty); nothing printed", file=sys.stderr)
        return EXIT_USAGE
    print(hash_password(password, iterations=settings.auth_hash_iterations), file=out)
    return EXIT_OK


async def _with_services(
    command: Callable[[argparse.Namespace, Services], Awaitable[int]],
    args: argparse.Namespace,
    settings: Settings,
) -> int:
    """Run an async command with the app's parts, closing them however it ends."""
    from app.wiring import Services

    services = Services(settings)
    try:
        return await command(args, services)
    finally:
        await services.aclose()


def _cache_command(action: str, settings: Settings, out: TextIO) -> int:
    from app.wiring import Services

    services = Services(settings)
    cache = services.response_cache
    if cache is None or cache.disk is None:
        print("The response cache is off (NPC_FORGE_CACHE_ENABLED=false).", file=out)
        return EXIT_OK
    disk = cache.disk
    if action == "clear":
        print(f"Removed {disk.clear()} cached responses from {disk.directory}", file=out)
        return EXIT_OK
    # Read the assets once, so the file caches show what a start-up costs.
    services.assets.warm()
    services.worlds.warm()
    usage = disk.usage()
    print(f"Response cache: {disk.directory}", file=out)
    print(
        f"  {usage.entries} entries (max {disk.max_entries}), "
        f"{usage.bytes / 1024:.1f} KiB (max {disk.max_bytes / 1024 / 1024:.0f} MiB)",
        file=out,
    )
    print(
        "Hits and misses below count this process only; the running app's are in its Stats tab.",
        file=out,
    )
    print(services.stats.table(), file=out)
    return EXIT_OK


def _list_backends(settings: Settings, out: TextIO) -> int:
    from app.backends.registry import default_registry, resolve_backend_name

    chosen = resolve_backend_name(settings, "auto")
    for name in default_registry().names():
        marker = "  <- auto" if name == chosen else ""
        print(f"{name}{marker}", file=out)
    return EXIT_OK
