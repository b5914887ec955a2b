"""Backends by name.

Built-ins are named in one tuple as import paths, so choosing ``procedural``
never imports the OpenAI SDK. Plugins (and tests) add more with ``register``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from app.backends.base import Backend
from app.errors import UnknownBackendError
from config import Settings

if TYPE_CHECKING:
    from app.assets import Assets


@dataclass(frozen=True, slots=True)
class BackendContext:
    """What the composition root shares with backends beyond settings."""

    assets: Assets


BackendFactory = Callable[[Settings, BackendContext], Backend]

BUILTIN_BACKENDS: tuple[tuple[str, str], ...] = (
    ("procedural", "app.backends.procedural:ProceduralBackend"),
    ("openai", "app.backends.openai_compat:OpenAIBackend"),
    # Extra [local]; "auto" never picks it.
    ("local", "app.backends.local:LocalBackend"),
)


def _lazy_factory(target: str) -> BackendFactory:
    module_name, _, attribute = target.partition(":")

    def factory(settings: Settings, context: BackendContext) -> Backend:
        backend_class = getattr(importlib.import_module(module_name), attribute)
        backend: Backend = backend_class(settings, context)
        return backend

    return factory


class BackendRegistry:
    """Name -> factory. Unknown names raise an error listing the known ones."""

    def __init__(self) -> None:
        self._factories: dict[str, BackendFactory] = {}

    def register(self, name: str, factory: BackendFactory, *, replace: bool = False) -> None:
        if name in self._factories and not replace:
            raise ValueError(f"a backend named {name!r} is already registered")
        if name == "auto":
            raise ValueError("'auto' is reserved: it picks a backend from the settings")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str, settings: Settings, context: BackendContext) -> Backend:
        try:
            factory = self._factories[name]
        except KeyError:
            raise UnknownBackendError(name, self._factories) from None
        return factory(settings, context)


@cache
def default_registry() -> BackendRegistry:
    """The registry with the built-in backends, built once."""
    registry = BackendRegistry()
    for name, target in BUILTIN_BACKENDS:
        registry.register(name, _lazy_factory(target))
    return registry


def resolve_backend_name(settings: Settings, requested: str | None = None) -> str:
    """Turn ``auto`` (or nothing) into a concrete name.

    auto = the configured backend (NPC_FORGE_BACKEND) when that names one;
    otherwise openai when an API key or a base URL is configured, else procedural.
    """
    name = (requested or "auto").strip().lower()
    if name == "auto":  # the configured backend, unless that is auto too
        name = (settings.backend or "auto").strip().lower()
    if name != "auto":
        return name
    if settings.openai_api_key is not None or settings.openai_base_url:
        return "openai"
    return "procedural"
