"""Conversations out (Markdown, SillyTavern chat JSONL) and SillyTavern chats in.

SillyTavern's chat file is JSON Lines: a header line (``user_name``,
``character_name``, ``create_date``, ``chat_metadata``), then one line per
message (``name``, ``is_user``, ``is_system``, ``send_date``, ``mes``,
``extra``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from app.errors import InputError
from app.services.conversations import Conversation

PLAYER = "You"
MAX_IMPORT_LINES = 100_000


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")


def _md(text: str) -> str:
    text = text.replace("<", "&lt;")
    return "\\" + text if text.startswith("#") else text


def conversation_markdown(conversation: Conversation, npc_name: str) -> str:
    player = conversation.player or PLAYER
    lines = [
        f"# {_md(npc_name)} and {_md(player)}",
        "",
        f"*{_when(conversation.created_at)} · {len(conversation.messages)} messages*",
        "",
    ]
    for message in conversation.messages:
        who = player if message.role == "user" else npc_name
        lines += [f"**{_md(who)}:** {_md(message.content)}", ""]
    return "\n".join(lines)


def conversation_sillytavern(conversation: Conversation, npc_name: str) -> bytes:
    player = conversation.player or PLAYER
    header = {
        "user_name": player,
        "character_name": npc_name,
        "create_date": _when(conversation.created_at),
        "chat_metadata": {"npc_forge": {"npc_id": conversation.npc_id, "id": conversation.id}},
    }
    rows: list[dict[str, Any]] = [header]
    rows += [
        {
            "name": player if message.role == "user" else npc_name,
            "is_user": message.role == "user",
            "is_system": False,
            "send_date": _when(message.created_at),
            "mes": message.content,
            "extra": {},
        }
        for message in conversation.messages
    ]
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


@dataclass(frozen=True, slots=True)
class ImportedLine:
    """One message of an imported chat, as a memory to keep."""

    text: str
    speaker: str
    is_user: bool
    created_at: str | None
    line: int


def read_sillytavern(data: bytes, source: str) -> tuple[list[ImportedLine], list[str]]:
    """The messages of a SillyTavern chat file, and the problems by line number."""
    lines = data.splitlines()
    if len(lines) > MAX_IMPORT_LINES:
        raise InputError(f"{source} has {len(lines):,} lines; the limit is {MAX_IMPORT_LINES:,}.")
    found, problems = [], []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            problems.append(f"{source} line {number}: not JSON ({exc}).")
            continue
        if not isinstance(row, dict):
            problems.append(f"{source} line {number}: expected an object.")
            continue
        if "mes" not in row:
            if number == 1:
                continue  # the header line
            problems.append(f"{source} line {number}: no 'mes' (message text).")
            continue
        text = str(row.get("mes") or "").strip()
        if not text or row.get("is_system"):
            continue
        found.append(
            ImportedLine(
                text=text,
                speaker=str(row.get("name") or ("player" if row.get("is_user") else "npc")),
                is_user=bool(row.get("is_user")),
                created_at=str(row["send_date"]) if row.get("send_date") else None,
                line=number,
            )
        )
    if not found and not problems:
        problems.append(f"{source}: no messages found; is it a SillyTavern chat (.jsonl)?")
    return found, problems


def _iso(value: str | None) -> str | None:
    """``value`` when it is an ISO-8601 time; SillyTavern also writes "June 5, 2024 10:15pm"."""
    if not value:
        return None
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value


def as_memory_lines(messages: Iterable[ImportedLine], now: float) -> list[dict[str, Any]]:
    """Imported messages in the memory import format (``memory import``). A message
    without a readable time gets ``now``; its own date text is kept as metadata."""
    rows = []
    for message in messages:
        row: dict[str, Any] = {
            "text": message.text,
            "kind": "imported",
            "speaker": message.speaker,
            "created_at": _iso(message.created_at) or _when(now),
            "source_line": message.line,
        }
        if message.created_at and not _iso(message.created_at):
            row["send_date"] = message.created_at
        rows.append(row)
    return rows
