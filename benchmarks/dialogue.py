"""Dialogue benchmark: what a batch of lines costs cold and warm.

500 line requests with 40% duplicates (30 NPCs x 10 situations = 300 unique
lines, then 200 repeats, shuffled) against the fake OpenAI server in its own
process with latency L per call. Prints, in one run: backend calls made against
the target (unique misses / situations per call), wall time cold, warm in the
same app (memory tier, then disk) and warm in a new app (disk only), the
cold/warm ratios and the hit rates.

    python benchmarks/dialogue.py [--latency 0.2] [-n 500] [--duplicates 0.4]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.services.dialogue import LineRequest
from app.wiring import Services
from benchmarks.concurrency import _server_stats, fake_server
from config import Settings
from tests.dialogue_fixtures import make_npc

SITUATIONS = [
    "greets the player at dawn", "says goodbye as the player leaves", "haggles over a price",
    "offers the player a job", "rewards the player", "is attacked by the player",
    "mutters while working", "catches the player stealing", "shares a rumour",
    "asked about the missing ship",
]  # fmt: skip


def _server_requests(base_url: str) -> int:
    return _server_stats(base_url)["requests"]


def _requests(total: int, duplicates: float) -> list[LineRequest]:
    unique = round(total * (1 - duplicates))
    npcs = [make_npc(f"Villager {n:02d}") for n in range(math.ceil(unique / len(SITUATIONS)))]
    distinct = [LineRequest(n, s) for n in npcs for s in SITUATIONS][:unique]
    rng = random.Random(14)
    requests = distinct + [rng.choice(distinct) for _ in range(total - unique)]
    rng.shuffle(requests)
    return requests


def _settings(base_url: str, data_dir: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=data_dir,
        backend="openai",
        openai_base_url=base_url,
        openai_model="bench",
        requests_per_minute=1_000_000,
        library_autosave=False,
        log_level="WARNING",
    )


async def _run(services: Services, requests: list[LineRequest]) -> tuple[float, float]:
    """Wall time and hit rate of one get_dialogues."""
    started = time.perf_counter()
    lines = await services.dialogue.get_dialogues(requests)
    elapsed = time.perf_counter() - started
    failed = [line.error for line in lines if line.error]
    if failed or len(lines) != len(requests):
        raise SystemExit(f"benchmark run had failures: {failed[:3]}")
    return elapsed, sum(line.cached for line in lines) / len(lines)


async def _measure(base_url: str, requests: list[LineRequest]) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp())
    warmup = Services(_settings(base_url, Path(tempfile.mkdtemp())))
    await warmup.dialogue.get_dialogues(requests[:3])  # imports and the connection pool
    await warmup.aclose()
    services = Services(_settings(base_url, data_dir))
    before = _server_requests(base_url)
    cold, cold_hits = await _run(services, requests)
    calls = _server_requests(base_url) - before
    report = services.dialogue.last_run
    assert services.response_cache is not None
    await services.response_cache.flush()  # the cold run's disk writes, off the clock
    warm, warm_hits = await _run(services, requests)
    await services.aclose()
    fresh = Services(_settings(base_url, data_dir))  # a new process would start so
    disk, disk_hits = await _run(fresh, requests)
    await fresh.aclose()
    return {
        "unique": report.unique,
        "calls": calls,
        "per_call": services.settings.dialogue_situations_per_call,
        "limit": services.dialogue.limits().get("openai:bench", 0),
        "cold": cold,
        "warm": warm,
        "disk": disk,
        "cold_hits": cold_hits,
        "warm_hits": warm_hits,
        "disk_hits": disk_hits,
        "warm_calls": _server_requests(base_url) - before - calls,
    }


async def _overhead_us(requests: list[LineRequest]) -> float:
    """NPC Forge's own time per request, cold, against an instant in-process backend
    (lookup, dedupe, batching, prompts, parsing, cache writes)."""
    from app.backends.registry import BackendRegistry
    from tests.dialogue_fixtures import LinesBackend

    backend = LinesBackend()
    registry = BackendRegistry()
    registry.register("scripted", lambda settings, context: backend)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=Path(tempfile.mkdtemp()), backend="scripted",
        library_autosave=False, log_level="WARNING",
    )  # fmt: skip
    services = Services(settings, registry)
    await services.dialogue.get_dialogues(requests[:3])
    started = time.perf_counter()
    await services.dialogue.get_dialogues(requests)
    elapsed = time.perf_counter() - started
    await services.aclose()
    return elapsed / len(requests) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per call, s")
    parser.add_argument("-n", type=int, default=500, help="line requests")
    parser.add_argument("--duplicates", type=float, default=0.4, help="share of repeats")
    args = parser.parse_args()
    requests = _requests(args.n, args.duplicates)
    with fake_server(args.latency, "tests.dialogue_fixtures") as base_url:
        m = asyncio.run(_measure(base_url, requests))
    overhead = asyncio.run(_overhead_us(_requests(args.n, args.duplicates)))
    target = math.ceil(m["unique"] / m["per_call"])
    print(f"{args.n} requests, {args.duplicates:.0%} duplicates, L={args.latency * 1000:.0f} ms, "
          f"{m['limit']:.0f} calls at once")  # fmt: skip
    print(f"unique lines                  {m['unique']:8.0f}")
    print(f"backend calls, cold           {m['calls']:8.0f}   (target unique/{m['per_call']:.0f} "
          f"= {target}; one per request would be {args.n})")  # fmt: skip
    print(f"backend calls, warm           {m['warm_calls']:8.0f}")
    ideal = math.ceil(m["calls"] / m["limit"]) * args.latency
    print(f"deduplicated (no call, no hit) {1 - m['unique'] / args.n:7.0%}")
    print(f"wall time cold                {m['cold']:8.3f} s   "
          f"(ideal ceil(calls/limit)*L = {ideal:.2f} s)")  # fmt: skip
    print(f"wall time warm (same app)     {m['warm'] * 1000:8.1f} ms   "
          f"ratio {m['cold'] / m['warm']:.0f}x")  # fmt: skip
    print(f"wall time warm (new app)      {m['disk'] * 1000:8.1f} ms   "
          f"ratio {m['cold'] / m['disk']:.0f}x")  # fmt: skip
    print(f"own overhead per request      {overhead:8.0f} us (cold, instant backend)")
    print(f"hit rate cold / warm / new    {m['cold_hits']:.0%} / {m['warm_hits']:.0%} / "
          f"{m['disk_hits']:.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
