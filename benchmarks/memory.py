"""Memory benchmark: where a long-running app's RSS goes, and what bounds it.

    python benchmarks/memory.py [--npcs 400] [--chats 80] [--sessions 300]

Runs the same workload once per configuration, each in a fresh process (RSS
is per process), and prints one table with the ratios:

- ``before``: the embedder with onnxruntime's CPU arena and Gradio's default
  of 10,000 sessions' UI state (how the app ran before this change);
- ``now``: as shipped (no CPU arena, ``NPC_FORGE_UI_SESSIONS`` = 200);
- ``index-cap-16``: ``now`` plus Chroma's vector-index cache capped at 16
  collections, the one cache knob the embedded Chroma 1.5 client has (its
  ``chroma_memory_limit_bytes`` / ``chroma_segment_cache_policy`` settings are
  read only by the legacy Python segment API, not by the Rust client that
  ``PersistentClient`` runs). An experiment, not a setting: the figures show
  what it would bound and how many memory reads it breaks.

The workload, on the procedural backend with library autosave: open the
library (embedder and Chroma loaded), save ``--npcs`` NPCs, hold a short
conversation (2 messages, then end: the memories are extracted and stored)
with ``--chats`` of them, talk to each of those once more (reads every NPC's
memories again) and search each one's memories directly (a chat answers
without memories when they cannot be read, so it would hide a failure), then
open ``--sessions`` UI sessions (the state Gradio keeps per browser tab or API
client). RSS is read after each step, after
``malloc_trim`` (the app trims after every library write anyway).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = ("before", "now", "index-cap-16")


def _rss_mb() -> float:
    """RSS once freed heap memory is given back (as the app does after each library
    write), so the figures are what is held, not what malloc keeps for reuse."""
    from utils.native_memory import memory_releaser

    memory_releaser()()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _with_cpu_arena() -> None:
    """The embedder as it was: onnxruntime's default session options (arena on)."""
    import onnxruntime

    plain = onnxruntime.SessionOptions

    class WithArena(plain):  # type: ignore[misc, valid-type]
        def __setattr__(self, name: str, value: Any) -> None:
            if name != "enable_cpu_mem_arena":
                super().__setattr__(name, value)

    onnxruntime.SessionOptions = WithArena  # type: ignore[misc]


def _cap_index_cache(collections: int) -> None:
    """Open Chroma with its Rust client's HNSW cache holding ``collections`` indexes
    (it holds RLIMIT_NOFILE / 5 otherwise; 4,000 here)."""
    import chromadb
    from chromadb.api import ServerAPI
    from chromadb.api.client import Client
    from chromadb.config import Settings as ChromaSettings
    from chromadb.config import System
    from chromadb.telemetry.product import ProductTelemetryClient

    import app.store.client as store_client

    def open_capped(settings: Any) -> Any:
        path = Path(settings.data_dir) / "chroma"
        path.mkdir(parents=True, exist_ok=True)
        system = System(
            ChromaSettings(
                anonymized_telemetry=False, is_persistent=True, persist_directory=str(path)
            )
        )
        system.instance(ProductTelemetryClient)
        system.instance(ServerAPI).hnsw_cache_size = collections  # type: ignore[attr-defined]
        system.start()
        return Client.from_system(system)

    assert chromadb  # imported first: its module sets up what System needs
    store_client.open_client = open_capped  # type: ignore[assignment]


async def _talk(services: Any, npc_id: str, messages: int) -> int:
    """A conversation of ``messages`` messages, then its end; 1 if it failed."""
    try:
        conversation_id = None
        for number in range(messages):
            async for update in services.chat.send(
                npc_id, conversation_id, f"Tell me about the harbour, part {number}.",
                player="Ada", backend="procedural",
            ):  # fmt: skip
                conversation_id = update.conversation.id
        assert conversation_id is not None
        await services.chat.end(npc_id, conversation_id)
        await services.chat.aclose()  # the memory writes handed to the background
        return 0
    except Exception as exc:
        print(f"  chat with {npc_id} failed: {str(exc)[:100]}", file=sys.stderr)
        return 1


async def _unreadable(services: Any, npc_ids: list[str]) -> int:
    """How many of these NPCs' memories cannot be searched (chat itself hides such a
    failure: it answers without memories)."""
    failures = 0
    for npc_id in npc_ids:
        try:
            await services.memory.retrieve(npc_id, "the harbour", player="Ada", touch=False)
        except Exception as exc:
            failures += 1
            print(f"  memories of {npc_id}: {str(exc)[:100]}", file=sys.stderr)
    return failures


async def _workload(config: str, npcs: int, chats: int, sessions: int) -> dict[str, Any]:
    from gradio.state_holder import StateHolder

    from app.ui.app import create_app
    from app.wiring import Services
    from config import Settings
    from tests import casts

    if config == "before":
        _with_cpu_arena()
    if config == "index-cap-16":
        _cap_index_cache(16)
    data = Path(tempfile.mkdtemp(prefix="npc-forge-memory-"))
    options: dict[str, Any] = {"ui_sessions": 10_000} if config == "before" else {}
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data,
        backend="procedural",
        library_autosave=True,
        voice_warm_lines=False,
        quota_chat_per_minute=0,
        **options,
    )
    services = Services(settings)
    rss: dict[str, float] = {"start": _rss_mb()}
    await services.warm_up()
    await services.library.search("a grumpy fisher", k=5)  # the embedder has run
    rss["library open"] = _rss_mb()

    world = services.worlds.resolve("saltmere", None).world
    saved: list[str] = []
    seed = 0
    while len(saved) < npcs:
        batch = await casts.outcomes(services, world, min(20, npcs - len(saved)), seed=seed)
        made = [o.npc for o in batch if o.npc is not None]
        await services.library.save(made)
        saved += [npc.id for npc in made]
        seed += 1
    rss[f"{npcs} NPCs saved"] = _rss_mb()

    started = time.perf_counter()
    failed = sum([await _talk(services, npc_id, 2) for npc_id in saved[:chats]])
    rss[f"{chats} NPCs talked to"] = _rss_mb()
    failed_again = sum([await _talk(services, npc_id, 1) for npc_id in saved[:chats]])
    chat_seconds = time.perf_counter() - started
    rss["talked to again"] = _rss_mb()
    unreadable = await _unreadable(services, saved[:chats])

    demo = create_app(services)
    demo.state_session_capacity = settings.ui_sessions  # what launch() sets
    holder = StateHolder()
    holder.set_blocks(demo)
    for number in range(sessions):
        holder[f"session-{number}"]
    rss[f"{sessions} UI sessions"] = _rss_mb()
    await services.aclose()
    return {
        "config": config,
        "rss": rss,
        "failed chats": failed + failed_again,
        "unreadable memories": unreadable,
        "chat s": round(chat_seconds, 1),
        "sessions kept": len(holder.session_data),
    }


def _child(args: argparse.Namespace) -> None:
    result = asyncio.run(_workload(args.child, args.npcs, args.chats, args.sessions))
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npcs", type=int, default=400)
    parser.add_argument("--chats", type=int, default=80)
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    results = []
    for config in args.configs:
        with tempfile.TemporaryDirectory() as home:  # onnxruntime writes under ~/.cache
            done = subprocess.run(
                [sys.executable, __file__, "--child", config, "--npcs", str(args.npcs),
                 "--chats", str(args.chats), "--sessions", str(args.sessions)],
                capture_output=True, text=True, cwd=ROOT, env={"HOME": home, "PATH": "/usr/bin"},
            )  # fmt: skip
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            raise SystemExit(f"{config} failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(lines[0][len("RESULT ") :]))
    _report(results, args)


def _report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    steps = list(results[0]["rss"])
    width = max(len(step) for step in [*steps, "unreadable memories"]) + 1
    print(f"RSS in MB, one fresh process per configuration ({' / '.join(CONFIGS)})")
    print(" " * width + "".join(f"{r['config']:>14s}" for r in results))
    for step in steps:
        print(f"{step:{width}s}" + "".join(f"{r['rss'][step]:14.0f}" for r in results))
    print("growth per step, KB each:")
    saved, talked = f"{args.npcs} NPCs saved", f"{args.chats} NPCs talked to"
    per = {
        saved: ("library open", args.npcs, "per saved NPC"),
        talked: (saved, args.chats, "per NPC talked to"),
        f"{args.sessions} UI sessions": ("talked to again", args.sessions, "per UI session"),
    }
    for step, (since, count, label) in per.items():
        cells = "".join(
            f"{(r['rss'][step] - r['rss'][since]) * 1024 / max(1, count):14.0f}" for r in results
        )
        print(f"{label:{width}s}{cells}")
    for key in ("failed chats", "unreadable memories", "chat s", "sessions kept"):
        print(f"{key:{width}s}" + "".join(f"{r[key]:>14}" for r in results))
    base = results[0]["rss"][steps[-1]]
    print("final RSS vs before: " + ", ".join(
        f"{r['config']} {r['rss'][steps[-1]] / base:.2f}x" for r in results
    ))  # fmt: skip


if __name__ == "__main__":
    main()
