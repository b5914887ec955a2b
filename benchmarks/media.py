"""Portraits and voices benchmark.

    python benchmarks/media.py [--npcs 100] [--lines 30]

Prints, in one run, for a procedural cast spread over every shipped world:

- portrait render time per NPC: the SVG (parts chosen from the fields + shapes),
  the PNG (Pillow, 2x supersampled), and both for the whole cast (target: 100
  portraits in under 2 s offline), wall clock and this process's CPU time (the
  machine is shared, so wall time carries other people's load);
- the content-addressed cache: the same cast again (SVG memo), an edit of a field
  the portrait does not use, PNGs from the response cache;
- speech with eSpeak NG: real-time factor (synthesis, and synthesis + Opus
  encoding, over the audio's duration), time to the first samples and to a
  playable file, bytes per second of Ogg Opus;
- the voice cache: a cast's sample lines warmed in the background, then every
  play button pressed: hit rate and time per press.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.models import NPC
from app.services.planning import CastRequest
from app.services.portrait_render import PngRenderer, drawn_shapes
from app.services.voice_codec import pcm_to_ogg_opus
from app.wiring import Services
from config import Settings

Row = tuple[str, str]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def cast(services: Services, count: int) -> list[NPC]:
    worlds = services.worlds.names()
    npcs: list[NPC] = []
    for index, name in enumerate(worlds):
        share = count // len(worlds) + (1 if index < count % len(worlds) else 0)
        request = CastRequest(
            world=services.worlds.world_for(name), count=share, temperature=0.9, seed=100 + index
        )
        plan = await services.cast.plan(request, save=False)
        async with services.cast.run(plan) as run:
            npcs.extend([o.npc async for o in run.outcomes() if o.npc is not None])
    return npcs


def timed(work: object) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()  # type: ignore[operator]
    return time.perf_counter() - wall, time.process_time() - cpu


def portraits(services: Services, npcs: Sequence[NPC]) -> list[Row]:
    p = services.portraits
    for npc in npcs:  # read the part data and the worlds once, as a running app has
        p.style(npc.world)
    p._parts()
    svgs: list[object] = []
    svg_wall, svg_cpu = timed(lambda: svgs.extend(p.procedural(n) for n in npcs))
    data = p._parts()
    pngs: list[bytes] = []
    renderer = PngRenderer()  # a fresh one: each world's background is drawn once here too
    png_wall, png_cpu = timed(
        lambda: pngs.extend(renderer.png(drawn_shapes(s.spec, data)) for s in svgs)  # type: ignore[attr-defined]
    )
    again_wall, _ = timed(lambda: [p.procedural(n) for n in npcs])
    edited = [n.model_copy(update={"backstory": n.backstory + " More."}) for n in npcs]
    edit_wall, _ = timed(lambda: [p.procedural(n) for n in edited])
    memo = p._svgs.stats()
    n = len(npcs)
    svg_bytes = statistics.mean(len(s.svg) for s in svgs)  # type: ignore[attr-defined]
    return [
        (f"portraits, {n} NPCs", f"{len({n.world for n in npcs})} worlds"),
        (
            "  SVG per NPC (choose parts + draw)",
            f"{_ms(svg_wall / n)} wall, {_ms(svg_cpu / n)} CPU",
        ),
        ("  PNG per NPC (512x512, Pillow)", f"{_ms(png_wall / n)} wall, {_ms(png_cpu / n)} CPU"),
        (
            f"  {n} portraits, SVG + PNG",
            f"{svg_wall + png_wall:.2f} s wall, {svg_cpu + png_cpu:.2f} s CPU (target < 2 s)",
        ),
        (
            "  size",
            f"SVG {svg_bytes / 1024:.1f} KiB, PNG {statistics.mean(map(len, pngs)) / 1024:.1f} KiB",
        ),
        ("  same cast again (SVG memo hits)", f"{_ms(again_wall / n)} per NPC"),
        ("  backstory edited (portrait kept)", f"{_ms(edit_wall / n)} per NPC"),
        ("  SVG memo", f"{memo.hits} hits / {memo.misses} misses ({memo.hit_rate:.0%})"),
    ]


async def png_cache(services: Services, npcs: Sequence[NPC]) -> list[Row]:
    p = services.portraits
    started = time.perf_counter()
    for npc in npcs:
        await p.png(npc)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    sources = [(await p.png(npc)).source for npc in npcs]
    warm = time.perf_counter() - started
    hits = sum(1 for s in sources if s in ("memory", "disk"))
    return [
        ("  PNG through the response cache, first", f"{_ms(cold / len(npcs))} per NPC"),
        (
            "  PNG through the response cache, again",
            f"{_ms(warm / len(npcs))} per NPC, {hits}/{len(npcs)} hits",
        ),
    ]


async def speech(services: Services, npcs: Sequence[NPC], lines: int) -> list[Row]:
    voices = services.voices
    picked = [(npc, line) for npc in npcs for line in npc.sample_lines][:lines]
    engine = voices.engine
    engine.synthesize("Warm up.", voices.voice_for(npcs[0]).espeak)  # load the library once
    synth = encode = audio_s = first = 0.0
    sizes = 0
    to_file: list[float] = []
    cpu_started = time.process_time()
    for npc, line in picked:
        voice = voices.voice_for(npc).espeak
        started = time.perf_counter()
        pcm = engine.synthesize(line, voice)
        ogg = pcm_to_ogg_opus(pcm.samples, pcm.rate)
        to_file.append(time.perf_counter() - started)
        synth += pcm.synth_s
        encode += to_file[-1] - pcm.synth_s
        audio_s += pcm.duration_s
        first += pcm.first_audio_s
        sizes += len(ogg)
    cpu = time.process_time() - cpu_started
    n = len(picked)
    return [
        (f"speech, {n} sample lines (eSpeak NG)", f"{audio_s:.1f} s of audio"),
        ("  real-time factor, CPU (synthesis + Opus)", f"{cpu / audio_s:.4f}"),
        ("  real-time factor, synthesis", f"{synth / audio_s:.4f}"),
        ("  real-time factor, synthesis + Opus", f"{(synth + encode) / audio_s:.4f}"),
        ("  time to first samples", f"{_ms(first / n)} mean"),
        (
            "  time to a playable file",
            f"{_ms(statistics.median(to_file))} median, {_ms(max(to_file))} max",
        ),
        ("  Ogg Opus", f"{sizes / audio_s / 1024:.2f} KiB per second of speech"),
    ]


async def voice_cache(services: Services, npcs: Sequence[NPC]) -> list[Row]:
    voices = services.voices
    cache = services.response_cache
    assert cache is not None
    started = time.perf_counter()
    voices.warm_soon(npcs)
    await voices.wait_warm()
    warm = time.perf_counter() - started
    pressed = [(npc, line) for npc in npcs for line in npc.sample_lines]
    started = time.perf_counter()
    sources = [(await voices.say(npc, line)).source for npc, line in pressed]
    press = time.perf_counter() - started
    hits = sum(1 for s in sources if s in ("memory", "disk"))
    return [
        (
            f"voice warm-up, {len(pressed)} lines of {len(npcs)} NPCs",
            f"{warm:.2f} s in the background",
        ),
        (
            "  every play button pressed after",
            f"{hits}/{len(pressed)} hits ({hits / len(pressed):.0%})",
        ),
        ("  time per press (cache hit)", _ms(press / len(pressed))),
    ]


async def run(count: int, lines: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(tmp),
            backend="procedural",
            library_autosave=False,
            cache_memory_entries=4096,
        )
        services = Services(settings)
        try:
            npcs = await cast(services, count)
            rows = portraits(services, npcs)
            rows += await png_cache(services, npcs)
            rows += await speech(services, npcs, lines)
            rows += await voice_cache(services, npcs[: max(1, count // 5)])
        finally:
            await services.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npcs", type=int, default=100)
    parser.add_argument("--lines", type=int, default=30)
    args = parser.parse_args()
    rows = asyncio.run(run(args.npcs, args.lines))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
