"""Load test: many gradio_client callers against one app on the procedural backend.

    python benchmarks/load.py [--callers 50] [--seconds 60] [--default-quotas]

Starts ``python main.py ui`` in its own process on 127.0.0.1 (a fresh data
directory, library autosave on), connects ``callers`` gradio_client clients
(one after another), then runs them in threads for ``seconds``,
each looping over a small cast (1-3 NPCs), a library search and a chat message.
Prints calls per second, p50/p95 per endpoint, the answers by kind (ok, a clean
quota or busy answer, any other error) and the server's RSS when started, with
the library open (after one search), after, and after 10 s idle. Quotas are
lifted unless ``--default-quotas`` (then most calls from the one address are
clean quota answers, which is the point of quotas).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLEAN = ("Quota reached", "job(s) running", "queue is full", "Try again")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _start(port: int, data_dir: Path, default_quotas: bool) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NPC_FORGE_DATA_DIR": str(data_dir),
        "NPC_FORGE_BACKEND": "procedural",
        "HOME": str(data_dir),
    }
    if not default_quotas:
        env |= {
            "NPC_FORGE_QUOTA_NPCS_PER_HOUR": "0",
            "NPC_FORGE_QUOTA_CHAT_PER_MINUTE": "0",
            "NPC_FORGE_QUOTA_JOBS_RUNNING": "8",
            "NPC_FORGE_QUOTA_JOBS_QUEUED": "64",
        }
    return subprocess.Popen(
        [sys.executable, "main.py", "ui", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_up(url: str, timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the app did not start")


def _connect(url: str, attempts: int = 5) -> Any:
    """A gradio_client Client; its first requests (config, API info, ~0.3 MB) can
    time out on a crowded machine, so try again a few times."""
    import httpx
    from gradio_client import Client

    for attempt in range(attempts):
        try:
            return Client(url, verbose=False)
        except httpx.TimeoutException:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _caller(client: Any, until: float, seed: int, out: dict[str, Any]) -> None:
    rng = random.Random(seed)
    npc_id: str | None = None
    while time.monotonic() < until:
        step = rng.choice(["generate", "search", "chat"] if npc_id else ["generate"])
        started = time.perf_counter()
        try:
            if step == "generate":
                _, cast, _, _ = client.predict(
                    "Saltmere", None, "", rng.randint(1, 3), "", [], "procedural", 0.9,
                    str(rng.randrange(10**6)), True, api_name="/generate_npcs",
                )  # fmt: skip
                if cast["npcs"]:
                    npc_id = cast["npcs"][0]["id"]
            elif step == "search":
                client.predict("a grumpy fisher", 5, "(all worlds)", "", api_name="/library_search")
            else:
                client.predict(npc_id, "", "Ada", "Who are you?", "procedural", api_name="/chat")
            kind = "ok"
        except Exception as exc:
            kind = "clean" if any(c in str(exc) for c in CLEAN) else f"error: {str(exc)[:80]}"
        with out["lock"]:
            out["seconds"][step].append(time.perf_counter() - started)
            out["kinds"][kind] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--default-quotas", action="store_true")
    args = parser.parse_args()
    from tests.threaded_server import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as tmp:
        server = _start(port, Path(tmp), args.default_quotas)
        try:
            _wait_up(url)
            started_rss = _rss_mb(server.pid)
            out: dict[str, Any] = {
                "lock": threading.Lock(),
                "seconds": defaultdict(list),
                "kinds": Counter(),
            }
            # Connected first, one after another: 50 clients fetching the app's
            # config at once is a start-up stampede, not the load being measured.
            connecting = time.monotonic()
            clients = [_connect(url) for _ in range(args.callers)]
            connected = time.monotonic() - connecting
            # One search first: the library opens (embedding model and Chroma, ~150 MB
            # once), so "before" is the open app and the growth is the load's.
            clients[0].predict("a grumpy fisher", 5, "(all worlds)", "", api_name="/library_search")
            before = _rss_mb(server.pid)
            until = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=_caller, args=(client, until, i, out), daemon=True)
                for i, client in enumerate(clients)
            ]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(args.seconds + 120)
            elapsed = time.monotonic() - started
            after = _rss_mb(server.pid)
            time.sleep(10)
            idle = _rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    calls = sum(out["kinds"].values())
    print(f"{args.callers} callers connected in {connected:.1f} s")
    print(f"{args.callers} callers for {args.seconds:g} s: {calls} calls, {calls / elapsed:.1f}/s")
    for step, samples in sorted(out["seconds"].items()):
        ordered = sorted(samples)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        print(f"  {step:9s} {len(ordered):5d} calls, p50 {statistics.median(ordered) * 1000:.0f} ms"
              f", p95 {p95 * 1000:.0f} ms")  # fmt: skip
    for kind, count in out["kinds"].most_common():
        print(f"  {count:6d} {kind}")
    print(
        f"server RSS: {started_rss:.0f} MB started, {before:.0f} MB with the library open, "
        f"{after:.0f} MB after, {idle:.0f} MB 10 s idle"
    )


if __name__ == "__main__":
    main()
