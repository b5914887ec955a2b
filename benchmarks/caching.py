"""Caching benchmark: every cache's cost and payoff, measured in one run.

    python benchmarks/caching.py

Prints: memory-tier hit latency (target p50 <= 50 us), disk-tier hit and
miss, compact orjson write vs json.dump(indent=2) of a 100-NPC cast (target
>= 5x faster and >= 30% smaller), an mtime-keyed read hit vs re-parsing a
100 KB world file (target >= 20x), and the hit rate of a workload that
repeats prompts (target >= 90%).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson

from app.cache.disk import DiskTier
from app.cache.memory import MemoryTier
from app.cache.response import ResponseCache
from utils.cached_json import JSONFileCache


def _p50_us(samples_ns: list[int]) -> float:
    return statistics.median(samples_ns) / 1000


def _time_ns(fn: Callable[[], object], repeat: int) -> list[int]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - started)
    return samples


def _key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def _npc(i: int, rng: random.Random) -> dict[str, object]:
    """A stand-in profile for the cache-latency figures."""
    words = [
        "salt",
        "herring",
        "reeve",
        "tithe",
        "storm",
        "lantern",
        "abbey",
        "nets",
        "harbour",
        "debt",
        "oath",
    ]

    def prose(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."

    return {
        "id": f"npc-{i:016x}",
        "name": f"Villager {i}",
        "age": rng.randint(16, 80),
        "gender": rng.choice(["male", "female", "non-binary"]),
        "occupation": "net mender",
        "appearance": prose(35),
        "personality_traits": ["stubborn", "kind", "secretive"],
        "backstory": prose(70),
        "motivation": prose(15),
        "secret": prose(15),
        "speech_style": prose(10),
        "sample_lines": [prose(12), prose(10), prose(8)],
        "world": "Saltmere",
        "backend": "procedural:v1",
        "seed": rng.randrange(2**31),
        "timing": {
            "queue_ms": 0.1,
            "backend_ms": 1.2,
            "parse_ms": 0.1,
            "repair_ms": 0.0,
            "total_ms": 1.5,
        },
    }


async def _cache_latencies(directory: Path) -> dict[str, float]:
    memory = MemoryTier(1024)
    cache = ResponseCache(memory, DiskTier(directory))
    value = {"profile": _npc(0, random.Random(0)), "repaired": False}

    async def compute() -> object:
        return value

    for i in range(200):
        await cache.get_or_compute(_key(i), compute)
    await cache.flush()

    async def timed(fn: Callable[[], object], repeat: int) -> list[int]:
        samples = []
        for _ in range(repeat):
            started = time.perf_counter_ns()
            await fn()  # type: ignore[misc]
            samples.append(time.perf_counter_ns() - started)
        return samples

    hit = await timed(lambda: cache.get_or_compute(_key(1), compute), 5000)
    raw_memory = _time_ns(lambda: memory.get(_key(1)), 20000)

    def disk_hit() -> object:
        memory.clear()
        return cache.get(_key(2))

    disk = await timed(disk_hit, 500)
    misses = iter(range(10_000, 20_000))
    miss = await timed(lambda: cache.get(_key(next(misses))), 500)
    return {
        "memory hit via get_or_compute": _p50_us(hit),
        "memory tier get": _p50_us(raw_memory),
        "disk hit (memory cleared)": _p50_us(disk),
        "miss (memory + disk lookup)": _p50_us(miss),
    }


def _real_cast(count: int = 100) -> list[dict[str, object]]:
    """A realistic cast: 100 NPCs from the procedural generator, as exported."""
    from app.wiring import Services
    from config import Settings
    from tests import casts

    services = Services(Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp())))  # type: ignore[call-arg]
    world = services.worlds.resolve("saltmere", None).world
    outcomes = asyncio.run(casts.outcomes(services, world, count, seed=1, backend="procedural"))
    return [o.npc.model_dump(mode="json") for o in outcomes if o.npc is not None]


def _write_formats(directory: Path) -> tuple[float, float, float, float]:
    cast = _real_cast()
    compact_path, pretty_path = directory / "cast.json", directory / "cast-indented.json"

    def compact() -> None:
        compact_path.write_bytes(orjson.dumps(cast))

    def indented() -> None:
        with pretty_path.open("w") as handle:
            json.dump(cast, handle, indent=2)

    fast = statistics.median(_time_ns(compact, 200))
    slow = statistics.median(_time_ns(indented, 200))
    return fast / 1000, slow / 1000, compact_path.stat().st_size, pretty_path.stat().st_size


def _world_reads(directory: Path) -> tuple[float, float, float]:
    """(cached hit, orjson re-parse, json re-parse) of a ~100 KB world file, in us."""
    path = directory / "big_world.json"
    rng = random.Random(2)
    words = ["harbour", "lantern", "tithe", "reeve", "storm", "herring", "abbey", "oath"]
    detail = {
        f"district_{i}": {
            "overview": " ".join(rng.choices(words, k=120)),
            "people": [{"name": f"P{i}-{j}", "role": rng.choice(words)} for j in range(20)],
        }
        for i in range(80)
    }  # fmt: skip
    path.write_text(json.dumps({"era": "x", "time_period": "y", "detail": detail}))
    assert 80_000 < path.stat().st_size < 140_000, path.stat().st_size
    files = JSONFileCache()
    files.read(path)
    hit = statistics.median(_time_ns(lambda: files.read(path), 5000))
    fast_parse = statistics.median(_time_ns(lambda: orjson.loads(path.read_bytes()), 500))
    std_parse = statistics.median(_time_ns(lambda: json.loads(path.read_bytes()), 500))
    return hit / 1000, fast_parse / 1000, std_parse / 1000


async def _hit_rate(directory: Path) -> float:
    cache = ResponseCache(MemoryTier(256), DiskTier(directory))
    rng = random.Random(3)
    # 1,000 requests over 50 prompts, the popular ones asked most (Zipf-like).
    weights = [1 / (rank + 1) for rank in range(50)]
    hits = 0

    async def compute() -> object:
        return {"v": 1}

    for _ in range(1000):
        prompt = rng.choices(range(50), weights)[0]
        _, source = await cache.get_or_compute(_key(prompt), compute)
        hits += source != "computed"
    await cache.flush()
    return hits / 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        latencies = asyncio.run(_cache_latencies(directory / "responses"))
        fast_us, slow_us, compact_size, pretty_size = _write_formats(directory)
        hit_us, parse_us, std_parse_us = _world_reads(directory)
        hit_rate = asyncio.run(_hit_rate(directory / "workload"))

    rows = [
        (name, f"{value:.1f} us", "p50 <= 50 us" if "memory hit" in name else "")
        for name, value in latencies.items()
    ]
    memory_p50 = latencies["memory hit via get_or_compute"]
    speed = slow_us / fast_us
    smaller = 1 - compact_size / pretty_size
    rows += [
        ("100-NPC cast, compact orjson write", f"{fast_us:.0f} us", ""),
        ("100-NPC cast, json.dump(indent=2)", f"{slow_us:.0f} us", ""),
        ("  speed ratio", f"{speed:.1f}x", ">= 5x"),
        (
            "  size",
            f"{compact_size / 1024:.0f} KiB vs {pretty_size / 1024:.0f} KiB, {smaller:.0%} smaller",
            ">= 30%",
        ),
        ("100 KB world: mtime-keyed hit", f"{hit_us:.1f} us", ""),
        ("100 KB world: re-read + orjson parse", f"{parse_us:.0f} us", ""),
        ("  ratio", f"{parse_us / hit_us:.0f}x", ">= 20x"),
        ("100 KB world: re-read + json parse", f"{std_parse_us:.0f} us", ""),
        ("  ratio", f"{std_parse_us / hit_us:.0f}x", ""),
        ("hit rate, 1,000 requests over 50 prompts", f"{hit_rate:.1%}", ">= 90%"),
    ]
    checks = [
        memory_p50 <= 50,
        speed >= 5,
        smaller >= 0.30,
        parse_us / hit_us >= 20,
        hit_rate >= 0.9,
    ]
    width = max(len(name) for name, _, _ in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>30}  {target}")
    print(f"targets met: {sum(checks)}/{len(checks)}")


if __name__ == "__main__":
    main()
