"""The shared parts of a running app, built lazily and once.

``Services`` is what the UI, the CLI and the tests are handed. Nothing heavy
happens at import or construction: a backend is created the first time it is
asked for, and the OpenAI SDK is imported only by the openai backend.
"""

from __future__ import annotations

import random
from functools import cached_property
from pathlib import Path

from app.backends.guard import Clock, GuardedBackend, RetryPolicy, Sleep
from app.backends.registry import BackendRegistry, default_registry, resolve_backend_name
from app.personality import PersonalityData, load_personalities
from app.services.generation import CastGenerator
from app.services.worlds import list_world_files
from config import DEFAULT_CONCURRENCY, DEFAULT_REQUESTS_PER_MINUTE, Settings


class Services:
    """Settings plus the lazily built backends and data every feature uses."""

    def __init__(
        self,
        settings: Settings,
        registry: BackendRegistry | None = None,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or default_registry()
        self._guard_options: dict[str, object] = {
            key: value for key, value in (("clock", clock), ("sleep", sleep), ("rng", rng)) if value
        }
        self._backends: dict[str, GuardedBackend] = {}

    @property
    def worlds_dir(self) -> Path:
        return self.settings.assets_dir / "worlds"

    def world_files(self) -> dict[str, Path]:
        return list_world_files(self.worlds_dir)

    @cached_property
    def personalities(self) -> PersonalityData:
        return load_personalities(self.settings.assets_dir / "personalities.json")

    def backend_names(self) -> list[str]:
        return self.registry.names()

    def resolve_backend_name(self, requested: str | None = None) -> str:
        return resolve_backend_name(self.settings, requested)

    def backend(self, requested: str | None = None) -> GuardedBackend:
        """The guarded backend for a name (or auto), created on first use."""
        name = self.resolve_backend_name(requested)
        guarded = self._backends.get(name)
        if guarded is None:
            backend = self.registry.create(name, self.settings)
            settings = self.settings
            guarded = GuardedBackend(
                backend,
                concurrency=settings.max_concurrency or DEFAULT_CONCURRENCY[backend.kind],
                requests_per_minute=settings.requests_per_minute
                or DEFAULT_REQUESTS_PER_MINUTE[backend.kind],
                retry=RetryPolicy(
                    settings.max_retries, settings.retry_base_delay, settings.retry_max_delay
                ),
                breaker_threshold=settings.circuit_failure_threshold,
                breaker_reset_seconds=settings.circuit_reset_seconds,
                **self._guard_options,  # type: ignore[arg-type]
            )
            self._backends[name] = guarded
        return guarded

    def cast_generator(self, requested: str | None = None) -> CastGenerator:
        return CastGenerator(self.backend(requested), self.personalities)

    async def aclose(self) -> None:
        for guarded in self._backends.values():
            await guarded.backend.aclose()
