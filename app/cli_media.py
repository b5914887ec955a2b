"""``npc-forge portrait NPC_ID --out face.png`` and ``npc-forge say NPC_ID "text" --out line.ogg``.

The NPC comes from the library, or with ``--from FILE`` from the JSON Lines
that ``generate`` writes (no library needed). ``portrait --explain`` prints
which part each slot chose and which words chose it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from app.errors import InputError

if TYPE_CHECKING:  # the parser is built for --help: keep the app out of that import
    from app.models import NPC
    from app.wiring import Services

EXIT_OK = 0


def add_media_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    portrait = commands.add_parser(
        "portrait",
        help="an NPC's portrait as PNG or SVG",
        description="Draw an NPC's portrait (painted by the images API when configured).",
    )
    portrait.add_argument("npc_id", help="the NPC's id (library, or --from)")
    portrait.add_argument("--out", required=True, help="output file: .png or .svg")
    portrait.add_argument("--from", dest="source", help="a .jsonl/.json of NPCs (from generate)")
    portrait.add_argument(
        "--procedural", action="store_true", help="the offline portrait even when an API is set"
    )
    portrait.add_argument("--explain", action="store_true", help="print the parts and why")
    say = commands.add_parser(
        "say",
        help="an NPC saying a line, as Ogg Opus audio",
        description="Speak a line in the NPC's voice (eSpeak NG offline, or the speech API).",
    )
    say.add_argument("npc_id", help="the NPC's id (library, or --from)")
    say.add_argument("text", nargs="?", help="what to say (default: its first sample line)")
    say.add_argument("--out", required=True, help="output file (.ogg)")
    say.add_argument("--from", dest="source", help="a .jsonl/.json of NPCs (from generate)")


def _npcs_in(path: Path) -> list[NPC]:
    from app.models import NPC

    if not path.is_file():
        raise InputError(f"{path} does not exist; give a file that `generate` wrote.")
    text = path.read_bytes()
    try:
        if path.suffix == ".jsonl":
            raw = [orjson.loads(line) for line in text.splitlines() if line.strip()]
        else:
            loaded = orjson.loads(text)
            raw = loaded.get("npcs", [loaded]) if isinstance(loaded, dict) else loaded
        return [NPC.model_validate(item) for item in raw if isinstance(item, dict) and "id" in item]
    except ValueError as exc:
        raise InputError(f"{path}: not NPC JSON ({str(exc).splitlines()[0]})") from None


async def _npc(args: argparse.Namespace, services: Services) -> NPC:
    if args.source:
        for npc in await asyncio.to_thread(_npcs_in, Path(args.source)):
            if npc.id == args.npc_id:
                return npc
        raise InputError(f"No NPC with id {args.npc_id!r} in {args.source}.")
    return await services.library.get(args.npc_id)


def _write(path: Path, data: bytes) -> None:
    from utils.jsonio import atomic_write_bytes

    atomic_write_bytes(path, data)


async def run_portrait(args: argparse.Namespace, services: Services) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".svg"):
        raise InputError(f"--out {out}: the portrait is written as .png or .svg.")
    npc = await _npc(args, services)
    portraits = services.portraits
    note = ""
    if out.suffix.lower() == ".svg":
        data = portraits.svg(npc).encode()
        kind = "procedural"
    else:
        image = await portraits.png(npc, kind="procedural" if args.procedural else "auto")
        data, note = image.png, image.note
        kind = "painted" if image.painted else "procedural"
    await asyncio.to_thread(_write, out, data)
    if args.explain:
        spec = portraits.spec(npc)
        for slot, parts in spec.parts.items():
            print(f"{slot:<12} {', '.join(parts):<22} {spec.because.get(slot, '')}")
        for name, reason in spec.because.items():
            if name.startswith("colour."):
                colour = spec.colours.get(name.split(".", 1)[1], "")
                print(f"{name:<12} {colour:<22} {reason}")
    if note:
        print(f"the images API failed, so this is the procedural portrait: {note}", file=sys.stderr)
    print(f"{out}: {kind} portrait of {npc.name}, {len(data):,} bytes", file=sys.stderr)
    return EXIT_OK


async def run_say(args: argparse.Namespace, services: Services) -> int:
    npc = await _npc(args, services)
    text = args.text if args.text is not None else npc.sample_lines[0]
    speech = await services.voices.say(npc, text)
    out = Path(args.out)
    if out.suffix.lower() != speech.suffix:
        print(f"note: the audio is Ogg Opus; {out.name} does not end in .ogg", file=sys.stderr)
    await asyncio.to_thread(_write, out, speech.audio)
    print(
        f"{out}: {npc.name} ({speech.voice}), {speech.duration_s:.1f} s, "
        f"{len(speech.audio):,} bytes",
        file=sys.stderr,
    )
    return EXIT_OK
