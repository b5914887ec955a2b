"""ResponseCache: the memory and disk tiers together, and computing once.

Concurrency is driven by events, never by sleeps: a compute waits on a gate
the test opens, and the test knows every caller has arrived by counting the
memory tier's misses (a caller that missed memory joins or starts the
computation before it yields to the loop).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest

from app.cache.disk import DiskTier
from app.cache.memory import MemoryTier
from app.cache.response import ResponseCache

NPC: dict[str, Any] = {"name": "Ædwin", "traits": ["dour", "日本語"], "age": 41, "ratio": 0.25}


def hex_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Compute:
    """An async compute function that counts its calls and waits for ``gate``."""

    def __init__(
        self, value: Any, *, error: Exception | None = None, gate: asyncio.Event | None = None
    ) -> None:
        self.value = value
        self.error = error
        self.gate = gate
        self.calls = 0
        self.started = asyncio.Event()

    async def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.value


class ArrivalCountingMemory(MemoryTier):
    """A memory tier that sets ``arrived`` once it has counted ``expected`` misses."""

    def __init__(self, maxsize: int, expected: int) -> None:
        super().__init__(maxsize)
        self.expected = expected
        self.arrived = asyncio.Event()

    def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
        value = super().get(key, *args, **kwargs)
        if self.stats().misses >= self.expected:
            self.arrived.set()
        return value


async def never() -> Any:
    raise AssertionError("this value should have come from a cache tier")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "responses"


@pytest.fixture
def cache(cache_dir: Path) -> ResponseCache:
    return ResponseCache(MemoryTier(64), DiskTier(cache_dir))


def stored_on_disk(cache_dir: Path, k: str) -> Any:
    path = cache_dir / k[:2] / f"{k}.json"
    return orjson.loads(path.read_bytes())["v"] if path.exists() else None


# -- computing once ---------------------------------------------------------------------
async def test_concurrent_callers_of_one_key_compute_once(cache_dir: Path) -> None:
    memory = ArrivalCountingMemory(64, expected=20)
    cache = ResponseCache(memory, DiskTier(cache_dir))
    compute = Compute(NPC, gate=asyncio.Event())
    callers = [asyncio.create_task(cache.get_or_compute(hex_key("a"), compute)) for _ in range(20)]
    await memory.arrived.wait()  # all 20 missed memory: one computes, 19 wait for it
    assert compute.gate is not None
    compute.gate.set()
    results = await asyncio.gather(*callers)
    assert compute.calls == 1
    assert [value for value, _ in results] == [NPC] * 20
    sources = sorted(source for _, source in results)
    assert sources == ["computed"] + ["memory"] * 19
    await cache.flush()
    assert stored_on_disk(cache_dir, hex_key("a")) == NPC


async def test_concurrent_callers_of_different_keys_compute_each_once(cache_dir: Path) -> None:
    memory = ArrivalCountingMemory(64, expected=20)
    cache = ResponseCache(memory, DiskTier(cache_dir))
    gate = asyncio.Event()
    computes = {name: Compute({"name": name}, gate=gate) for name in "abcd"}
    callers = [
        asyncio.create_task(cache.get_or_compute(hex_key(name), computes[name]))
        for name in "abcd" * 5
    ]
    await memory.arrived.wait()
    gate.set()
    results = await asyncio.gather(*callers)
    assert {name: c.calls for name, c in computes.items()} == dict.fromkeys("abcd", 1)
    assert [value["name"] for value, _ in results] == list("abcd" * 5)
    await cache.flush()


async def test_an_error_reaches_every_waiter_and_nothing_is_stored(cache_dir: Path) -> None:
    memory = ArrivalCountingMemory(64, expected=20)
    cache = ResponseCache(memory, DiskTier(cache_dir))
    error = RuntimeError("backend down")
    broken = Compute(None, error=error, gate=asyncio.Event())
    callers = [asyncio.create_task(cache.get_or_compute(hex_key("a"), broken)) for _ in range(20)]
    await memory.arrived.wait()
    assert broken.gate is not None
    broken.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert broken.calls == 1
    assert all(result is error for result in results)
    await cache.flush()
    assert len(cache.memory) == 0
    assert stored_on_disk(cache_dir, hex_key("a")) is None
    assert await cache.get(hex_key("a")) == (None, None)
    fixed = Compute({"ok": True})  # nothing in flight is left behind: it computes again
    assert await cache.get_or_compute(hex_key("a"), fixed) == ({"ok": True}, "computed")
    assert fixed.calls == 1
    await cache.flush()


async def test_a_cancelled_computer_lets_a_waiter_compute(cache_dir: Path) -> None:
    memory = ArrivalCountingMemory(64, expected=2)
    cache = ResponseCache(memory, DiskTier(cache_dir))
    stuck = Compute({"from": "stuck"}, gate=asyncio.Event())  # never opened
    first = asyncio.create_task(cache.get_or_compute(hex_key("a"), stuck))
    await stuck.started.wait()  # first is now computing
    waiter = asyncio.create_task(cache.get_or_compute(hex_key("a"), Compute({"from": "waiter"})))
    await memory.arrived.wait()  # the waiter missed memory: it now waits on first's result
    first.cancel()
    assert await waiter == ({"from": "waiter"}, "computed")
    with pytest.raises(asyncio.CancelledError):
        await first
    assert stuck.calls == 1
    await cache.flush()
    assert await cache.get(hex_key("a")) == ({"from": "waiter"}, "memory")


# -- the two tiers ------------------------------------------------------------------------
async def test_second_call_is_a_memory_hit_without_touching_disk(
    cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    compute = Compute(NPC)
    assert await cache.get_or_compute(hex_key("a"), compute) == (NPC, "computed")
    await cache.flush()
    assert cache.disk is not None

    def no_disk(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the memory tier should have answered")

    monkeypatch.setattr(cache.disk, "get", no_disk)
    hits_before = cache.memory.stats().hits
    assert await cache.get_or_compute(hex_key("a"), compute) == (NPC, "memory")
    assert await cache.get(hex_key("a")) == (NPC, "memory")
    assert compute.calls == 1
    assert cache.memory.stats().hits == hits_before + 2


async def test_restart_serves_from_disk_without_computing(cache_dir: Path) -> None:
    first = ResponseCache(MemoryTier(64), DiskTier(cache_dir))
    await first.get_or_compute(hex_key("a"), Compute(NPC))
    await first.flush()
    restarted = ResponseCache(MemoryTier(64), DiskTier(cache_dir))
    assert await restarted.get_or_compute(hex_key("a"), never) == (NPC, "disk")
    assert restarted.disk is not None and restarted.disk.stats().hits == 1
    # now promoted to memory
    assert await restarted.get_or_compute(hex_key("a"), never) == (NPC, "memory")
    assert restarted.disk.stats().hits == 1
    again = ResponseCache(MemoryTier(64), DiskTier(cache_dir))  # get() reads disk as well
    assert await again.get(hex_key("a")) == (NPC, "disk")
    assert await again.get(hex_key("a")) == (NPC, "memory")


async def test_refresh_recomputes_and_overwrites_both_tiers(
    cache: ResponseCache, cache_dir: Path
) -> None:
    old, new = Compute({"v": "old"}), Compute({"v": "new"})
    await cache.get_or_compute(hex_key("a"), old)
    await cache.flush()
    assert await cache.get_or_compute(hex_key("a"), new, refresh=True) == ({"v": "new"}, "computed")
    assert new.calls == 1
    assert await cache.get_or_compute(hex_key("a"), old) == ({"v": "new"}, "memory")
    await cache.flush()
    assert stored_on_disk(cache_dir, hex_key("a")) == {"v": "new"}
    restarted = ResponseCache(MemoryTier(64), DiskTier(cache_dir))
    assert await restarted.get_or_compute(hex_key("a"), never) == ({"v": "new"}, "disk")
    assert old.calls == 1


async def test_refresh_before_the_first_write_lands_still_wins(cache: ResponseCache) -> None:
    """The first value's disk write may still be pending when Regenerate comes."""
    await cache.get_or_compute(hex_key("a"), Compute("old"))  # no flush
    assert await cache.get_or_compute(hex_key("a"), Compute("new"), refresh=True) == (
        "new",
        "computed",
    )
    assert (await cache.get_or_compute(hex_key("a"), never))[0] == "new"
    await cache.flush()
    restarted = ResponseCache(MemoryTier(64), cache.disk)
    assert await restarted.get(hex_key("a")) == ("new", "disk")


async def test_disk_writes_of_one_key_land_in_order(
    cache: ResponseCache, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later write of a key waits for the earlier ones: it queues on the same
    lock instead of overtaking them and leaving an older value on disk."""
    assert cache.disk is not None
    real_put = cache.disk.put
    entered = {name: threading.Event() for name in ("first", "second", "third")}
    release = {name: threading.Event() for name in ("first", "second", "third")}
    landed: list[str] = []
    contended = asyncio.Event()

    class WatchedLock(asyncio.Lock):
        async def acquire(self) -> Literal[True]:
            if self.locked():
                contended.set()
            return await super().acquire()

    monkeypatch.setattr(asyncio, "Lock", WatchedLock)

    def put(key: str, value: str) -> None:
        entered[value].set()
        release[value].wait()
        real_put(key, value)
        landed.append(value)

    monkeypatch.setattr(cache.disk, "put", put)
    k = hex_key("a")
    try:
        cache.put_soon(k, "first")
        cache.put_soon(k, "second")
        assert await asyncio.to_thread(entered["first"].wait)
        await contended.wait()  # "second" waits for "first"
        contended.clear()
        release["first"].set()
        assert await asyncio.to_thread(entered["second"].wait)
        cache.put_soon(k, "third")  # e.g. a refresh while the previous write is running
        third_entered = asyncio.create_task(asyncio.to_thread(entered["third"].wait))
        contended_now = asyncio.create_task(contended.wait())
        done, _ = await asyncio.wait(
            {third_entered, contended_now}, return_when=asyncio.FIRST_COMPLETED
        )
        contended_now.cancel()  # when the third write overtook, it is still waiting
        assert done == {contended_now}, "the third write overtook the second"
    finally:  # never leave a worker thread waiting, pass or fail
        for event in (*release.values(), *entered.values()):
            event.set()
    await cache.flush()
    await third_entered
    assert cache.memory.get(k) == "third"
    assert landed == ["first", "second", "third"]
    assert stored_on_disk(cache_dir, k) == "third"


async def test_memory_only_cache(cache_dir: Path) -> None:
    cache = ResponseCache(MemoryTier(4))
    compute = Compute(NPC)
    assert await cache.get_or_compute(hex_key("a"), compute) == (NPC, "computed")
    assert await cache.get_or_compute(hex_key("a"), compute) == (NPC, "memory")
    cache.put_soon(hex_key("b"), "b")
    await cache.put(hex_key("c"), "c")
    await cache.flush()
    assert compute.calls == 1 and not cache_dir.exists()
    assert await cache.get(hex_key("c")) == ("c", "memory")


async def test_put_is_on_disk_when_it_returns(cache: ResponseCache, cache_dir: Path) -> None:
    await cache.put(hex_key("a"), NPC)
    assert stored_on_disk(cache_dir, hex_key("a")) == NPC
    assert cache.memory.get(hex_key("a")) == NPC


async def test_a_failed_background_write_costs_only_that_entry(
    cache: ResponseCache, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache.put_soon(hex_key("a"), {"not json": {1, 2}})  # a set: JSON cannot hold it
    cache.put_soon(hex_key("b"), NPC)
    await cache.flush()
    assert "could not write cache entry" in caplog.text and hex_key("a")[:12] in caplog.text
    assert stored_on_disk(cache_dir, hex_key("a")) is None
    assert stored_on_disk(cache_dir, hex_key("b")) == NPC
