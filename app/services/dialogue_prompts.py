"""The backend call behind dialogue lines: one NPC, several situations, one reply.

``lines_request`` builds the structured request (the messages an LLM reads,
the inputs the procedural backend reads, a strict schema returning a list);
``parse_lines`` turns a reply into cleaned lines per situation id. A line that
is empty, too long or a repeat of another line for the same situation is left
out, so the caller asks again for just that one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.backends.base import JSONReply, JSONRequest, Message
from app.models import DIALOGUE_TASK, NPC, World

# Bump when the prompt or the reply's meaning changes: it is part of every line's key.
DIALOGUE_PROMPT_VERSION = 1
# What a line may be: a bark is short; a model that writes a page is not barking.
MAX_LINE_CHARS = 400
# The NPC fields a line is written from: they (and only they) are in its cache key,
# so editing one of them gives the NPC new lines and editing its appearance does not.
VOICE_FIELDS: tuple[str, ...] = (
    "name",
    "age",
    "gender",
    "occupation",
    "personality_traits",
    "speech_style",
    "sample_lines",
    "motivation",
)
_QUOTES = "\"'“”‘’«»"
_WORD = re.compile(r"[^\W\d_]{2,}")  # a line says something: at least one word

LINES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "variants": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["id", "variants"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["lines"],
    "additionalProperties": False,
}

SYSTEM_PROMPT = (
    "You write the spoken lines of non-player characters in a video game. A line is "
    "what the character says aloud in the situation: one to three short sentences, in "
    "their own voice (speech style, personality, occupation, era). No narration, no "
    "stage directions, no quotation marks, no speaker name, nothing anachronistic. "
    "Variants of one situation must differ in idea and wording, not by a word or two."
)


def voice(npc: NPC, world: World) -> dict[str, Any]:
    """What a line is written from: the NPC's voice fields and its world."""
    fields: dict[str, Any] = {name: getattr(npc, name) for name in VOICE_FIELDS}
    # The whole world (its detail names the places and factions lines may mention).
    fields["world"] = world.model_dump(include={"name", "era", "time_period", "detail"})
    return fields


@dataclass(slots=True)
class Ask:
    """One situation in a call: which variants to write and which lines to avoid."""

    id: str
    situation: str
    variants: list[int]
    avoid: list[str] = field(default_factory=list)

    def as_input(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "situation": self.situation,
            "variants": list(self.variants),
            "avoid": list(self.avoid),
        }


def _seed(voice_fields: Mapping[str, Any], take: int) -> int:
    digest = hashlib.blake2b(
        f"{sorted(voice_fields.items())!r}|{take}".encode(), digest_size=4
    ).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _user_prompt(voice_fields: Mapping[str, Any], asks: Sequence[Ask]) -> str:
    world = voice_fields["world"]
    said = " / ".join(voice_fields["sample_lines"])
    lines = [
        f"Character: {voice_fields['name']}, {voice_fields['age']}, {voice_fields['gender']}, "
        f"{voice_fields['occupation']}.",
        f"Personality: {', '.join(voice_fields['personality_traits'])}.",
        f"Speech style: {voice_fields['speech_style']}",
        f"Wants: {voice_fields['motivation']}",
        f"Has said things like: {said}",
        f"World: {world['name']}; {world['era']}, {world['time_period']}.",
        "",
        "Write this character's lines for each situation below. Reply with JSON "
        '{"lines": [{"id": ..., "variants": [...]}]}: one entry per id, with exactly as '
        "many variants as it asks for, each different from the others and from the lines "
        "it says to avoid.",
    ]
    for ask in asks:
        count = len(ask.variants)
        entry = f'- id "{ask.id}": {ask.situation} ({count} variant{"s" if count > 1 else ""})'
        if ask.avoid:
            entry += ". Already written, do not repeat: " + " | ".join(ask.avoid)
        lines.append(entry)
    return "\n".join(lines)


def lines_request(
    voice_fields: Mapping[str, Any], asks: Sequence[Ask], *, temperature: float, take: int = 0
) -> JSONRequest:
    """One structured call for every situation in ``asks``."""
    messages: list[Message] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": _user_prompt(voice_fields, asks)},
    ]
    return JSONRequest(
        task=DIALOGUE_TASK,
        messages=messages,
        schema=LINES_SCHEMA,
        inputs={
            "npc": dict(voice_fields),
            "situations": [ask.as_input() for ask in asks],
            "take": take,
        },
        temperature=temperature,
        seed=_seed(voice_fields, take),
        # About 60 tokens a line, and room for the JSON around them.
        max_tokens=200 + 60 * sum(len(ask.variants) for ask in asks),
    )


def clean_line(text: str, speaker: str) -> str:
    """One line as a game shows it: one paragraph, no wrapping quotes or name prefix."""
    text = " ".join(str(text).split())
    for prefix in (f"{speaker}:", f"{speaker.split()[0]}:" if speaker.split() else ""):
        if prefix and text.lower().startswith(prefix.lower()):
            text = text[len(prefix) :].strip()
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


def _entries(data: Any, asks: Sequence[Ask]) -> list[tuple[Ask, Any]]:
    """Each reply entry with the situation it answers: by id, else (a small model
    that garbles the ids) by position among the situations no entry named."""
    wanted = {ask.id: ask for ask in asks}
    entries = [entry for entry in data["lines"] if isinstance(entry, dict)]
    named = {str(entry.get("id")) for entry in entries} & set(wanted)
    unnamed = iter([ask for ask in asks if ask.id not in named])
    matched = []
    for entry in entries:
        ask = wanted.get(str(entry.get("id"))) or next(unnamed, None)
        if ask is not None:
            matched.append((ask, entry))
    return matched


def parse_lines(reply: JSONReply, speaker: str, asks: Sequence[Ask]) -> dict[str, list[str]]:
    """Usable lines per situation id, in variant order; raises ValueError when the
    reply is not the shape asked for or holds no usable line (that costs one repair
    call). A line is usable when it has words, fits MAX_LINE_CHARS and repeats
    neither another variant nor a line to avoid."""
    data = reply.data
    if not isinstance(data, dict) or not isinstance(data.get("lines"), list):
        raise ValueError('expected {"lines": [{"id": ..., "variants": [...]}]}')
    found: dict[str, list[str]] = {}
    for ask, entry in _entries(data, asks):
        seen = {line.casefold() for line in ask.avoid}
        kept = found.setdefault(ask.id, [])
        variants = entry.get("variants")
        for raw in variants if isinstance(variants, list) else ():
            line = clean_line(raw, speaker) if isinstance(raw, str) else ""
            usable = _WORD.search(line) and len(line) <= MAX_LINE_CHARS
            if usable and line.casefold() not in seen:
                seen.add(line.casefold())
                kept.append(line)
    if not any(found.values()):
        raise ValueError("the reply holds no usable line for any of the situations asked for")
    return found
