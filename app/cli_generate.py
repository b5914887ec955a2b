"""``npc-forge generate``: a cast as JSON Lines, each NPC written as it finishes."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from app.errors import InputError
from app.services.generation import NPCOutcome
from app.services.planning import CastRequest, new_cast_seed, parse_name_lines
from app.wiring import Services
from utils.jsonio import atomic_write_bytes, dumps

if TYPE_CHECKING:
    from tqdm import tqdm

    from app.models import NPC

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


async def run_generate(args: argparse.Namespace, services: Services) -> int:
    resolved = await asyncio.to_thread(services.worlds.resolve, args.world, args.setting)
    if resolved.warning:
        print(f"warning: {resolved.warning}", file=sys.stderr)
    to_file = args.out != "-"
    resumed = _resumable(args, to_file)
    temperature = args.temperature
    request = CastRequest(
        world=resolved.world,
        count=args.count,
        temperature=services.cast.limits.default_temperature
        if temperature is None
        else temperature,
        named=tuple(named for line in args.name for named in parse_name_lines(line)),
        traits=tuple(args.traits),
        seed=_resume_seed(args, resumed),
    )
    # Only with --save is Chroma opened (and imported): for the names to avoid.
    plan = await services.cast.plan(request, save=args.save)
    specs = plan.specs

    # Positions already in the file (a resumed run) are kept, not generated again.
    finished_before = {npc.id: npc for npc in resumed}
    todo = plan.positions_missing(finished_before)
    ordered: list[NPCOutcome | None] = [None] * len(specs)
    for index, spec in enumerate(specs):
        npc = finished_before.get(spec.npc_id(plan.backend))
        if npc is not None:
            ordered[index] = NPCOutcome(index=index, spec=spec, npc=npc)

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
        async with services.cast.run(plan, todo, use_cache=not args.no_cache) as run:
            async for outcome in run.outcomes():
                ordered[outcome.index] = outcome
                if outcome.npc is not None:
                    out.write(npc_line(outcome.npc).decode())
                    out.flush()  # a finished NPC survives a crash or Ctrl-C
                else:
                    failures.append(outcome)
                    progress.write(
                        f"NPC {outcome.index + 1} failed: {outcome.error}", file=sys.stderr
                    )
                progress.update(1)
    finally:
        progress.close()
        if to_file:
            out.close()

    if to_file and not failures:
        # Streamed in finishing order; leave the file in request order.
        lines = b"".join(npc_line(o.npc) for o in ordered if o is not None and o.npc is not None)
        atomic_write_bytes(Path(args.out), lines)

    report = await run.saved()
    elapsed = time.perf_counter() - started
    done = len(specs) - len(failures)
    cached = sum(1 for o in ordered if o is not None and o.npc is not None and o.npc.cached)
    from_cache = f", {cached} from the cache" if cached else ""
    where = f" -> {args.out}" if to_file else ""
    if len(todo) < len(specs):
        where += f" ({len(specs) - len(todo)} kept from the file)"
    if report is not None and report.saved:
        where += f" ({report.saved} saved to the library)"
    if report is not None and report.error:
        print(f"warning: not saved to the library: {report.error}", file=sys.stderr)
    print(
        f"{done}/{len(specs)} NPCs from {plan.backend}{from_cache} in {elapsed:.2f} s "
        f"(seed {plan.cast_seed}){where}",
        file=sys.stderr,
    )
    return EXIT_PARTIAL if failures else EXIT_OK
