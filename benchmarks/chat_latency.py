"""Chat time to first token: what NPC Forge adds on top of the backend's own.

Against the fake OpenAI server in its own process (latency L before the first
token, then a streamed reply): the median time to the first text of
(a) the openai backend alone (`stream_chat` on a bare request) and
(b) the whole chat service (conversation file, library read, world, memory
retrieval, prompt, guard), for the same server. Their difference is our
overhead (target <= 20 ms). Run as part of ``python benchmarks/chat.py`` or
alone: ``python benchmarks/chat_latency.py [--latency 0.05] [-n 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.backends.base import ChatRequest
from app.wiring import Services
from benchmarks.concurrency import fake_server
from config import Settings
from tests import casts


def _settings(base_url: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=Path(tempfile.mkdtemp()),
        openai_base_url=base_url,
        openai_model="bench",
        library_autosave=True,
    )


async def _first_text_ms(stream: object) -> float:
    started = time.perf_counter()
    first = None
    async for part in stream:  # type: ignore[attr-defined]
        text = getattr(part, "reply", part)
        if first is None and text:
            first = time.perf_counter()
    assert first is not None, "no text arrived"
    return (first - started) * 1000


async def measure(base_url: str, rounds: int) -> dict[str, float]:
    services = Services(_settings(base_url))
    try:
        world = services.worlds.resolve("saltmere", None).world
        [outcome] = await casts.outcomes(services, world, 1, seed=2, backend="procedural")
        assert outcome.npc is not None
        npc = outcome.npc
        await services.library.save([npc])
        guarded = services.backends.get("openai")
        conversation = await services.chat.new_conversation(npc.id, "Ada")
        raw, ours = [], []
        for turn in range(rounds + 2):  # two warm-up rounds (connections, embedder)
            request = ChatRequest([{"role": "user", "content": f"hello {turn}"}])
            backend_ms = await _first_text_ms(guarded.backend.stream_chat(request))
            chat_ms = await _first_text_ms(
                services.chat.send(
                    npc.id, conversation.id, f"How are you, {turn}?", backend="openai"
                )
            )
            if turn >= 2:
                raw.append(backend_ms)
                ours.append(chat_ms)
        return {
            "backend ttft p50 ms": statistics.median(raw),
            "chat service ttft p50 ms": statistics.median(ours),
            "overhead p50 ms": statistics.median(ours) - statistics.median(raw),
        }
    finally:
        await services.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("-n", "--rounds", type=int, default=30)
    args = parser.parse_args()
    with fake_server(args.latency) as base_url:
        figures = asyncio.run(measure(base_url, args.rounds))
    for name, value in figures.items():
        print(f"{name:<28} {value:8.2f}")
    print("target: overhead <= 20 ms")


if __name__ == "__main__":
    main()
