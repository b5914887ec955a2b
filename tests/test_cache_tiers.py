"""Each response-cache tier's own promises: the memory tier's LRU order; the
disk tier's bounds, file format, keys, corruption, temp files and restarts,
and a Hypothesis state machine for the disk tier against a dict model.

The contract both tiers share is in test_cache_contract.py.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from app.cache.disk import QUARANTINE, USAGE_FILE, DiskTier, DiskUsage
from app.cache.memory import MemoryTier

NPC: dict[str, Any] = {
    "name": "Ædwin Þórsson",
    "traits": ["stubborn", "kind", "ñoño", "日本語", "emoji 🐟"],
    "ratio": 0.1 + 0.2,
    "nested": {"a": {"b": {"c": [1, 2, {"d": None}]}}, "empty": {}, "list": []},
    "escapes": 'quote " backslash \\ newline \n tab \t nul \x00',
}


def hex_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entry_files(directory: Path) -> list[Path]:
    """Every cache entry on disk (shard dirs only: not quarantine, not temp files)."""
    return sorted(
        path
        for shard in directory.iterdir()
        if shard.is_dir() and len(shard.name) == 2
        for path in shard.glob("*.json")
    )


def quarantined(directory: Path) -> list[Path]:
    folder = directory / QUARANTINE
    return sorted(folder.iterdir()) if folder.exists() else []


# -- bounds and eviction ------------------------------------------------------------------
def test_memory_tier_evicts_the_least_recently_used() -> None:
    memory = MemoryTier(maxsize=3)
    a, b, c, d, e = (hex_key(name) for name in "abcde")
    for k in (a, b, c):
        memory.put(k, k)
    assert memory.get(a) == a  # a is now the most recently used; b the least
    memory.put(d, d)
    assert len(memory) == 3
    assert memory.stats().evictions == 1
    assert memory.get(b) is None
    assert [memory.get(k) for k in (a, c, d)] == [a, c, d]  # order now: a, c, d
    memory.put(e, e)  # evicts a, the least recently used
    assert memory.get(a) is None and memory.get(e) == e
    stats = memory.stats()
    assert (stats.evictions, stats.size, stats.maxsize) == (2, 3, 3)


def test_memory_tier_overwrite_does_not_evict() -> None:
    memory = MemoryTier(maxsize=2)
    memory.put(hex_key("a"), 1)
    memory.put(hex_key("b"), 2)
    memory.put(hex_key("a"), 3)
    assert memory.stats().evictions == 0 and len(memory) == 2
    assert memory.get(hex_key("a")) == 3


def test_disk_tier_evicts_the_oldest_entries_by_count(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path, max_entries=10)
    keys = [hex_key(f"n{i}") for i in range(25)]
    base = time.time() - 10_000
    for index, k in enumerate(keys):
        disk.put(k, {"i": index})
        stamp = base + index  # distinct, increasing ages: keys[0] is the oldest
        os.utime(disk.path_for(k), (stamp, stamp))
    files = entry_files(tmp_path)
    assert 0 < len(files) <= 10
    survivors = {path.stem for path in files}
    assert survivors == set(keys[25 - len(files) :])  # exactly the newest ones survived
    assert disk.usage().entries == len(files)  # the kept count did not drift
    stats = disk.stats()
    assert stats.evictions == 25 - len(files)
    assert stats.size == len(files) and stats.maxsize == 10
    assert disk.get(keys[0]) is None
    assert disk.get(keys[-1]) == {"i": 24}


def test_disk_tier_eviction_follows_mtime_not_write_order(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path, max_entries=5)
    keys = [hex_key(f"m{i}") for i in range(5)]
    base = time.time() - 10_000
    for index, k in enumerate(keys):
        disk.put(k, index)
        stamp = base + (100 - index)  # reversed: the first written is the newest
        os.utime(disk.path_for(k), (stamp, stamp))
    disk.put(hex_key("new"), "new")  # 6 > 5: evicts down to 4 entries
    assert {path.stem for path in entry_files(tmp_path)} == {*keys[:3], hex_key("new")}
    assert disk.stats().evictions == 2


def test_disk_tier_evicts_by_bytes(tmp_path: Path) -> None:
    limit = 20_000
    disk = DiskTier(tmp_path, max_bytes=limit)
    keys = [hex_key(f"b{i}") for i in range(40)]
    base = time.time() - 10_000
    for index, k in enumerate(keys):
        disk.put(k, {"i": index, "pad": "x" * 1000})
        os.utime(disk.path_for(k), (base + index, base + index))
    files = entry_files(tmp_path)
    on_disk = sum(path.stat().st_size for path in files)
    assert 0 < on_disk <= limit
    assert disk.usage().bytes == on_disk and disk.usage().entries == len(files)
    assert {path.stem for path in files} == set(keys[40 - len(files) :])
    assert disk.stats().evictions == 40 - len(files) > 0


def test_disk_bound_holds_with_two_instances_on_one_directory(tmp_path: Path) -> None:
    """What two worker processes sharing the cache directory do, in one process."""
    first = DiskTier(tmp_path, max_entries=10)
    second = DiskTier(tmp_path, max_entries=10)
    first.put(hex_key("first-0"), 0)  # first counts the directory now: 1 entry
    for index in range(20):
        second.put(hex_key(f"second-{index}"), index)  # keeps the directory at <= 10
    for index in range(1, 10):
        first.put(hex_key(f"first-{index}"), index)  # first still believes it holds <= 10
    assert len(entry_files(tmp_path)) <= 10


# -- the disk format ------------------------------------------------------------------------
def test_compact_file_format(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path)
    k = hex_key("a")
    disk.put(k, NPC)
    path = disk.path_for(k)
    assert path == tmp_path / k[:2] / f"{k}.json"
    raw = path.read_bytes()
    assert b"\n" not in raw and b"  " not in raw and b'": ' not in raw
    record = orjson.loads(raw)
    assert raw == orjson.dumps(record)  # byte for byte the compact form
    assert record["k"] == k and record["v"] == NPC
    assert set(record) <= {"k", "t", "v"}


def test_pretty_file_format(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path, pretty=True)
    k = hex_key("a")
    disk.put(k, NPC)
    text = disk.path_for(k).read_text(encoding="utf-8")
    assert "\n  " in text
    record = orjson.loads(text)
    assert record["k"] == k and record["v"] == NPC
    assert disk.get(k) == NPC
    compact = DiskTier(tmp_path / "compact")  # the two formats read the same
    compact.put(k, NPC)
    assert orjson.loads(compact.path_for(k).read_bytes())["v"] == record["v"]


def test_keys_must_be_lowercase_hex(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path)
    for bad in ("../../etc/passwd", hex_key("a").upper(), "abc", "g" * 64, ""):
        with pytest.raises(ValueError, match="hex"):
            disk.put(bad, 1)
        with pytest.raises(ValueError, match="hex"):
            disk.get(bad)
        with pytest.raises(ValueError, match="hex"):
            disk.path_for(bad)
    assert entry_files(tmp_path) == []


# -- corruption ---------------------------------------------------------------------------
def _truncate(raw: bytes, key: str) -> bytes:
    return raw[: len(raw) // 2]


def _empty(raw: bytes, key: str) -> bytes:
    return b""


def _garbage(raw: bytes, key: str) -> bytes:
    return b"\x00\xff\xfe not json at all"


def _another_key(raw: bytes, key: str) -> bytes:
    return orjson.dumps({"k": hex_key("someone else"), "t": 0, "v": orjson.loads(raw)["v"]})


def _no_value(raw: bytes, key: str) -> bytes:
    return orjson.dumps({"k": key, "t": 0})


def _not_a_record(raw: bytes, key: str) -> bytes:
    return b"[1, 2, 3]"


@pytest.mark.parametrize(
    "damage", [_truncate, _empty, _garbage, _another_key, _no_value, _not_a_record]
)
def test_corrupt_file_is_a_quarantined_miss(
    tmp_path: Path, damage: Callable[[bytes, str], bytes], caplog: pytest.LogCaptureFixture
) -> None:
    disk = DiskTier(tmp_path)
    k, other = hex_key("a"), hex_key("b")
    disk.put(k, NPC)
    disk.put(other, {"fine": True})
    path = disk.path_for(k)
    broken = damage(path.read_bytes(), k)
    path.write_bytes(broken)
    with caplog.at_level(logging.WARNING, logger="app.cache.disk"):
        assert disk.get(k) is None  # no exception
    assert not path.exists()
    moved = quarantined(tmp_path)
    assert len(moved) == 1 and moved[0].read_bytes() == broken
    assert moved[0].name.startswith(k)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "corrupt" in warnings[0].getMessage()
    assert k in warnings[0].getMessage()
    stats = disk.stats()
    assert (stats.hits, stats.misses, stats.size) == (0, 1, 1)
    assert disk.get(other) == {"fine": True}  # the neighbour is untouched
    assert disk.get(k) is None  # a plain miss now: nothing more to quarantine
    assert len(quarantined(tmp_path)) == 1
    disk.put(k, NPC)  # and the key can be stored again
    assert disk.get(k) == NPC


def test_quarantine_is_not_counted_as_entries(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path)
    for name in "abc":
        disk.put(hex_key(name), name)
    disk.path_for(hex_key("a")).write_bytes(b"{")
    assert disk.get(hex_key("a")) is None
    assert disk.usage().entries == 2
    assert DiskTier(tmp_path).usage().entries == 2  # another instance sees the same
    assert disk.recount().entries == 2  # and a fresh count agrees


# -- wrong shapes and things that are not entries ---------------------------------------
def accept_profile(value: Any) -> object:
    """A small validator: the shape of an NPC entry."""
    return value["profile"]["name"]  # TypeError or KeyError for any other shape


def test_wrong_shape_record_is_quarantined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = DiskTier(tmp_path)
    k = hex_key("a")
    disk.put(k, {"name": "an old schema, no profile"})
    disk.put(hex_key("b"), {"profile": {"name": "fine"}})
    raw = disk.path_for(k).read_bytes()
    with caplog.at_level(logging.WARNING, logger="app.cache.disk"):
        assert disk.get(k, accept_profile) is None
    assert not disk.path_for(k).exists()
    moved = quarantined(tmp_path)
    assert len(moved) == 1 and moved[0].read_bytes() == raw and moved[0].name.startswith(k)
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert k[:12] in message and "wrong shape" in message and "KeyError" in message
    assert disk.usage() == DiskUsage(1, disk.path_for(hex_key("b")).stat().st_size)
    assert DiskTier(tmp_path).get(k) is None  # gone for every process, not only this caller
    assert disk.get(hex_key("b"), accept_profile) == {"profile": {"name": "fine"}}


def test_a_file_rewritten_while_it_was_checked_is_not_quarantined(tmp_path: Path) -> None:
    """Another process may replace a bad entry with a good one between our read
    and our quarantine: the good one stays."""
    disk, other = DiskTier(tmp_path), DiskTier(tmp_path)
    k = hex_key("a")
    disk.put(k, {"old": "shape"})

    def rewrite_then_reject(value: Any) -> None:
        other.put(k, {"profile": {"name": "new"}})
        raise KeyError("profile")

    assert disk.get(k, rewrite_then_reject) is None  # this caller recomputes
    assert quarantined(tmp_path) == []
    assert disk.get(k, accept_profile) == {"profile": {"name": "new"}}
    assert disk.usage().entries == 1


def _directory(path: Path) -> None:
    path.mkdir(parents=True)


def _directory_with_files(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "inside.json").write_bytes(b"{}")


def _symlink_to_an_entry(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.parent / "elsewhere"
    target.write_bytes(orjson.dumps({"k": path.stem, "t": 0, "v": {"via": "link"}}))
    path.symlink_to(target)


def _dangling_symlink(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(path.parent / "nothing-there")


def _fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)  # opening it for reading the usual way would block forever


def returns_at_all(call: Callable[[], Any]) -> Any:
    """``call()``, run in a thread so that a call that blocks for good (opening
    a FIFO) fails the test instead of hanging it."""
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(call()), daemon=True)
    worker.start()
    worker.join(60)  # a safety net for a broken build, not a measurement
    assert not worker.is_alive(), "the call blocked"
    (result,) = results
    return result


JUNK = [_directory, _directory_with_files, _symlink_to_an_entry, _dangling_symlink, _fifo]


@pytest.mark.parametrize("make", JUNK)
def test_something_not_a_file_where_an_entry_belongs_is_a_quarantined_miss(
    tmp_path: Path, make: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    disk = DiskTier(tmp_path)
    k = hex_key("a")
    disk.put(hex_key("b"), {"fine": True})
    make(disk.path_for(k))
    with caplog.at_level(logging.WARNING, logger="app.cache.disk"):
        assert returns_at_all(lambda: disk.get(k)) is None  # no exception, and no hang
    assert not os.path.lexists(disk.path_for(k))
    assert len(quarantined(tmp_path)) == 1
    assert k[:12] in caplog.text
    assert disk.stats().misses == 1
    assert disk.usage().entries == 1
    disk.put(k, {"now": "a file"})
    assert disk.get(k) == {"now": "a file"}
    assert disk.usage().entries == 2


@pytest.mark.parametrize("make", JUNK)
def test_put_moves_what_is_in_the_way_aside(tmp_path: Path, make: Callable[[Path], None]) -> None:
    disk = DiskTier(tmp_path)
    k = hex_key("a")
    make(disk.path_for(k))
    disk.put(k, {"stored": True})  # a rename cannot replace a directory: it moves it first
    assert disk.get(k) == {"stored": True}
    assert len(quarantined(tmp_path)) == 1
    assert disk.usage().entries == 1 == disk.recount().entries


@pytest.mark.parametrize(
    "error",
    [PermissionError(errno.EACCES, "Permission denied"), OSError(errno.EIO, "I/O error")],
    ids=["permission", "io-error"],
)
def test_an_error_opening_an_entry_is_a_miss(
    tmp_path: Path, error: OSError, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = DiskTier(tmp_path)
    k = hex_key("a")
    disk.put(k, {"fine": True})
    real_open = os.open

    def failing_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if Path(path) == disk.path_for(k):
            raise error
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    assert disk.get(k) is None  # no exception
    assert disk.stats().misses == 1
    monkeypatch.undo()
    assert quarantined(tmp_path) != []  # moved aside, so a new value can take its place
    assert disk.usage().entries == 0
    disk.put(k, {"fine": "again"})
    assert disk.get(k) == {"fine": "again"}


def test_an_error_reading_an_entry_is_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = DiskTier(tmp_path)
    k = hex_key("a")
    disk.put(k, {"fine": True})
    real_fstat = os.fstat
    failures = [OSError(errno.EIO, "I/O error")]  # the entry's fstat fails, once

    def failing_fstat(fd: int) -> os.stat_result:
        if failures:
            raise failures.pop()
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", failing_fstat)
    assert disk.get(k) is None  # no exception
    assert failures == []
    assert disk.stats().misses == 1
    assert not disk.path_for(k).exists()


def test_a_bad_entry_that_cannot_be_moved_aside_is_still_only_a_miss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = DiskTier(tmp_path)
    k = hex_key("a")
    disk.put(k, {"fine": True})
    disk.path_for(k).write_bytes(b"{broken")
    (tmp_path / QUARANTINE).write_bytes(b"a file where the quarantine folder belongs")
    with caplog.at_level(logging.WARNING, logger="app.cache.disk"):
        assert disk.get(k) is None
    assert "could not be moved aside" in caplog.text and k[:12] in caplog.text
    assert disk.path_for(k).exists()


def test_newest_skips_what_it_cannot_use(tmp_path: Path) -> None:
    """The warm-up reads the newest entries; wrong shapes, corrupt files,
    directories and stray files never stop it."""
    disk = DiskTier(tmp_path)
    base = time.time() - 10_000
    order: list[str] = []  # oldest first

    def put(name: str, value: Any) -> str:
        k = hex_key(name)
        disk.put(k, value)
        stamp = base + len(order)
        os.utime(disk.path_for(k), (stamp, stamp))
        order.append(k)
        return k

    good = [put(f"good-{i}", {"profile": {"name": f"n{i}"}}) for i in range(3)]
    wrong = [put(f"wrong-{i}", {"no": "profile"}) for i in range(2)]
    corrupt = put("corrupt", {"profile": {"name": "soon broken"}})
    disk.path_for(corrupt).write_bytes(b"{")
    os.utime(disk.path_for(corrupt), (base + 99, base + 99))
    _directory_with_files(disk.path_for(hex_key("a directory")))
    stray = disk.path_for(good[0]).parent / "not-a-key.json"
    stray.write_bytes(b"{}")

    found = disk.newest(10, accept_profile)
    assert [k for k, _ in found] == good[::-1]  # newest first, only the usable ones
    assert found[0][1] == {"profile": {"name": "n2"}}
    assert disk.newest(2, accept_profile) == found[:2]  # the limit counts usable entries
    assert {p.name.split(".")[0] for p in quarantined(tmp_path)} == {*wrong, corrupt}
    assert stray.exists()  # not an entry: neither read nor moved
    assert [k for k, _ in disk.newest(10)] == good[::-1]
    assert disk.newest(0) == []


def test_newest_without_a_validator_returns_any_shape(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path)
    disk.put(hex_key("a"), ["a", "list"])
    assert disk.newest(5) == [(hex_key("a"), ["a", "list"])]


# -- the shared usage record ----------------------------------------------------------------
def files_usage(directory: Path) -> DiskUsage:
    files = entry_files(directory)
    return DiskUsage(len(files), sum(path.stat().st_size for path in files))


def test_instances_on_one_directory_share_the_usage(tmp_path: Path) -> None:
    first, second = DiskTier(tmp_path), DiskTier(tmp_path)
    for name in "abc":
        first.put(hex_key(name), {"name": name})
    assert second.usage() == files_usage(tmp_path) == first.usage()
    second.put(hex_key("d"), {"name": "d"})
    second.put(hex_key("a"), {"name": "a, rewritten and longer"})
    assert first.usage() == files_usage(tmp_path) and first.usage().entries == 4
    second.path_for(hex_key("b")).write_bytes(b"{")
    assert first.get(hex_key("b")) is None  # quarantined by first
    assert second.usage().entries == 3
    first.clear()
    assert second.usage() == DiskUsage(0, 0)


@pytest.mark.parametrize(
    "record",
    [None, b"", b"{not json", b"[1, 2]", b'{"entries": -1, "bytes": 0}', b'{"entries": "3"}'],
    ids=["missing", "empty", "garbage", "not-a-dict", "negative", "wrong-types"],
)
def test_a_missing_or_unreadable_usage_record_is_rebuilt_from_the_files(
    tmp_path: Path, record: bytes | None
) -> None:
    disk = DiskTier(tmp_path)
    for name in "abc":
        disk.put(hex_key(name), {"name": name})
    usage_file = tmp_path / USAGE_FILE
    if record is None:
        usage_file.unlink()
    else:
        usage_file.write_bytes(record)
    assert DiskTier(tmp_path).usage() == files_usage(tmp_path)
    assert orjson.loads(usage_file.read_bytes()) == {
        "entries": 3,
        "bytes": 3 * 0 + files_usage(tmp_path).bytes,
    }
    if record is not None:
        usage_file.write_bytes(record)
    disk.put(hex_key("d"), {"name": "d"})  # a writer rebuilds it too
    assert disk.usage() == files_usage(tmp_path) and disk.usage().entries == 4


def test_eviction_corrects_a_record_that_drifted(tmp_path: Path) -> None:
    """Files copied in behind the cache's back are not in the record; the next
    eviction counts the files and brings the directory back within bounds."""
    disk = DiskTier(tmp_path, max_entries=10)
    donor = DiskTier(tmp_path / "donor")
    for index in range(12):
        donor.put(hex_key(f"copied-{index}"), index)
    for path in entry_files(tmp_path / "donor"):
        target = tmp_path / path.parent.name / path.name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(path.read_bytes())
    shutil.rmtree(tmp_path / "donor")
    for index in range(11):
        disk.put(hex_key(f"own-{index}"), index)
    assert len(entry_files(tmp_path)) <= 10
    assert disk.usage() == files_usage(tmp_path)


def test_constructing_a_tier_touches_no_file(tmp_path: Path) -> None:
    directory = tmp_path / "not yet"
    disk = DiskTier(directory, run_in_background=lambda job: None)
    assert disk.get(hex_key("a")) is None
    assert disk.stats().size == 0
    assert disk.newest(5) == [] and disk.sweep_temp_files() == 0
    assert not directory.exists()
    disk.put(hex_key("a"), 1)  # the first write creates it
    assert disk.get(hex_key("a")) == 1


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Jobs:
    """A background runner that runs nothing until the test says so."""

    def __init__(self) -> None:
        self.waiting: list[Callable[[], None]] = []

    def __call__(self, job: Callable[[], None]) -> None:
        self.waiting.append(job)

    def run(self) -> None:
        jobs, self.waiting = self.waiting, []
        for job in jobs:
            job()


class CountingDisk(DiskTier):
    """A disk tier that counts its directory scans and usage-record reads."""

    scans = 0
    record_reads = 0

    def _scan(self) -> Iterator[tuple[Path, os.stat_result]]:
        self.scans += 1
        return super()._scan()

    def _read_usage(self) -> DiskUsage | None:
        self.record_reads += 1
        return super()._read_usage()


def test_stats_reads_no_file_when_the_usage_is_known(tmp_path: Path) -> None:
    jobs = Jobs()
    disk = CountingDisk(tmp_path, run_in_background=jobs, clock=ManualClock())
    for index in range(5):
        disk.put(hex_key(str(index)), index)
    disk.scans = disk.record_reads = 0
    for _ in range(1000):  # /metrics scrapes, Stats tab refreshes
        assert disk.stats().size == 5
    assert (disk.scans, disk.record_reads, jobs.waiting) == (0, 0, [])


def test_stats_never_scans_on_the_callers_path(tmp_path: Path) -> None:
    """At start (and with no usage record) the count is done off the caller's
    path; stats() reports the last known figure meanwhile."""
    writer = DiskTier(tmp_path)
    for index in range(5):
        writer.put(hex_key(str(index)), index)
    (tmp_path / USAGE_FILE).unlink()  # e.g. a directory from before the record existed
    jobs = Jobs()
    disk = CountingDisk(tmp_path, run_in_background=jobs, clock=ManualClock())
    assert disk.stats().size == 0  # not known yet: nothing was scanned to find out
    assert disk.stats().size == 0
    assert (disk.scans, disk.record_reads, len(jobs.waiting)) == (0, 0, 1)  # one refresh
    jobs.run()
    assert disk.scans == 1  # the refresh counted the files, once
    disk.scans = disk.record_reads = 0
    assert disk.stats().size == 5
    assert (disk.scans, disk.record_reads, jobs.waiting) == (0, 0, [])
    assert (tmp_path / USAGE_FILE).exists()  # and left the record for everyone


def test_stats_refreshes_stale_figures_in_the_background(tmp_path: Path) -> None:
    clock, jobs = ManualClock(), Jobs()
    disk = CountingDisk(tmp_path, run_in_background=jobs, clock=clock, stats_max_age=5.0)
    other = DiskTier(tmp_path)  # another process
    disk.put(hex_key("mine"), 1)
    for index in range(3):
        other.put(hex_key(f"theirs-{index}"), index)
    clock.now = 5.0
    assert disk.stats().size == 1 and jobs.waiting == []  # still fresh enough
    clock.now = 5.5
    assert disk.stats().size == 1  # the last known figure, at once
    assert disk.stats().size == 1
    assert len(jobs.waiting) == 1  # one refresh at a time
    disk.scans = 0
    jobs.run()
    assert disk.scans == 0  # the record was there: no scan
    assert disk.stats().size == 4
    clock.now = 20.0
    disk.stats()
    assert len(jobs.waiting) == 1  # stale again: another refresh


def test_a_failing_refresh_is_logged_and_can_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock, jobs = ManualClock(), Jobs()
    disk = DiskTier(tmp_path, run_in_background=jobs, clock=clock)

    def broken_usage() -> DiskUsage:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(disk, "usage", broken_usage)
    disk.stats()
    jobs.run()  # does not raise in the background thread
    assert "could not read the usage" in caplog.text
    disk.stats()
    assert len(jobs.waiting) == 1


def test_stats_refresh_runs_in_a_thread_by_default(tmp_path: Path) -> None:
    DiskTier(tmp_path).put(hex_key("a"), 1)
    disk = DiskTier(tmp_path)
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def record_start(thread: threading.Thread) -> None:
        started.append(thread)
        real_start(thread)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threading.Thread, "start", record_start)
        assert disk.stats().size == 0
    assert len(started) == 1
    started[0].join()
    assert disk.stats().size == 1


# -- temp files ---------------------------------------------------------------------------
def test_stale_temp_files_are_swept_and_fresh_ones_kept(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path)
    k = hex_key("a")
    disk.put(k, {"real": True})
    shard = disk.path_for(k).parent
    stale = shard / f".{k}.json.abc123.tmp"
    recent = shard / f".{k}.json.def456.tmp"  # 30 s old: a writer may still be at it
    fresh = shard / f".{k}.json.ghi789.tmp"
    for temp in (stale, recent, fresh):
        temp.write_bytes(orjson.dumps({"k": k, "v": {"half": "writ"}})[:20])
    now = time.time()
    os.utime(stale, (now - 3600, now - 3600))
    os.utime(recent, (now - 30, now - 30))
    assert disk.sweep_temp_files() == 1
    assert not stale.exists() and recent.exists() and fresh.exists()
    assert disk.get(k) == {"real": True}  # the entry itself is untouched
    assert disk.sweep_temp_files(older_than=0) == 2
    assert not recent.exists() and not fresh.exists()
    assert disk.path_for(k).exists()


def test_get_ignores_temp_files(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path)
    k = hex_key("only a temp file")
    temp = disk.path_for(k).parent / f".{k}.json.zz9.tmp"
    temp.parent.mkdir(parents=True)
    temp.write_bytes(orjson.dumps({"k": k, "t": 0, "v": {"complete": "but not renamed"}}))
    assert disk.get(k) is None
    assert disk.stats().misses == 1
    assert disk.usage().entries == 0
    assert quarantined(tmp_path) == []  # a temp file is not corruption either
    assert temp.exists()


# -- a state machine against a dict model -------------------------------------------------
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
# Any JSON value but a top-level None (None means "miss" to every tier); some in
# the shape the machine's validator accepts.
STORABLE = JSON_VALUES.filter(lambda value: value is not None) | st.builds(
    lambda value: {"profile": value}, JSON_VALUES
)
# Keys are digests of a name, so a few names make overwrites and damage likely.
NAMES = [f"key-{i}" for i in range(6)]
KEY_NAMES = st.sampled_from(NAMES)
DAMAGE = st.sampled_from([_truncate, _empty, _garbage, _another_key, _no_value, _not_a_record])
MAX_ENTRIES = 100_000  # never reached: eviction has its own tests


def has_profile(value: Any) -> object:
    """The machine's validator: TypeError for a non-dict, KeyError for a dict without."""
    return value["profile"]


def accepted(value: Any) -> bool:
    return isinstance(value, dict) and "profile" in value


class DiskTierMachine(RuleBasedStateMachine):
    """put/get/overwrite/corrupt/wrong shape/directory in place/newest/clear/restart
    against a dict model, with the usage record and the counters checked after
    every step."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="npc-forge-tiers-"))
        self.jobs = Jobs()
        self.disk = self.new_instance()
        self.model: dict[str, Any] = {}
        self.damaged: set[str] = set()  # corrupt on disk, not yet read
        self.junk: set[str] = set()  # a directory where the entry file belongs
        self.quarantines = 0
        self.drift = 0  # bytes the damage changed behind the record's back
        self.hits = self.misses = 0  # what this instance should have counted

    def new_instance(self) -> DiskTier:
        return DiskTier(self.directory, max_entries=MAX_ENTRIES, run_in_background=self.jobs)

    @initialize(values=st.lists(STORABLE, min_size=3, max_size=3))
    def fill(self, values: list[Any]) -> None:
        """Start with entries, so that corruption and overwrites begin at once."""
        for index, value in enumerate(values):
            self.put(NAMES[index], value)

    @rule(name=KEY_NAMES, value=STORABLE)
    def put(self, name: str, value: Any) -> None:
        k = hex_key(name)
        self.disk.put(k, value)
        self.model[k] = value
        self.damaged.discard(k)
        if k in self.junk:  # moved aside to make room
            self.junk.discard(k)
            self.quarantines += 1

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), value=STORABLE)
    def overwrite(self, data: st.DataObject, value: Any) -> None:
        k = data.draw(st.sampled_from(sorted(self.model)))
        self.disk.put(k, value)
        self.model[k] = value
        assert self.disk.get(k) == value
        self.hits += 1

    @rule(name=KEY_NAMES, validate=st.booleans())
    def get(self, name: str, validate: bool) -> None:
        k = hex_key(name)
        got = self.disk.get(k, has_profile if validate else None)
        if k in self.model and (accepted(self.model[k]) or not validate):
            assert got == self.model[k]
            self.hits += 1
            return
        assert got is None  # a miss, never an exception
        self.misses += 1
        if k in self.model:  # the wrong shape for this caller
            del self.model[k]
            self.quarantines += 1
        if k in self.damaged or k in self.junk:
            self.damaged.discard(k)
            self.junk.discard(k)
            self.quarantines += 1
        assert not os.path.lexists(self.disk.path_for(k))

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), damage=DAMAGE, read_now=st.booleans())
    def corrupt(
        self, data: st.DataObject, damage: Callable[[bytes, str], bytes], read_now: bool
    ) -> None:
        """Damage an entry's file; read it at once, or leave it for a later rule."""
        k = data.draw(st.sampled_from(sorted(self.model)))
        path = self.disk.path_for(k)
        raw = path.read_bytes()
        broken = damage(raw, k)
        path.write_bytes(broken)
        self.drift += len(raw) - len(broken)
        del self.model[k]
        self.damaged.add(k)
        if read_now:
            self.get_damaged(k)

    @precondition(lambda self: bool(self.damaged))
    @rule(data=st.data())
    def get_a_damaged_key(self, data: st.DataObject) -> None:
        self.get_damaged(data.draw(st.sampled_from(sorted(self.damaged))))

    def get_damaged(self, k: str) -> None:
        assert self.disk.get(k) is None  # a miss, not an exception
        assert not self.disk.path_for(k).exists()  # moved to quarantine
        self.misses += 1
        self.damaged.discard(k)
        self.quarantines += 1

    @precondition(
        lambda self: any(
            hex_key(n) not in (self.model.keys() | self.damaged | self.junk) for n in NAMES
        )
    )
    @rule(data=st.data())
    def directory_in_place(self, data: st.DataObject) -> None:
        """Something that is not a file where an absent key's entry would go."""
        free = [k for k in map(hex_key, NAMES) if k not in self.model.keys() | self.damaged]
        k = data.draw(st.sampled_from(sorted(set(free) - self.junk)))
        path = self.disk.path_for(k)
        path.mkdir(parents=True)
        (path / "inside.json").write_bytes(b"{}")
        self.junk.add(k)

    @rule(validate=st.booleans())
    def newest(self, validate: bool) -> None:
        """The warm-up: every usable entry, whatever else is on disk."""
        found = dict(self.disk.newest(100, has_profile if validate else None))
        usable = {k: v for k, v in self.model.items() if accepted(v) or not validate}
        assert found == usable
        self.hits += len(usable)
        rejected = set(self.model) - set(usable)
        self.misses += len(rejected) + len(self.damaged)
        self.quarantines += len(rejected) + len(self.damaged)
        for k in rejected:
            del self.model[k]
        self.damaged.clear()  # junk directories are not entries: newest leaves them

    @rule()
    def stats_size(self) -> None:
        self.disk.stats()  # unknown or stale: schedules a refresh
        self.jobs.run()
        assert self.disk.stats().size == len(self.model) + len(self.damaged)

    @rule()
    def clear(self) -> None:
        removed = self.disk.clear()
        assert removed == len(self.model) + len(self.damaged)
        self.model.clear()
        self.damaged.clear()
        self.drift = 0

    @rule()
    def restart(self) -> None:
        self.disk = self.new_instance()
        self.hits = self.misses = 0

    @invariant()
    def files_match_the_model(self) -> None:
        files = entry_files(self.directory)
        regular = {path.stem for path in files if path.is_file()}
        assert regular == set(self.model) | self.damaged
        assert {path.stem for path in files if path.is_dir()} == self.junk
        usage = self.disk.usage()
        assert usage.entries == len(regular)
        on_disk = sum(path.stat().st_size for path in files if path.is_file())
        assert usage.bytes - on_disk == self.drift
        assert len(quarantined(self.directory)) == self.quarantines

    @invariant()
    def counters_match(self) -> None:
        stats = self.disk.stats()
        assert (stats.hits, stats.misses, stats.evictions) == (self.hits, self.misses, 0)

    def teardown(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


TestDiskTierMachine = DiskTierMachine.TestCase
TestDiskTierMachine.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
