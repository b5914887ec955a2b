"""Each response-cache tier's own promises: the memory tier's LRU order; the
disk tier's bounds, file format, keys, corruption, temp files and restarts,
and a Hypothesis state machine for the disk tier against a dict model.

The contract both tiers share is in test_cache_contract.py.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
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

from app.cache.disk import QUARANTINE, DiskTier
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


@pytest.mark.xfail(
    strict=True,
    reason="app bug: each DiskTier keeps its own usage count, so two instances "
    "(two processes) on one directory overshoot max_entries",
)
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
    assert DiskTier(tmp_path).usage().entries == 2  # a fresh count agrees


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
# Any JSON value but a top-level None (None means "miss" to every tier).
STORABLE = JSON_VALUES.filter(lambda value: value is not None)
# Keys are digests of a name, so a few names make overwrites and damage likely.
KEY_NAMES = st.sampled_from([f"key-{i}" for i in range(5)])
DAMAGE = st.sampled_from([_truncate, _empty, _garbage, _another_key, _no_value])


class DiskTierMachine(RuleBasedStateMachine):
    """put/get/overwrite/corrupt/clear/restart against a dict model."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="npc-forge-tiers-"))
        self.disk = DiskTier(self.directory, max_entries=100_000)
        self.model: dict[str, Any] = {}
        self.damaged: set[str] = set()  # corrupt on disk, not yet read
        self.quarantines = 0
        self.hits = self.misses = 0  # what this instance should have counted

    @initialize(values=st.lists(STORABLE, min_size=3, max_size=3))
    def fill(self, values: list[Any]) -> None:
        """Start with entries, so that corruption and overwrites begin at once."""
        for index, value in enumerate(values):
            self.put(f"key-{index}", value)

    @rule(name=KEY_NAMES, value=STORABLE)
    def put(self, name: str, value: Any) -> None:
        k = hex_key(name)
        self.disk.put(k, value)
        self.model[k] = value
        self.damaged.discard(k)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), value=STORABLE)
    def overwrite(self, data: st.DataObject, value: Any) -> None:
        k = data.draw(st.sampled_from(sorted(self.model)))
        self.disk.put(k, value)
        self.model[k] = value
        assert self.disk.get(k) == value
        self.hits += 1

    @rule(name=KEY_NAMES)
    def get(self, name: str) -> None:
        k = hex_key(name)
        got = self.disk.get(k)
        if k in self.model:
            assert got == self.model[k]
            self.hits += 1
        else:
            assert got is None
            self.misses += 1
        if k in self.damaged:
            self.damaged.discard(k)
            self.quarantines += 1

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), damage=DAMAGE, read_now=st.booleans())
    def corrupt(
        self, data: st.DataObject, damage: Callable[[bytes, str], bytes], read_now: bool
    ) -> None:
        """Damage an entry's file; read it at once, or leave it for a later rule."""
        k = data.draw(st.sampled_from(sorted(self.model)))
        path = self.disk.path_for(k)
        path.write_bytes(damage(path.read_bytes(), k))
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

    @rule()
    def clear(self) -> None:
        removed = self.disk.clear()
        assert removed == len(self.model) + len(self.damaged)
        self.model.clear()
        self.damaged.clear()

    @rule()
    def restart(self) -> None:
        self.disk = DiskTier(self.directory, max_entries=100_000)
        self.hits = self.misses = 0

    @invariant()
    def files_match_the_model(self) -> None:
        stems = {path.stem for path in entry_files(self.directory)}
        assert stems == set(self.model) | self.damaged
        assert self.disk.usage().entries == len(stems)
        assert len(quarantined(self.directory)) == self.quarantines

    @invariant()
    def counters_match(self) -> None:
        stats = self.disk.stats()
        assert (stats.hits, stats.misses, stats.evictions) == (self.hits, self.misses, 0)

    def teardown(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


TestDiskTierMachine = DiskTierMachine.TestCase
TestDiskTierMachine.settings = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
