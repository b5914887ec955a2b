"""Write a changing state in the background, coalesced: the latest state wins.

``LatestWriter(write)`` runs ``write()`` on one worker thread after ``changed()``
is called. At most one write is in flight; changes made while it runs are
written by one more call after it, which reads the state as it is then. So a
burst of changes costs one or two writes, and the caller never waits for a disk.
``flush()`` waits until every change made before it is written; ``close()``
flushes and stops the thread; a change after that is written at once, on the
caller (a charge while the app shuts down is still kept).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)


class LatestWriter:
    """See the module docstring; ``writes`` counts the calls of ``write``."""

    def __init__(self, write: Callable[[], object], name: str = "latest-writer") -> None:
        self._write = write
        self._lock = threading.Lock()
        self._dirty = False
        self._future: Future[None] | None = None
        self._closed = False
        # One worker: writes never overlap, and the interpreter joins it at exit.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.writes = 0

    def changed(self) -> None:
        """The state changed: write it soon (once, however many changes come first)."""
        with self._lock:
            self._dirty = True
            if self._future is None and not self._closed:
                self._future = self._executor.submit(self._drain)
            closed = self._closed
        if closed:
            self._drain()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._dirty:
                    self._future = None
                    return
                self._dirty = False
            try:
                self._write()
            except Exception:  # the next change tries again; a write never breaks a caller
                log.exception("background write failed")
            with self._lock:
                self.writes += 1

    def _pending(self) -> Future[None] | None:
        with self._lock:
            return self._future

    async def flush(self) -> None:
        """Wait, without blocking the event loop, until every change so far is written."""
        future = self._pending()
        if future is not None:
            await asyncio.wrap_future(future)

    def flush_now(self) -> None:
        """``flush`` for code outside an event loop."""
        future = self._pending()
        if future is not None:
            future.result()

    def close(self) -> None:
        """Write what changed, then stop the worker."""
        with self._lock:
            self._closed = True
        self.flush_now()
        self._executor.shutdown(wait=True)
