"""Concurrency benchmark: is a cast as fast as the limits allow?

Against the fake OpenAI server (in its own process on 127.0.0.1, as a real
server would be) with latency L per call, N NPCs at concurrency c should take
ceil(N/c) * L. Prints, in one run: the wall time, that ideal, their ratio
(target <= 1.05), the same N one at a time (sequential baseline) and the
speedup, the median per-NPC overhead of NPC Forge's own code (prompt, limits,
validation, NPC; target <= 1 ms, measured with an instant in-process backend)
and the client CPU per streamed NPC (SDK, HTTP, SSE parsing and ours).

    python benchmarks/concurrency.py [--latency 0.2] [-n 40] [-c 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.backends.guard import GuardedBackend, RetryPolicy
from app.models import World
from app.services.generation import CastGenerator
from app.wiring import Services
from config import Settings
from tests import casts
from tests.doubles import ScriptedBackend

WORLD = World(name="Saltmere", era="Medieval", time_period="1340", detail="A fishing village.")


def _server_stats(base_url: str) -> dict[str, int]:
    stats_url = base_url.removesuffix("/v1") + "/stats"
    with urllib.request.urlopen(stats_url, timeout=5) as response:  # 127.0.0.1 only
        return json.loads(response.read())  # type: ignore[no-any-return]


@contextmanager
def fake_server(latency: float, module: str = "tests.fake_openai") -> Iterator[str]:
    """The fake server (``module``'s main) in a child process; yields its base URL."""
    command = [sys.executable, "-m", module, "--latency", str(latency)]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        deadline = time.monotonic() + 15
        while True:
            try:
                _server_stats(base_url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=10)


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
    started = time.perf_counter()
    outcomes = await casts.outcomes(services, WORLD, count, seed=1)
    elapsed = time.perf_counter() - started
    await services.aclose()
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        raise SystemExit(f"benchmark run had failures: {failed[:3]}")
    return elapsed


def _client_cpu_ms(base_url: str, count: int = 100) -> float:
    """CPU time this process spends per NPC streamed from a zero-latency server."""
    asyncio.run(_cast_seconds(base_url, 4, 2))
    started = time.process_time()
    asyncio.run(_cast_seconds(base_url, count, 1))
    return (time.process_time() - started) * 1000 / count


async def _overhead_ms(samples: int) -> float:
    services = Services(_settings("http://127.0.0.1:9/v1", 1))
    guard = GuardedBackend(
        ScriptedBackend(), concurrency=1, requests_per_minute=None, retry=RetryPolicy()
    )
    generator = CastGenerator(guard)
    specs = casts.specs(services, WORLD, samples, seed=1)
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

    with fake_server(args.latency) as base_url:
        asyncio.run(_cast_seconds(base_url, 2, 2))  # warm up imports and the connection pool
        concurrent = asyncio.run(_cast_seconds(base_url, args.n, args.c))
        max_in_flight = _server_stats(base_url)["max_in_flight"]
        sequential = asyncio.run(_cast_seconds(base_url, args.n, 1))
    with fake_server(0.0) as base_url:
        cpu_ms = _client_cpu_ms(base_url)
    overhead = asyncio.run(_overhead_ms(500))

    ideal = math.ceil(args.n / args.c) * args.latency
    print(f"N={args.n} c={args.c} L={args.latency * 1000:.0f} ms")
    print(f"concurrent wall time          {concurrent:8.3f} s")
    print(f"ideal ceil(N/c)*L             {ideal:8.3f} s")
    print(f"ratio                         {concurrent / ideal:8.3f}   (target <= 1.05)")
    print(f"sequential (c=1)              {sequential:8.3f} s")
    print(f"speedup                       {sequential / concurrent:8.2f}x")
    print(f"server max in flight          {max_in_flight:8d}   (limit c={args.c})")
    print(f"own overhead per NPC          {overhead:8.3f} ms (median; target <= 1 ms)")
    print(f"client CPU per streamed NPC   {cpu_ms:8.3f} ms (SDK + HTTP + SSE + ours)")


if __name__ == "__main__":
    main()
