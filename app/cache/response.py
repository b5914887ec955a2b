"""The two-tier response cache: memory, then disk, then compute once.

Concurrent callers of one missing key share a single computation (no
stampede), except that a refresh (the user pressed Regenerate) never joins one
already in flight: it computes anew, takes the key over so later callers share
its result, and only its value is stored. Writers of one key are serialised by
an asyncio.Lock in-process and by the disk tier's file lock across processes.
No file is touched on the event loop: disk reads run in a thread, and a freshly
computed value is written to disk in the background, so the NPC is delivered
from memory at once instead of waiting for an fsync. ``flush`` waits for those
writes (the CLI and tests call it before they finish).

Every read takes an optional ``validate`` (see ``app.cache.stats.Validator``):
a cached value it rejects is a miss, dropped from memory and quarantined on
disk, so a record of the wrong shape costs one recomputation, not a failed
NPC on every rerun.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from app.cache.disk import DiskTier
from app.cache.memory import MemoryTier
from app.cache.stats import Validator

log = logging.getLogger(__name__)

Source = Literal["memory", "disk", "computed"]


class ResponseCache:
    def __init__(self, memory: MemoryTier, disk: DiskTier | None = None) -> None:
        self.memory = memory
        self.disk = disk
        # Futures and locks belong to one event loop; keep a set per loop.
        self._inflight: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Future[Any]]
        ] = weakref.WeakKeyDictionary()
        self._write_locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, tuple[asyncio.Lock, int]]
        ] = weakref.WeakKeyDictionary()
        self._pending: set[asyncio.Task[None]] = set()

    async def get(
        self, key: str, *, validate: Validator | None = None
    ) -> tuple[Any, Source | None]:
        """The cached value and where it came from, or ``(None, None)``."""
        value = self.memory.get(key, validate)
        if value is not None:
            return value, "memory"
        if self.disk is not None:
            value = await asyncio.to_thread(self.disk.get, key, validate)
            if value is not None:
                # A value written while the disk was read is newer: keep it.
                self.memory.put_if_absent(key, value)
                return value, "disk"
        return None, None

    async def lookup_many(
        self, keys: Sequence[str], *, validate: Validator | None = None
    ) -> list[Any]:
        """The cached value of each key, in order (None for a miss): memory
        first, then every memory miss from disk in one thread."""
        values = [self.memory.get(key, validate) for key in keys]
        missing = [index for index, value in enumerate(values) if value is None]
        if missing and self.disk is not None:
            disk = self.disk
            found = await asyncio.to_thread(
                lambda: [disk.get(keys[index], validate) for index in missing]
            )
            for index, value in zip(missing, found, strict=True):
                if value is not None:
                    self.memory.put_if_absent(keys[index], value)
                    values[index] = value
        return values

    async def put(self, key: str, value: Any) -> None:
        """Store in memory and (awaited) on disk."""
        self.memory.put(key, value)
        await self._write_disk(key, value)

    def put_soon(self, key: str, value: Any) -> None:
        """Store in memory now and on disk in the background."""
        self.memory.put(key, value)
        if self.disk is None:
            return
        task = asyncio.get_running_loop().create_task(self._write_disk_logged(key, value))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        """Wait until every background disk write of this loop has finished."""
        loop = asyncio.get_running_loop()
        pending = [task for task in self._pending if task.get_loop() is loop]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _write_disk_logged(self, key: str, value: Any) -> None:
        try:
            await self._write_disk(key, value)
        except (OSError, TypeError, ValueError) as exc:
            # A full or read-only disk, or a value JSON cannot hold, costs one
            # cache entry and nothing more.
            log.warning("could not write cache entry %s: %s", key[:12], exc)

    async def _write_disk(self, key: str, value: Any) -> None:
        if self.disk is None:
            return
        locks = self._write_locks.setdefault(asyncio.get_running_loop(), {})
        lock, users = locks.get(key, (asyncio.Lock(), 0))
        # Count the writers holding or awaiting the lock: a released lock still
        # has queued writers, and dropping it then would let a later write
        # overtake them and leave an older value on disk.
        locks[key] = (lock, users + 1)
        try:
            async with lock:
                await asyncio.to_thread(self.disk.put, key, value)
        finally:
            lock, users = locks[key]
            if users == 1:
                del locks[key]
            else:
                locks[key] = (lock, users - 1)

    async def get_or_compute(
        self,
        key: str,
        compute: Callable[[], Awaitable[Any]],
        *,
        refresh: bool = False,
        lookup: bool = True,
        validate: Validator | None = None,
    ) -> tuple[Any, Source]:
        """The cached value, or ``compute()`` run once however many ask at once.

        ``refresh`` (regenerate on purpose) skips both tiers and never joins a
        computation already in flight, which would hand back the old value: it
        computes anew, callers arriving after it share its result, and its value
        is what is stored (a computation it overtook returns to its own callers
        but stores nothing). ``lookup=False`` skips the tiers for a caller that
        has just looked the key up itself, but still joins a computation in
        flight. ``validate`` checks a cached value (memory or disk, not a
        computed one): a value it rejects is dropped, quarantined and recomputed.
        """
        loop = asyncio.get_running_loop()
        inflight = self._inflight.setdefault(loop, {})
        if not refresh:
            if lookup:
                value = self.memory.get(key, validate)
                if value is not None:
                    return value, "memory"
            shared = inflight.get(key)
            if shared is not None:
                try:
                    return await asyncio.shield(shared), "memory"
                except asyncio.CancelledError:
                    if not shared.cancelled():
                        raise  # we were cancelled ourselves
                # The caller computing it was cancelled; compute it for ourselves.
                return await self.get_or_compute(
                    key, compute, refresh=refresh, lookup=lookup, validate=validate
                )
        future: asyncio.Future[Any] = loop.create_future()
        inflight[key] = future  # a refresh takes the key over from any computation

        def current() -> bool:
            """False once a refresh has taken the key over: then this value is old."""
            return inflight.get(key) is future

        try:
            source: Source = "computed"
            value = None
            if not refresh and lookup and self.disk is not None:
                value = await asyncio.to_thread(self.disk.get, key, validate)
                if value is not None:
                    if current():
                        self.memory.put_if_absent(key, value)
                    source = "disk"
            if value is None:
                value = await compute()
                if current():
                    self.put_soon(key, value)
            future.set_result(value)
            return value, source
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # waiters re-raise it; mark it retrieved for the loop
            raise
        finally:
            if current():
                del inflight[key]
