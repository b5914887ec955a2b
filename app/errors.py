"""One exception tree for NPC Forge.

Every message says what went wrong and what to do about it; the UI shows it
as a warning, the CLI prints it on one line and exits non-zero.

    NPCForgeError
    ├── InputError                  bad user input (exit code 2)
    │   └── WorldFileError          a world file that cannot be used
    ├── ConfigError                 bad settings
    │   └── UnknownBackendError     also a KeyError; lists the known names
    ├── BackendError                a backend call failed (.backend, .retryable)
    │   ├── BackendUnavailableError connection refused, timeout (retryable)
    │   ├── RateLimitedError        HTTP 429 (retryable, honours .retry_after)
    │   ├── BackendResponseError    another HTTP error (5xx retryable, 4xx not)
    │   ├── BackendCapabilityError  the backend cannot do this operation
    │   └── CircuitOpenError        too many failures in a row: failing fast
    └── GenerationError             output still invalid after the repair call

Third-party exceptions (openai, httpx, pydantic) are wrapped at the boundary,
where known secrets (the configured API key) are redacted; a BackendError
also masks anything that looks like a key (``sk-...``, ``Bearer ...``,
``api_key=...``) itself, so its message is safe to show, log and export.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.logs import redact


class NPCForgeError(Exception):
    """Base of every error NPC Forge raises on purpose."""

    exit_code = 1


class InputError(NPCForgeError, ValueError):
    """The user's input cannot be used; the message says how to fix it."""

    exit_code = 2


class WorldFileError(InputError):
    """A world file is missing, not JSON, or not in the world format."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"World file {source}: {problem}")
        self.source = source
        self.problem = problem


class ConfigError(NPCForgeError):
    """Settings that cannot work together."""

    exit_code = 2


class UnknownBackendError(ConfigError, KeyError):
    """No backend is registered under that name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"Unknown backend {name!r}. Known backends: {', '.join(self.known)} "
            "(or 'auto'). Set NPC_FORGE_BACKEND or pass --backend."
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class BackendError(NPCForgeError):
    """A call to an LLM backend failed."""

    retryable = False

    def __init__(self, backend: str, message: str, *, retry_after: float | None = None) -> None:
        # Server error text can echo request headers; mask key-like strings here too.
        super().__init__(redact(f"{backend}: {message}"))
        self.backend = backend
        self.retry_after = retry_after


class BackendUnavailableError(BackendError):
    """The backend could not be reached or did not answer in time."""

    retryable = True


class RateLimitedError(BackendError):
    """The backend said to slow down (HTTP 429)."""

    retryable = True


class BackendResponseError(BackendError):
    """The backend answered with an HTTP error."""

    def __init__(
        self, backend: str, message: str, *, status: int, retry_after: float | None = None
    ) -> None:
        super().__init__(backend, message, retry_after=retry_after)
        self.status = status
        self.retryable = status >= 500 or status in (408, 409)


class BackendCapabilityError(BackendError):
    """The backend does not support the requested operation."""


class CircuitOpenError(BackendError):
    """Recent calls failed in a row, so calls fail fast for a while."""


class GenerationError(NPCForgeError):
    """The backend's output could not be turned into a valid result."""
