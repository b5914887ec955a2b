"""The one contract every backend implements.

A backend turns a ``JSONRequest`` into a ``JSONReply`` (and, when it can
stream, chat messages into text deltas). It does not validate: the services
validate with pydantic and decide whether a repair call is worth it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypedDict

from app.errors import BackendCapabilityError
from config import BackendKind, setting_default


class Message(TypedDict):
    """One chat message in the OpenAI shape."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class JSONRequest:
    """Ask for one JSON object.

    ``messages`` are what an LLM reads; ``inputs`` are the structured values
    the messages were built from, which the procedural backend reads instead.
    """

    task: str
    messages: Sequence[Message]
    schema: Mapping[str, Any]
    inputs: Mapping[str, Any]
    temperature: float = setting_default("default_temperature")
    seed: int = 0
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Ask for a chat reply, streamed as text.

    As with ``JSONRequest``, ``messages`` are what an LLM reads and ``inputs``
    the structured values they were built from (the NPC, its memories, the
    player's message), which the procedural backend reads instead.
    """

    messages: Sequence[Message]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    temperature: float = setting_default("default_temperature")
    seed: int | None = None
    max_tokens: int | None = None  # None = the backend's configured chat limit


@dataclass(slots=True)
class JSONReply:
    """What came back: the parsed object, or the raw text and why it did not parse."""

    raw: str
    data: Any = None
    parse_error: str | None = None
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.parse_error is None


class Backend(ABC):
    """An LLM (or the procedural generator) behind one small interface."""

    kind: ClassVar[BackendKind] = "remote"
    supports_schema: ClassVar[bool] = False
    can_stream: ClassVar[bool] = False
    # Whether responses are worth caching (False when recomputing is cheaper).
    cache_responses: ClassVar[bool] = True

    @property
    @abstractmethod
    def name(self) -> str:
        """Identity used in cache keys and results, e.g. ``openai:gpt-4o-mini``."""

    @property
    def cache_identity(self) -> str:
        """What must match for two responses to be interchangeable (cache keys)."""
        return self.name

    @abstractmethod
    async def complete_json(self, request: JSONRequest) -> JSONReply:
        """Return one JSON object for the request; raise BackendError on failure."""

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[str]:
        """Yield the reply to a chat as text deltas."""
        raise BackendCapabilityError(self.name, "this backend cannot stream chat replies")
        yield ""  # pragma: no cover - makes this an async generator

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections; the default holds none."""
