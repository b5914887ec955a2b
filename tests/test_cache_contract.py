"""One contract for every response-cache tier, plus the disk tier's own promises."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from app.backends.base import JSONRequest
from app.cache.disk import DiskTier
from app.cache.keys import response_key
from app.cache.memory import MemoryTier
from app.cache.response import ResponseCache

VALUE = {"profile": {"name": "Ædwin", "lines": ["Hæ!", "…"], "age": 41, "ratio": 0.25}, "ok": True}


def key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(params=["memory", "disk"])
def tier(request: pytest.FixtureRequest, tmp_path: Path) -> MemoryTier | DiskTier:
    if request.param == "memory":
        return MemoryTier(maxsize=100)
    return DiskTier(tmp_path / "cache", max_entries=100)


def test_contract_miss_put_hit_overwrite_clear(tier: MemoryTier | DiskTier) -> None:
    assert tier.get(key("a")) is None
    tier.put(key("a"), VALUE)
    assert tier.get(key("a")) == VALUE
    tier.put(key("a"), {"other": 1})
    assert tier.get(key("a")) == {"other": 1}
    stats = tier.stats()
    assert (stats.hits, stats.misses, stats.size) == (2, 1, 1)
    assert stats.hit_rate == pytest.approx(2 / 3)
    tier.clear()
    assert tier.get(key("a")) is None


def test_memory_tier_evicts_least_recently_used() -> None:
    memory = MemoryTier(maxsize=3)
    for name in "abc":
        memory.put(key(name), name)
    memory.get(key("a"))  # a is now the most recently used
    memory.put(key("d"), "d")
    assert memory.get(key("b")) is None and memory.get(key("a")) == "a"
    assert memory.stats().evictions == 1 and len(memory) == 3


def test_disk_tier_evicts_the_oldest_within_bounds(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path, max_entries=10)
    for index in range(25):
        disk.put(key(str(index)), {"i": index})
        path = disk.path_for(key(str(index)))
        os.utime(path, ns=(index * 10**9, index * 10**9))  # a distinct, ordered age
    assert disk.usage().entries <= 10
    assert disk.get(key("24")) == {"i": 24} and disk.get(key("0")) is None
    assert disk.stats().evictions >= 15
    small = DiskTier(tmp_path / "bytes", max_bytes=4096)
    for index in range(40):
        small.put(key(f"b{index}"), {"pad": "x" * 300})
    assert small.usage().bytes <= 4096


def test_compact_and_pretty_files(tmp_path: Path) -> None:
    compact = DiskTier(tmp_path / "compact")
    compact.put(key("a"), VALUE)
    raw = compact.path_for(key("a")).read_bytes()
    assert b"\n" not in raw and orjson.loads(raw) == {
        "k": key("a"),
        "t": orjson.loads(raw)["t"],
        "v": VALUE,
    }
    pretty = DiskTier(tmp_path / "pretty", pretty=True)
    pretty.put(key("a"), VALUE)
    text = pretty.path_for(key("a")).read_text()
    assert "\n  " in text and orjson.loads(text)["v"] == VALUE


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw, path: raw[: len(raw) // 2],  # truncated
        lambda raw, path: b"\x00\xffgarbage",
        lambda raw, path: orjson.dumps({"k": "0" * 64, "v": 1}),  # another key's record
    ],
)
def test_corrupt_file_is_a_quarantined_miss(
    tmp_path: Path, damage: Any, caplog: pytest.LogCaptureFixture
) -> None:
    disk = DiskTier(tmp_path)
    disk.put(key("a"), VALUE)
    path = disk.path_for(key("a"))
    path.write_bytes(damage(path.read_bytes(), path))
    with caplog.at_level(logging.WARNING):
        assert disk.get(key("a")) is None
    assert not path.exists()
    assert len(list((tmp_path / "quarantine").iterdir())) == 1
    assert "corrupt" in caplog.text
    disk.put(key("a"), VALUE)
    assert disk.get(key("a")) == VALUE


def test_temp_files_are_ignored_and_swept(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path)
    disk.put(key("a"), VALUE)
    shard = disk.path_for(key("a")).parent
    stale, fresh = shard / f".{key('b')}.json.x1.tmp", shard / f".{key('c')}.json.x2.tmp"
    stale.write_bytes(b"{half")
    fresh.write_bytes(b"{half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert disk.get(key("b")) is None  # a temp file is never read as an entry
    assert disk.sweep_temp_files() == 1
    assert not stale.exists() and fresh.exists()
    assert disk.usage().entries == 1


def test_keys_must_be_hex_digests(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hex"):
        DiskTier(tmp_path).path_for("../../etc/passwd")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


class DiskTierMachine(RuleBasedStateMachine):
    """put/get/corrupt/clear/restart against a dict model."""

    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="npc-forge-disk-"))
        self.disk = DiskTier(self.directory, max_entries=10_000)
        self.model: dict[str, Any] = {}

    @rule(target=keys, name=st.text(min_size=1, max_size=8))
    def new_key(self, name: str) -> str:
        return key(name)

    @rule(k=keys, value=JSON_VALUES)
    def put(self, k: str, value: Any) -> None:
        if value is None:
            value = {"none": None}  # None means "miss" to the tiers
        self.disk.put(k, value)
        self.model[k] = value

    @rule(k=keys)
    def get(self, k: str) -> None:
        assert self.disk.get(k) == self.model.get(k)

    @rule(k=keys)
    def corrupt(self, k: str) -> None:
        path = self.disk.path_for(k)
        if path.exists():
            path.write_bytes(b'{"k": "broken')
            self.model.pop(k, None)
            assert self.disk.get(k) is None

    @rule()
    def clear(self) -> None:
        self.disk.clear()
        self.model.clear()

    @rule()
    def restart(self) -> None:
        self.disk = DiskTier(self.directory, max_entries=10_000)

    @invariant()
    def entries_match(self) -> None:
        assert self.disk.usage().entries == len(self.model) or self.disk._count().entries == len(
            self.model
        )

    def teardown(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


TestDiskTierStateful = DiskTierMachine.TestCase
TestDiskTierStateful.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)


# -- the two tiers together ---------------------------------------------------------
@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ResponseCache]:
    yield ResponseCache(MemoryTier(64), DiskTier(tmp_path / "responses"))


async def test_concurrent_misses_compute_once(cache: ResponseCache) -> None:
    calls = 0

    async def compute() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return {"n": 1}

    results = await asyncio.gather(*(cache.get_or_compute(key("a"), compute) for _ in range(20)))
    assert calls == 1 and all(value == {"n": 1} for value, _ in results)
    assert sorted(source for _, source in results).count("computed") == 1


async def test_memory_hit_does_not_touch_disk_and_restart_reads_disk(
    cache: ResponseCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def compute() -> dict[str, str]:
        return VALUE

    await cache.get_or_compute(key("a"), compute)
    await cache.flush()
    assert cache.disk is not None

    def no_disk(_: str) -> None:
        raise AssertionError("the memory tier should answer")

    monkeypatch.setattr(cache.disk, "get", no_disk)
    assert (await cache.get_or_compute(key("a"), compute))[1] == "memory"
    monkeypatch.undo()
    restarted = ResponseCache(MemoryTier(64), DiskTier(tmp_path / "responses"))

    async def never() -> None:
        raise AssertionError("the disk tier should answer")

    assert await restarted.get_or_compute(key("a"), never) == (VALUE, "disk")


async def test_refresh_recomputes_and_errors_store_nothing(cache: ResponseCache) -> None:
    async def first() -> str:
        return "old"

    async def second() -> str:
        return "new"

    await cache.get_or_compute(key("a"), first)
    assert await cache.get_or_compute(key("a"), second, refresh=True) == ("new", "computed")
    assert (await cache.get_or_compute(key("a"), first))[0] == "new"

    async def broken() -> str:
        await asyncio.sleep(0.01)
        raise RuntimeError("backend down")

    results = await asyncio.gather(
        *(cache.get_or_compute(key("b"), broken) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(result, RuntimeError) for result in results)
    await cache.flush()
    assert await cache.get(key("b")) == (None, None)


def _request(**changes: Any) -> JSONRequest:
    values: dict[str, Any] = {
        "task": "npc_profile",
        "messages": [{"role": "user", "content": "hi"}],
        "schema": {"type": "object"},
        "inputs": {"b": 2, "a": 1},
        "temperature": 0.9,
        "seed": 1,
    }
    values.update(changes)
    return JSONRequest(**values)


def test_response_keys() -> None:
    base = response_key("openai:m@u", _request(), 1)
    assert base == response_key("openai:m@u", _request(inputs={"a": 1, "b": 2}), 1)
    for other in (
        response_key("openai:other@u", _request(), 1),
        response_key("openai:m@other", _request(), 1),
        response_key("openai:m@u", _request(seed=2), 1),
        response_key("openai:m@u", _request(temperature=0.5), 1),
        response_key("openai:m@u", _request(messages=[{"role": "user", "content": "yo"}]), 1),
        response_key("openai:m@u", _request(), 2),
    ):
        assert other != base
