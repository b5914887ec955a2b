"""The disk tier shared by several processes (one directory, spawned workers):
whole values under races, bounds and the usage record kept across processes,
and a writer killed mid-write.

Workers are top-level functions of this module so that "spawn" children can
import them; each also puts the project root on sys.path itself.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.cache.disk import QUARANTINE, DiskTier

pytestmark = [pytest.mark.slow]

ROOT = str(Path(__file__).resolve().parents[1])
KEYS = [hashlib.sha256(f"shared-key-{i}".encode()).hexdigest() for i in range(20)]
WRITERS = 4
OPERATIONS = 200
SEED_WRITER = -1  # the parent, which fills every key before the workers start
BIG = 5_000_000


def make_value(key_index: int, writer: int, seq: int) -> dict[str, Any]:
    """~20 KB that depends on every id, so a torn or mixed-up write cannot pass."""
    stamp = hashlib.sha256(f"{key_index}/{writer}/{seq}".encode()).hexdigest()
    return {
        "key": key_index,
        "writer": writer,
        "seq": seq,
        "payload": stamp * 320,  # 20,480 characters
        "tail": stamp,  # the last field: a truncated file cannot end with it
    }


def shard_files(directory: Path) -> list[Path]:
    return sorted(
        path
        for shard in directory.iterdir()
        if shard.is_dir() and len(shard.name) == 2
        for path in shard.glob("*.json")
    )


def temp_files(directory: Path) -> list[Path]:
    return sorted(
        path for shard in directory.iterdir() if shard.is_dir() for path in shard.glob(".*.tmp")
    )


def _mixed_worker(
    root: str, directory: str, writer: int, start: Any, results: Any
) -> None:  # pragma: no cover - runs in a child process
    """Random puts and gets; sends back what it wrote, what it read and any problem."""
    if root not in sys.path:
        sys.path.insert(0, root)
    from app.cache.disk import DiskTier

    disk = DiskTier(Path(directory))
    rng = random.Random(writer)
    writes: list[tuple[int, int, int]] = []
    reads: list[tuple[int, int, int] | None] = []
    problems: list[str] = []
    start.wait(60)
    try:
        for seq in range(OPERATIONS):
            key_index = rng.randrange(len(KEYS))
            if rng.random() < 0.5:
                disk.put(KEYS[key_index], make_value(key_index, writer, seq))
                writes.append((key_index, writer, seq))
                continue
            value = disk.get(KEYS[key_index])
            if value is None:
                reads.append(None)
                continue
            ids = (value.get("key"), value.get("writer"), value.get("seq"))
            if ids[0] != key_index or value != make_value(*ids):
                problems.append(f"incomplete or foreign value for key {key_index}: {ids}")
            reads.append(ids)
    except Exception as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    results.put((writer, writes, reads, problems))


def _race(worker: Callable[..., None], directory: Path) -> list[Any]:
    """WRITERS spawned processes running ``worker``, started together by a barrier;
    each one's report, once all have exited cleanly."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WRITERS)
    results = context.Queue()
    workers = [
        context.Process(target=worker, args=(ROOT, str(directory), writer, start, results))
        for writer in range(WRITERS)
    ]
    for process in workers:
        process.start()
    reports = [results.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(30)
        assert process.exitcode == 0
    return reports


def test_processes_share_one_directory(tmp_path: Path) -> None:
    directory = tmp_path / "responses"
    seeded = DiskTier(directory)
    for index, key in enumerate(KEYS):
        seeded.put(key, make_value(index, SEED_WRITER, 0))
    reports = _race(_mixed_worker, directory)

    written = {(index, SEED_WRITER, 0) for index in range(len(KEYS))}
    reads: list[tuple[int, int, int] | None] = []
    for _, writes, seen, problems in sorted(reports):
        assert problems == []
        written.update(writes)
        reads.extend(seen)
    assert len(written) > len(KEYS) and len(reads) > 0
    # Every key always existed, so every read found a whole value someone wrote.
    assert None not in reads
    assert all(read in written for read in reads)

    files = shard_files(directory)
    assert {path.stem for path in files} == set(KEYS)
    for path in files:
        record = orjson.loads(path.read_bytes())
        index = KEYS.index(path.stem)
        value = record["v"]
        assert record["k"] == path.stem and value["key"] == index
        assert (index, value["writer"], value["seq"]) in written
        assert value == make_value(index, value["writer"], value["seq"])
    assert not (directory / QUARANTINE).exists()  # nothing was ever seen corrupt
    assert temp_files(directory) == []  # writers that finish leave no temp files
    usage = DiskTier(directory).usage()  # the record every writer kept, not a recount
    assert usage.entries == len(KEYS)
    assert usage.bytes == sum(path.stat().st_size for path in files)


def _commanded_writer(
    root: str, directory: str, max_entries: int, commands: Any, replies: Any
) -> None:  # pragma: no cover - runs in a child process
    """Put the keys it is told to, one batch at a time, and say when done."""
    if root not in sys.path:
        sys.path.insert(0, root)
    from app.cache.disk import DiskTier

    disk = DiskTier(Path(directory), max_entries=max_entries)
    while (names := commands.get()) is not None:
        for name in names:
            disk.put(hashlib.sha256(name.encode()).hexdigest(), {"name": name})
        replies.put(len(names))


def test_disk_bound_holds_across_processes(tmp_path: Path) -> None:
    """Two processes take turns on one directory: each sees the other's writes,
    so neither overshoots max_entries on a count of its own."""
    directory = tmp_path / "responses"
    context = multiprocessing.get_context("spawn")
    channels = [(context.Queue(), context.Queue()) for _ in range(2)]
    workers = [
        context.Process(
            target=_commanded_writer, args=(ROOT, str(directory), 10, commands, replies)
        )
        for commands, replies in channels
    ]
    for worker in workers:
        worker.start()

    def run(worker: int, names: list[str]) -> None:
        commands, replies = channels[worker]
        commands.put(names)
        assert replies.get(timeout=120) == len(names)

    try:
        run(0, ["first-0"])  # the first process has counted the directory: 1 entry
        run(1, [f"second-{index}" for index in range(20)])  # keeps it at <= 10
        run(0, [f"first-{index}" for index in range(1, 10)])  # must see those 10
        assert len(shard_files(directory)) <= 10
    finally:
        for commands, _ in channels:
            commands.put(None)
        for worker in workers:
            worker.join(30)
    assert [worker.exitcode for worker in workers] == [0, 0]
    disk = DiskTier(directory)
    assert disk.usage() == disk.recount()  # the shared record is exact


FILL_MAX_ENTRIES = 25
FILL_MAX_BYTES = 12_000
FILL_PUTS = 60


def _filling_worker(
    root: str, directory: str, writer: int, start: Any, results: Any
) -> None:  # pragma: no cover - runs in a child process
    """Write distinct keys as fast as it can, against the others."""
    if root not in sys.path:
        sys.path.insert(0, root)
    from app.cache.disk import DiskTier

    disk = DiskTier(Path(directory), max_entries=FILL_MAX_ENTRIES, max_bytes=FILL_MAX_BYTES)
    start.wait(60)
    problems = []
    try:
        for index in range(FILL_PUTS):
            disk.put(
                hashlib.sha256(f"{writer}/{index}".encode()).hexdigest(),
                {"writer": writer, "index": index, "pad": "z" * (index % 7) * 100},
            )
    except Exception as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    results.put((writer, problems, disk.stats().evictions))


def test_racing_writers_keep_both_bounds_and_an_exact_record(tmp_path: Path) -> None:
    directory = tmp_path / "responses"
    reports = _race(_filling_worker, directory)
    assert [problems for _, problems, _ in sorted(reports)] == [[]] * WRITERS
    files = shard_files(directory)
    on_disk = sum(path.stat().st_size for path in files)
    assert 0 < len(files) <= FILL_MAX_ENTRIES and on_disk <= FILL_MAX_BYTES
    written = WRITERS * FILL_PUTS
    assert sum(evictions for _, _, evictions in reports) == written - len(files)
    usage = DiskTier(directory).usage()  # the record every writer kept, not a recount
    assert (usage.entries, usage.bytes) == (len(files), on_disk)


def big_value(key_index: int, version: int = 0) -> dict[str, Any]:
    return {"key": key_index, "version": version, "payload": "y" * BIG, "tail": "complete"}


def _writer_killed_inside_a_write(
    root: str, directory: str, inside: Any
) -> None:  # pragma: no cover - killed by the test
    """Write two whole entries, then stop for good inside an overwrite of the
    first: its new bytes are in a temp file that was never renamed."""
    if root not in sys.path:
        sys.path.insert(0, root)
    from app.cache.disk import DiskTier

    disk = DiskTier(Path(directory))
    disk.put(KEYS[0], big_value(0))
    disk.put(KEYS[1], big_value(1))

    def stuck_fsync(fd: Any) -> None:
        # atomic_write_bytes fsyncs the temp file just before the rename.
        inside.set()
        threading.Event().wait()  # until SIGKILL

    os.fsync = stuck_fsync  # this child only
    disk.put(KEYS[0], big_value(0, version=1))


def test_killed_writer_leaves_no_partial_entry(tmp_path: Path) -> None:
    directory = tmp_path / "responses"
    context = multiprocessing.get_context("spawn")
    inside = context.Event()
    process = context.Process(
        target=_writer_killed_inside_a_write, args=(ROOT, str(directory), inside)
    )
    process.start()
    try:
        assert inside.wait(120), "the writer never reached its third write"
    finally:
        process.kill()  # SIGKILL: no cleanup, no finally blocks
        process.join(30)
    assert process.exitcode == -signal.SIGKILL

    files = shard_files(directory)
    assert {path.stem for path in files} == {KEYS[0], KEYS[1]}
    for path in files:  # every entry is whole: the old file, not a part of the new one
        record = orjson.loads(path.read_bytes())
        assert record["k"] == path.stem
        assert record["v"] == big_value(KEYS.index(path.stem))
    leftovers = temp_files(directory)
    assert len(leftovers) == 1  # the interrupted overwrite, never renamed
    temp = leftovers[0]
    # the half-done write never went by an entry's name
    assert temp.parent == directory / KEYS[0][:2] and temp.name.startswith(f".{KEYS[0]}.json.")
    assert temp.suffix == ".tmp" and temp not in files
    assert orjson.loads(temp.read_bytes())["v"] == big_value(0, version=1)

    disk = DiskTier(directory)
    assert disk.get(KEYS[0]) == big_value(0)  # a reader sees the old value, whole
    assert disk.usage().entries == 2  # temp files are not counted
    assert disk.sweep_temp_files() == 0  # too fresh for the default 60 s
    assert disk.sweep_temp_files(older_than=0) == 1
    assert temp_files(directory) == []
    disk.put(KEYS[2], {"after": "the kill"})  # the dead writer's file lock was released
    assert disk.get(KEYS[2]) == {"after": "the kill"}
    assert not (directory / QUARANTINE).exists()
