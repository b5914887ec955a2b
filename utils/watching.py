"""Watch folders with watchfiles in a background thread; stop cleanly."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

OnChange = Callable[[set[Path]], None]


class FolderWatcher:
    """Calls ``on_change(paths)`` with the files that changed under ``folders``."""

    def __init__(
        self, folders: Iterable[Path], on_change: OnChange, *, debounce_ms: int = 300
    ) -> None:
        self.folders = [Path(folder) for folder in folders]
        self.on_change = on_change
        self.debounce_ms = debounce_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()

    def start(self) -> FolderWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="npc-forge-watcher", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        from watchfiles import watch  # imported here: only a running app watches

        folders = [folder for folder in self.folders if folder.is_dir()]
        if not folders:
            self.ready.set()
            return
        # watch() sets up the OS watch before its first yield; rust_timeout makes
        # it yield empty sets so we can signal readiness and notice stop().
        for changes in watch(
            *folders,
            stop_event=self._stop,
            debounce=self.debounce_ms,
            rust_timeout=200,
            yield_on_timeout=True,
            raise_interrupt=False,
        ):
            self.ready.set()
            if not changes:
                continue
            paths = {Path(path) for _, path in changes}
            try:
                self.on_change(paths)
            except Exception:  # a bad callback must not kill the watcher
                log.exception("error handling changes to %s", sorted(map(str, paths)))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> FolderWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
