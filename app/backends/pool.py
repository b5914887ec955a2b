"""The guarded backends of one app, created by name on first use and closed together."""

from __future__ import annotations

import random
import threading

from app.backends.guard import Clock, GuardedBackend, Sleep
from app.backends.registry import BackendContext, BackendRegistry, resolve_backend_name
from app.metrics import Metrics
from config import Settings


class BackendPool:
    """One ``GuardedBackend`` per backend name, so every use case shares its limits."""

    def __init__(
        self,
        settings: Settings,
        registry: BackendRegistry,
        context: BackendContext,
        metrics: Metrics,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._context = context
        self._metrics = metrics
        self._options = {
            key: value for key, value in (("clock", clock), ("sleep", sleep), ("rng", rng)) if value
        }
        self._guards: dict[str, GuardedBackend] = {}
        self._lock = threading.Lock()  # the UI's threads and its event loop both ask

    def names(self) -> list[str]:
        """Every registered backend name (``auto`` is not one of them)."""
        return self._registry.names()

    def resolve(self, requested: str | None = None) -> str:
        """``auto`` (or nothing) turned into a registered name."""
        return resolve_backend_name(self._settings, requested)

    def get(self, requested: str | None = None) -> GuardedBackend:
        """The guarded backend for a name (or auto); raises ConfigError when it
        cannot work with these settings (an unknown name, a missing key)."""
        name = self.resolve(requested)
        with self._lock:
            guarded = self._guards.get(name)
            if guarded is None:
                backend = self._registry.create(name, self._settings, self._context)
                guarded = GuardedBackend.from_settings(
                    backend,
                    self._settings,
                    metrics=self._metrics,
                    **self._options,  # type: ignore[arg-type]
                )
                self._guards[name] = guarded
            return guarded

    def active(self) -> list[GuardedBackend]:
        """The backends used so far in this process."""
        with self._lock:
            return list(self._guards.values())

    async def aclose(self) -> None:
        """Close every backend's connections."""
        for guarded in self.active():
            await guarded.backend.aclose()
