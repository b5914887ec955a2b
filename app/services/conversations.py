"""Conversations with NPCs, kept as one JSON file each under the data directory.

``<data>/chats/<npc id>/<conversation id>.json``, written atomically, so a
conversation survives restarts and two app instances on one data directory
read whole files only.

Each conversation records its owner, the signed-in user who started it (None
= the team's: without sign-in, or from before owners existed). Reads take
``owners``, whose conversations the caller may open ("" = the team's; None =
everyone's); anyone else's is "not found", as if it did not exist.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from app.errors import InputError
from utils.jsonio import atomic_write_bytes, read_json_bytes

Role = Literal["user", "assistant"]
SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


class ChatMessage(BaseModel):
    id: str
    role: Role
    content: str
    created_at: float
    player: str | None = None


class Conversation(BaseModel):
    id: str
    npc_id: str
    player: str | None = None
    owner: str | None = None  # the signed-in user who started it; None = the team's
    created_at: float
    updated_at: float
    messages: list[ChatMessage] = Field(default_factory=list)

    def message(self, message_id: str) -> ChatMessage:
        for message in self.messages:
            if message.id == message_id:
                return message
        raise InputError(f"No message {message_id!r} in this conversation; pick one from the list.")

    def seen_by(self, owners: Sequence[str] | None) -> bool:
        """Whether a caller who sees ``owners``' conversations sees this one."""
        return owners is None or (self.owner or "") in owners

    @property
    def title(self) -> str:
        first = next((m.content for m in self.messages if m.role == "user"), "")
        return (first[:60] + "…") if len(first) > 60 else first or "(no messages yet)"


def _checked_id(value: str, what: str) -> str:
    if not SAFE_ID.match(value):
        raise InputError(f"{what} {value[:40]!r} is not a valid id; pick one from the list.")
    return value


class ConversationStore:
    """Read and write conversations (blocking file I/O: call it in a thread)."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._clock = clock

    def _path(self, npc_id: str, conversation_id: str) -> Path:
        npc = _checked_id(npc_id, "The NPC id")
        conversation = _checked_id(conversation_id, "The conversation id")
        return self.directory / npc / f"{conversation}.json"

    def new(self, npc_id: str, player: str | None, owner: str | None = None) -> Conversation:
        now = self._clock()
        _checked_id(npc_id, "The NPC id")
        return Conversation(
            id=f"chat-{uuid.uuid4().hex[:12]}",
            npc_id=npc_id,
            player=player,
            owner=owner or None,
            created_at=now,
            updated_at=now,
        )

    def message(self, role: Role, content: str, player: str | None = None) -> ChatMessage:
        return ChatMessage(
            id=f"m-{uuid.uuid4().hex[:10]}",
            role=role,
            content=content,
            created_at=self._clock(),
            player=player,
        )

    def load(
        self, npc_id: str, conversation_id: str, owners: Sequence[str] | None = None
    ) -> Conversation:
        path = self._path(npc_id, conversation_id)
        missing = InputError(f"No conversation {conversation_id!r} with this NPC; start a new one.")
        try:
            found = Conversation.model_validate(read_json_bytes(path.read_bytes()))
        except FileNotFoundError:
            raise missing from None
        except (ValueError, ValidationError) as exc:  # a damaged file: say which
            raise InputError(f"The conversation file {path.name} is damaged ({exc}).") from None
        if not found.seen_by(owners):  # someone else's: as if it did not exist
            raise missing
        return found

    def save(self, conversation: Conversation) -> None:
        conversation.updated_at = self._clock()
        path = self._path(conversation.npc_id, conversation.id)
        atomic_write_bytes(path, conversation.model_dump_json().encode())

    def list(self, npc_id: str, owners: Sequence[str] | None = None) -> list[Conversation]:
        """The NPC's conversations that ``owners`` see, newest first (damaged files
        are skipped)."""
        folder = self.directory / _checked_id(npc_id, "The NPC id")
        found = []
        for path in folder.glob("*.json") if folder.is_dir() else ():
            try:
                conversation = Conversation.model_validate(read_json_bytes(path.read_bytes()))
            except (OSError, ValueError, ValidationError):
                continue
            if conversation.seen_by(owners):
                found.append(conversation)
        return sorted(found, key=lambda c: c.updated_at, reverse=True)

    def delete_all(self, npc_id: str) -> int:
        removed = 0
        for conversation in self.list(npc_id):
            self._path(npc_id, conversation.id).unlink(missing_ok=True)
            removed += 1
        return removed
