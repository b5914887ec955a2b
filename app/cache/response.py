"""The two-tier response cache: memory, then disk, then compute once.

Concurrent callers of one missing key share a single computation (no
stampede); writers of one key are serialised by an asyncio.Lock in-process
and by the disk tier's file lock across processes. Disk I/O runs in a thread,
and a freshly computed value is written to disk in the background: the NPC
is delivered from memory at once instead of waiting for an fsync. ``flush``
waits for those writes (the CLI and tests call it before they finish).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from app.cache.disk import DiskTier
from app.cache.memory import MemoryTier

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

    async def get(self, key: str) -> tuple[Any, Source | None]:
        value = self.memory.get(key)
        if value is not None:
            return value, "memory"
        if self.disk is not None:
            value = await asyncio.to_thread(self.disk.get, key)
            if value is not None:
                self.memory.put(key, value)
                return value, "disk"
        return None, None

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
        self, key: str, compute: Callable[[], Awaitable[Any]], *, refresh: bool = False
    ) -> tuple[Any, Source]:
        """The cached value, or ``compute()`` run once however many ask at once.

        ``refresh`` skips the lookup (regenerate on purpose) but stores the result.
        """
        if not refresh:
            value = self.memory.get(key)
            if value is not None:
                return value, "memory"
        inflight = self._inflight.setdefault(asyncio.get_running_loop(), {})
        if key in inflight:
            shared = inflight[key]
            try:
                return await asyncio.shield(shared), "memory"
            except asyncio.CancelledError:
                if not shared.cancelled():
                    raise  # we were cancelled ourselves
            # The caller computing it was cancelled; compute it for ourselves.
            return await self.get_or_compute(key, compute, refresh=refresh)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        inflight[key] = future
        try:
            source: Source = "computed"
            value = None
            if not refresh and self.disk is not None:
                value = await asyncio.to_thread(self.disk.get, key)
                if value is not None:
                    self.memory.put(key, value)
                    source = "disk"
            if value is None:
                value = await compute()
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
            del inflight[key]
