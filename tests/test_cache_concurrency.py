"""The disk tier under several processes, and a writer killed mid-write."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import orjson
import pytest

from app.cache.disk import DiskTier

pytestmark = pytest.mark.slow

KEYS = [hashlib.sha256(f"key-{i}".encode()).hexdigest() for i in range(20)]
PAYLOAD = "x" * 20_000  # big enough that a torn write would show


def _value(writer: int, index: int) -> dict[str, object]:
    return {"writer": writer, "index": index, "payload": PAYLOAD}


def _worker(directory: str, writer: int, operations: int, root: str) -> list[str]:
    """Mixed puts and gets; returns the problems seen (empty is good)."""
    sys.path.insert(0, root)
    disk = DiskTier(Path(directory))
    problems = []
    for op in range(operations):
        key = KEYS[(op * 7 + writer) % len(KEYS)]
        if op % 2:
            disk.put(key, _value(writer, op))
        else:
            value = disk.get(key)
            if value is not None and (value.get("payload") != PAYLOAD or "writer" not in value):
                problems.append(f"partial value for {key[:8]}")
    return problems


def test_processes_share_one_directory(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    root = str(Path(__file__).resolve().parents[1])
    with context.Pool(4) as pool:
        results = pool.starmap(_worker, [(str(tmp_path), writer, 200, root) for writer in range(4)])
    assert results == [[], [], [], []]
    files = list(tmp_path.glob("*/*.json"))
    assert 0 < len(files) <= len(KEYS)
    for path in files:
        record = orjson.loads(path.read_bytes())
        assert record["k"] == path.stem and record["v"]["payload"] == PAYLOAD
    assert not (tmp_path / "quarantine").exists()  # nothing was ever corrupt


def _endless_writer(directory: str, started: object, root: str) -> None:
    sys.path.insert(0, root)
    disk = DiskTier(Path(directory))
    big = {"payload": "y" * 5_000_000}
    started.set()  # type: ignore[attr-defined]
    index = 0
    while True:
        disk.put(KEYS[index % len(KEYS)], big)
        index += 1


def test_killed_writer_leaves_no_partial_entry(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    root = str(Path(__file__).resolve().parents[1])
    process = context.Process(target=_endless_writer, args=(str(tmp_path), started, root))
    process.start()
    assert started.wait(60)
    time.sleep(0.3)  # somewhere in the middle of a 5 MB write
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    disk = DiskTier(tmp_path)
    for path in tmp_path.glob("*/*.json"):
        assert disk.get(path.stem) == {"payload": "y" * 5_000_000}
    leftovers = list(tmp_path.glob("*/.*.tmp"))
    assert all(not path.name.endswith(".json") for path in leftovers)
    disk.sweep_temp_files(older_than=0)
    assert not list(tmp_path.glob("*/.*.tmp"))
