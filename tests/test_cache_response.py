"""ResponseCache: the memory and disk tiers together, and computing once.

Concurrency is driven by events, never by sleeps: a compute waits on a gate
the test opens, and the test knows every caller has arrived by counting the
memory tier's misses (a caller that missed memory joins or starts the
computation before it yields to the loop).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest

from app.cache.disk import QUARANTINE, DiskTier
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


# -- refresh: Regenerate never gets the old value -----------------------------------------
async def test_refresh_never_joins_a_computation_in_flight(cache: ResponseCache) -> None:
    """A Regenerate that comes while the first generation of the key is still
    running computes anew instead of waiting for (and returning) the old value."""
    old = Compute({"v": "old"}, gate=asyncio.Event())
    new = Compute({"v": "new"})
    first = asyncio.create_task(cache.get_or_compute(hex_key("a"), old))
    await old.started.wait()
    regenerated = asyncio.create_task(cache.get_or_compute(hex_key("a"), new, refresh=True))
    assert old.gate is not None
    old.gate.set()
    assert await regenerated == ({"v": "new"}, "computed")
    assert new.calls == 1
    assert await first == ({"v": "old"}, "computed")  # the first caller keeps its own


async def test_the_refreshed_value_is_stored_even_when_the_old_one_finishes_last(
    cache_dir: Path,
) -> None:
    memory = ArrivalCountingMemory(64, expected=2)
    cache = ResponseCache(memory, DiskTier(cache_dir))
    k = hex_key("a")
    old = Compute({"v": "old"}, gate=asyncio.Event())
    new = Compute({"v": "new"}, gate=asyncio.Event())
    first = asyncio.create_task(cache.get_or_compute(k, old))
    await old.started.wait()
    regenerated = asyncio.create_task(cache.get_or_compute(k, new, refresh=True))
    # Fails rather than hangs if the refresh joined the first computation.
    await asyncio.wait_for(new.started.wait(), 60)
    late = asyncio.create_task(cache.get_or_compute(k, never))  # arrives during the refresh
    await memory.arrived.wait()  # it missed memory: it waits for the refresh's result
    assert new.gate is not None and old.gate is not None
    new.gate.set()
    assert await regenerated == ({"v": "new"}, "computed")
    assert await late == ({"v": "new"}, "memory")  # shared the refresh, computed nothing
    old.gate.set()  # the overtaken computation finishes last
    assert await first == ({"v": "old"}, "computed")
    await cache.flush()
    assert cache.memory.get(k) == {"v": "new"}
    assert stored_on_disk(cache_dir, k) == {"v": "new"}
    assert (old.calls, new.calls) == (1, 1)
    assert await cache.get_or_compute(k, never) == ({"v": "new"}, "memory")


async def test_a_refresh_during_a_slow_disk_read_is_not_overwritten(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller reading the old value from disk must not put it back into
    memory over the value a refresh stored meanwhile."""
    DiskTier(cache_dir).put(hex_key("a"), {"v": "old"})
    cache = ResponseCache(MemoryTier(64), DiskTier(cache_dir))
    assert cache.disk is not None
    real_get = cache.disk.get
    reading, release = threading.Event(), threading.Event()

    def slow_get(key: str, validate: Any = None) -> Any:
        value = real_get(key, validate)
        reading.set()
        release.wait()
        return value

    monkeypatch.setattr(cache.disk, "get", slow_get)
    try:
        reader = asyncio.create_task(cache.get_or_compute(hex_key("a"), never))
        assert await asyncio.to_thread(reading.wait)
        refresh = cache.get_or_compute(hex_key("a"), Compute({"v": "new"}), refresh=True)
        # Fails rather than hangs if the refresh waited for the reader.
        assert await asyncio.wait_for(refresh, 60) == ({"v": "new"}, "computed")
    finally:
        release.set()
    assert await reader == ({"v": "old"}, "disk")  # its caller asked before the refresh
    assert cache.memory.get(hex_key("a")) == {"v": "new"}
    await cache.flush()
    assert stored_on_disk(cache_dir, hex_key("a")) == {"v": "new"}


async def test_a_cancelled_refresh_lets_its_waiters_compute(cache_dir: Path) -> None:
    memory = ArrivalCountingMemory(64, expected=1)
    cache = ResponseCache(memory, DiskTier(cache_dir))
    stuck = Compute("stuck", gate=asyncio.Event())  # never opened
    refresh = asyncio.create_task(cache.get_or_compute(hex_key("a"), stuck, refresh=True))
    await stuck.started.wait()
    waiter = asyncio.create_task(cache.get_or_compute(hex_key("a"), Compute("waiter")))
    await memory.arrived.wait()
    refresh.cancel()
    assert await waiter == ("waiter", "computed")
    with pytest.raises(asyncio.CancelledError):
        await refresh
    await cache.flush()
    assert stored_on_disk(cache_dir, hex_key("a")) == "waiter"


# -- lookup=False and lookup_many ---------------------------------------------------------
async def test_lookup_false_skips_the_tiers_but_joins_a_computation(
    cache: ResponseCache, cache_dir: Path
) -> None:
    k = hex_key("a")
    await cache.put(k, {"v": "cached"})
    compute = Compute({"v": "computed"}, gate=asyncio.Event())
    first = asyncio.create_task(cache.get_or_compute(k, compute, lookup=False))
    await compute.started.wait()
    second = asyncio.create_task(cache.get_or_compute(k, never, lookup=False))
    assert compute.gate is not None
    compute.gate.set()
    assert await first == ({"v": "computed"}, "computed")  # the tiers were not asked
    assert await second == ({"v": "computed"}, "memory")  # shared, not computed again
    assert compute.calls == 1
    await cache.flush()
    assert stored_on_disk(cache_dir, k) == {"v": "computed"}


async def test_lookup_many_reads_memory_then_disk_in_order(cache_dir: Path) -> None:
    on_disk = DiskTier(cache_dir)
    on_disk.put(hex_key("disk"), "from disk")
    on_disk.put(hex_key("wrong"), ["wrong", "shape"])
    cache = ResponseCache(MemoryTier(64), DiskTier(cache_dir))
    cache.memory.put(hex_key("memory"), {"profile": "from memory"})
    cache.memory.put(hex_key("stale"), {"old": "shape"})

    def check(value: Any) -> object:
        if isinstance(value, str):
            return value
        return value["profile"]  # TypeError or KeyError for other shapes

    keys = [hex_key(name) for name in ("memory", "absent", "disk", "stale", "wrong", "memory")]
    values = await cache.lookup_many(keys, validate=check)
    memory_hit = {"profile": "from memory"}
    assert values == [memory_hit, None, "from disk", None, None, memory_hit]
    assert cache.memory.get(hex_key("disk")) == "from disk"  # promoted
    assert cache.memory.get(hex_key("stale")) is None  # dropped
    assert cache.disk is not None and cache.disk.get(hex_key("wrong")) is None  # quarantined
    assert await cache.lookup_many([]) == []


# -- validate through both tiers ------------------------------------------------------------
class ShapeCheck:
    """The generation service's kind of validator: an NPC entry's shape."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, value: Any) -> object:
        self.calls += 1
        return value["profile"]["name"]  # TypeError or KeyError for another shape


GOOD = {"profile": {"name": "Ædwin"}, "repaired": False}


@pytest.mark.parametrize("where", ["memory", "disk", "both"])
async def test_a_wrong_shape_cached_value_is_recomputed_once_not_on_every_run(
    cache_dir: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    k = hex_key("a")
    wrong = {"name": "a record from an older schema"}
    disk = DiskTier(cache_dir)
    if where in ("disk", "both"):
        disk.put(k, wrong)
    cache = ResponseCache(MemoryTier(64), disk)
    if where in ("memory", "both"):
        cache.memory.put(k, wrong)
    check = ShapeCheck()
    compute = Compute(GOOD)
    assert await cache.get_or_compute(k, compute, validate=check) == (GOOD, "computed")
    assert compute.calls == 1
    assert k[:12] in caplog.text and "wrong shape" in caplog.text
    await cache.flush()
    assert stored_on_disk(cache_dir, k) == GOOD
    if where != "memory":
        assert len(list((cache_dir / QUARANTINE).iterdir())) == 1
    # the next run, and the next process, are served the recomputed value
    assert await cache.get_or_compute(k, never, validate=check) == (GOOD, "memory")
    restarted = ResponseCache(MemoryTier(64), DiskTier(cache_dir))
    assert await restarted.get_or_compute(k, never, validate=check) == (GOOD, "disk")


async def test_get_with_a_validator_drops_a_wrong_shape(cache_dir: Path) -> None:
    cache = ResponseCache(MemoryTier(64), DiskTier(cache_dir))
    await cache.put(hex_key("a"), ["wrong"])
    assert await cache.get(hex_key("a"), validate=ShapeCheck()) == (None, None)
    assert await cache.get(hex_key("a")) == (None, None)  # gone from both tiers
    await cache.put(hex_key("a"), GOOD)
    assert await cache.get(hex_key("a"), validate=ShapeCheck()) == (GOOD, "memory")


async def test_a_computed_value_is_not_validated(cache: ResponseCache) -> None:
    check = ShapeCheck()
    assert await cache.get_or_compute(hex_key("a"), Compute(["any"]), validate=check) == (
        ["any"],
        "computed",
    )
    assert check.calls == 0  # the caller validated what it computed itself


# -- nothing touches a file on the event loop ---------------------------------------------
async def test_no_file_is_touched_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building the cache, hits, misses, refreshes, background writes, flush,
    rejected shapes and stats() all leave file I/O to worker threads."""
    loop_thread = threading.get_ident()
    on_the_loop: list[str] = []

    def watch(module: Any, name: str) -> None:
        real = getattr(module, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == loop_thread:
                on_the_loop.append(f"{module.__name__}.{name}{args[:1]}")
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, watched)

    file_calls: list[tuple[Any, str]] = [
        *((os, name) for name in ("open", "stat", "lstat", "fstat", "scandir", "listdir")),
        *((os, name) for name in ("mkdir", "replace", "rename", "unlink", "remove", "rmdir")),
        (os, "fsync"),
        (os, "utime"),
        (io, "open"),
        (fcntl, "flock"),
    ]
    directory = tmp_path / "responses"
    seeded = DiskTier(directory)
    seeded.put(hex_key("on disk"), GOOD)
    seeded.put(hex_key("wrong"), ["wrong"])
    for module, name in file_calls:
        watch(module, name)
    disk = DiskTier(directory)
    cache = ResponseCache(MemoryTier(64), disk)
    check = ShapeCheck()
    await cache.get_or_compute(hex_key("a"), Compute(GOOD), validate=check)  # computed
    await cache.get_or_compute(hex_key("a"), never, validate=check)  # memory
    await cache.get_or_compute(hex_key("on disk"), never, validate=check)  # disk
    await cache.get_or_compute(hex_key("wrong"), Compute(GOOD), validate=check)  # quarantined
    cache.memory.put(hex_key("stale"), ["wrong"])
    await cache.get_or_compute(hex_key("stale"), Compute(GOOD), validate=check)  # dropped
    await cache.get_or_compute(hex_key("a"), Compute(GOOD), refresh=True)
    await cache.get(hex_key("b"), validate=check)
    await cache.lookup_many([hex_key("a"), hex_key("c")], validate=check)
    cache.put_soon(hex_key("d"), GOOD)
    await cache.put(hex_key("e"), GOOD)
    disk.stats()
    cache.memory.stats()
    await cache.flush()
    monkeypatch.undo()
    assert on_the_loop == []
    assert check.calls > 0
    assert stored_on_disk(directory, hex_key("d")) == GOOD
