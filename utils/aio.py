"""Asyncio helpers with no app imports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import TypeVar

T = TypeVar("T")


async def until_set(
    stop: asyncio.Event, source: AsyncGenerator[T, None]
) -> AsyncGenerator[T, None]:
    """The items of ``source`` until it ends or ``stop`` is set.

    Either way, and also when the consumer leaves early or is cancelled,
    ``source`` is closed before this returns: its ``finally`` runs now (so the
    work it started is cancelled deterministically), not at garbage collection.
    """
    stopper = asyncio.ensure_future(stop.wait())
    step: asyncio.Future[T] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(source))
            await asyncio.wait({step, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():  # stopped while the source was waiting
                return
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            step = None
            yield item
            if stop.is_set():
                return
    finally:
        stopper.cancel()
        if step is not None and not step.done():
            # Cancelling the pending step runs the source's cleanup inside it.
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await step
        await source.aclose()
