"""until_set: a source is closed at once however the iteration ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from utils.aio import until_set


class Source:
    """Yields ``ready`` items, then waits forever; records how it ended."""

    def __init__(self, ready: int) -> None:
        self.ready = ready
        self.closed = False
        self.cancelled = False

    async def items(self) -> AsyncGenerator[int, None]:
        try:
            for item in range(self.ready):
                yield item
            await asyncio.Event().wait()
            yield -1
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.closed = True


async def test_stop_while_the_source_waits_cancels_and_closes_it() -> None:
    stop, source = asyncio.Event(), Source(ready=2)
    got = []
    async for item in until_set(stop, source.items()):
        got.append(item)
        if len(got) == 2:
            asyncio.get_running_loop().call_soon(stop.set)  # set while the source waits
    assert got == [0, 1] and source.cancelled and source.closed


async def test_stop_set_between_items_ends_after_the_current_one() -> None:
    stop, source = asyncio.Event(), Source(ready=5)
    got = []
    async for item in until_set(stop, source.items()):
        got.append(item)
        stop.set()
    assert got == [0] and source.closed and not source.cancelled


async def test_leaving_early_closes_the_source() -> None:
    stop, source = asyncio.Event(), Source(ready=5)
    async with contextlib.aclosing(until_set(stop, source.items())) as items:
        async for item in items:
            if item == 1:
                break
    assert source.closed


async def test_a_finished_source_ends_the_iteration() -> None:
    async def three() -> AsyncGenerator[int, None]:
        for item in range(3):
            yield item

    assert [item async for item in until_set(asyncio.Event(), three())] == [0, 1, 2]


async def test_cancelling_the_consumer_closes_the_source() -> None:
    stop, source = asyncio.Event(), Source(ready=1)
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in until_set(stop, source.items()):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert source.cancelled and source.closed
