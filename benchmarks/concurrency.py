"""Concurrency benchmark: is a cast as fast as the limits allow?

Against the fake OpenAI server on 127.0.0.1 with a fixed latency L per call,
N NPCs at concurrency c should take ceil(N/c) * L. Prints, in one run:
the wall time, that ideal, their ratio (target <= 1.05), the same N one at a
time (sequential baseline) and the speedup, and the median per-call overhead
of NPC Forge's own code (prompt, limits, validation, NPC; target <= 1 ms),
measured with an in-process backend that answers instantly.

    python benchmarks/concurrency.py [--latency 0.2] [-n 40] [-c 8]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.backends.guard import GuardedBackend, RetryPolicy
from app.clients import Services
from app.models import World
from app.services.generation import CastGenerator, CastRequest, collect, plan_cast
from config import Settings
from tests.doubles import ScriptedBackend
from tests.fake_openai import FakeOpenAIServer
from tests.npc_fixtures import npc_responder

WORLD = World(name="Saltmere", era="Medieval", time_period="1340", detail="A fishing village.")


def _settings(base_url: str, concurrency: int) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=Path(tempfile.mkdtemp()),
        backend="openai",
        openai_base_url=base_url,
        openai_model="bench",
        max_concurrency=concurrency,
        requests_per_minute=1_000_000,
    )


async def _cast_seconds(base_url: str, count: int, concurrency: int) -> float:
    services = Services(_settings(base_url, concurrency))
    specs = plan_cast(
        CastRequest(world=WORLD, count=count, seed=1), services.personalities, max_npcs=1000
    )
    generator = services.cast_generator()
    started = time.perf_counter()
    outcomes = await collect(generator.run(specs), len(specs))
    elapsed = time.perf_counter() - started
    await services.aclose()
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        raise SystemExit(f"benchmark run had failures: {failed[:3]}")
    return elapsed


async def _overhead_ms(samples: int) -> float:
    services = Services(_settings("http://127.0.0.1:9/v1", 1))
    guard = GuardedBackend(
        ScriptedBackend(), concurrency=1, requests_per_minute=None, retry=RetryPolicy()
    )
    generator = CastGenerator(guard, services.personalities)
    specs = plan_cast(
        CastRequest(world=WORLD, count=samples, seed=1), services.personalities, max_npcs=10_000
    )
    timings = []
    for spec in specs:
        started = time.perf_counter()
        await generator.generate_one(spec)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per call, s")
    parser.add_argument("-n", type=int, default=40, help="NPCs")
    parser.add_argument("-c", type=int, default=8, help="concurrency")
    args = parser.parse_args()

    with FakeOpenAIServer(latency=args.latency, responder=npc_responder) as server:
        asyncio.run(_cast_seconds(server.base_url, 2, 2))  # warm up imports and the connection pool
        concurrent = asyncio.run(_cast_seconds(server.base_url, args.n, args.c))
        assert server.max_in_flight <= args.c, server.max_in_flight
        sequential = asyncio.run(_cast_seconds(server.base_url, args.n, 1))
    overhead = asyncio.run(_overhead_ms(500))

    ideal = math.ceil(args.n / args.c) * args.latency
    print(f"N={args.n} c={args.c} L={args.latency * 1000:.0f} ms")
    print(f"concurrent wall time   {concurrent:8.3f} s")
    print(f"ideal ceil(N/c)*L      {ideal:8.3f} s")
    print(f"ratio                  {concurrent / ideal:8.3f}   (target <= 1.05)")
    print(f"sequential (c=1)       {sequential:8.3f} s")
    print(f"speedup                {sequential / concurrent:8.2f}x")
    print(f"own overhead per call  {overhead:8.3f} ms (median; target <= 1 ms)")


if __name__ == "__main__":
    main()
