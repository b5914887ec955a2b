"""``npc-forge generate``: a cast as JSON Lines, each NPC written as it finishes."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from app.clients import Services
from app.errors import InputError
from app.services.generation import (
    CastRequest,
    NPCOutcome,
    new_cast_seed,
    parse_name_lines,
    plan_cast,
)
from app.services.worlds import resolve_world
from utils.jsonio import atomic_write_bytes, dumps

if TYPE_CHECKING:
    from tqdm import tqdm

    from app.models import NPC
    from config import Settings

EXIT_OK, EXIT_PARTIAL = 0, 1


def npc_line(npc: NPC) -> bytes:
    return dumps(npc.model_dump(mode="json")) + b"\n"


def _progress(total: int, enabled: bool) -> tqdm[None]:
    from tqdm import tqdm

    return tqdm(total=total, unit="npc", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def read_finished(path: Path) -> list[NPC]:
    """NPCs already in a JSON Lines file; a torn last line (a crash) is dropped."""
    from app.models import NPC

    if not path.exists():
        return []
    npcs = []
    for line in path.read_bytes().splitlines():
        try:
            npcs.append(NPC.model_validate_json(line))
        except ValueError:  # pydantic's ValidationError: a partial or foreign line
            continue
    return npcs


def _resumable(args: argparse.Namespace, to_file: bool) -> list[NPC]:
    if not args.resume:
        return []
    if not to_file:
        raise InputError("--resume needs --out FILE: the file the interrupted run was writing.")
    return read_finished(Path(args.out))


def _resume_seed(args: argparse.Namespace, resumed: list[NPC]) -> int:
    """The cast seed: given, or the one the interrupted run wrote down."""
    seeds = {npc.cast_seed for npc in resumed if npc.cast_seed is not None}
    if len(seeds) > 1:
        raise InputError(f"{args.out} holds NPCs of several casts; resume one cast per file.")
    if seeds and args.seed is not None and args.seed not in seeds:
        raise InputError(
            f"{args.out} was written with seed {seeds.pop()}, not {args.seed}; "
            "drop --seed to resume it."
        )
    if seeds:
        return seeds.pop()
    return args.seed if args.seed is not None else new_cast_seed()


async def run_generate(args: argparse.Namespace, settings: Settings) -> int:
    services = Services(settings)
    try:
        return await _generate(args, services)
    finally:
        await services.aclose()


async def _generate(args: argparse.Namespace, services: Services) -> int:
    settings = services.settings
    world = resolve_world(
        world_path=Path(args.world) if args.world else None,
        setting=args.setting,
        worlds_dir=services.worlds_dir,
        max_setting_chars=settings.max_setting_chars,
    )
    named = [entry for line in args.name for entry in parse_name_lines(line)]
    to_file = args.out != "-"
    resumed = _resumable(args, to_file)
    cast_seed = _resume_seed(args, resumed)
    avoid: set[str] = set()
    if args.save:  # only then is Chroma opened (and imported)
        avoid = await services.library.used_names(world.name, except_cast_seed=cast_seed)
    request = CastRequest(
        world=world,
        count=args.count,
        names=tuple(name for name, _ in named),
        traits=tuple(args.traits),
        temperature=settings.default_temperature if args.temperature is None else args.temperature,
        seed=cast_seed,
        avoid=tuple(sorted(avoid)),
    )
    specs = plan_cast(
        request,
        services.personalities,
        max_npcs=settings.max_npcs,
        name_traits=[traits for _, traits in named],
    )
    generator = services.cast_generator()

    # Positions already in the file (a resumed run) are kept, not generated again.
    ordered: list[NPCOutcome | None] = [None] * len(specs)
    finished_before = {npc.id: npc for npc in resumed}
    for index, spec in enumerate(specs):
        npc = finished_before.get(spec.npc_id(generator.guarded.name))
        if npc is not None:
            ordered[index] = NPCOutcome(index=index, spec=spec, npc=npc)
    todo = [index for index, outcome in enumerate(ordered) if outcome is None]

    if to_file:
        # A resumed file is rewritten without any torn last line, then appended to.
        atomic_write_bytes(Path(args.out), b"".join(npc_line(npc) for npc in resumed))
    # Opening a local file is instant; an async file API would buy nothing here.
    out: TextIO = Path(args.out).open("a", encoding="utf-8") if to_file else sys.stdout  # noqa: ASYNC230, SIM115
    show_progress = sys.stderr.isatty() and not args.no_progress
    failures: list[NPCOutcome] = []
    started = time.perf_counter()
    progress = _progress(len(specs), show_progress)
    progress.update(len(specs) - len(todo))
    try:
        pending = [specs[index] for index in todo]
        async for outcome in generator.run(pending, use_cache=not args.no_cache):
            outcome.index = todo[outcome.index]
            ordered[outcome.index] = outcome
            if outcome.npc is not None:
                out.write(npc_line(outcome.npc).decode())
                out.flush()  # a finished NPC survives a crash or Ctrl-C
            else:
                failures.append(outcome)
                progress.write(f"NPC {outcome.index + 1} failed: {outcome.error}", file=sys.stderr)
            progress.update(1)
    finally:
        progress.close()
        if to_file:
            out.close()

    if to_file and not failures:
        # Streamed in finishing order; leave the file in request order.
        lines = b"".join(npc_line(o.npc) for o in ordered if o is not None and o.npc is not None)
        atomic_write_bytes(Path(args.out), lines)

    finished = [o.npc for o in ordered if o is not None and o.npc is not None]
    if args.save and finished:
        await services.library.save(finished)
        services.remember_world(world)
    elapsed = time.perf_counter() - started
    done = len(specs) - len(failures)
    cached = sum(1 for o in ordered if o is not None and o.npc is not None and o.npc.cached)
    from_cache = f", {cached} from the cache" if cached else ""
    where = f" -> {args.out}" if to_file else ""
    if len(todo) < len(specs):
        where += f" ({len(specs) - len(todo)} kept from the file)"
    where += " (saved to the library)" if args.save and finished else ""
    print(
        f"{done}/{len(specs)} NPCs from {generator.guarded.name}{from_cache} in {elapsed:.2f} s "
        f"(seed {specs[0].cast_seed}){where}",
        file=sys.stderr,
    )
    return EXIT_PARTIAL if failures else EXIT_OK
