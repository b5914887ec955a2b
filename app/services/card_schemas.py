"""JSON Schemas of Character Card V2 and V3, written from the spec texts.

V2: malfoyslastname/character-card-spec-v2 ``spec_v2.md`` (the ``TavernCardV2``
and ``CharacterBook`` types); V3: kwaroran/character-card-spec-v3 ``SPEC_V3.md``
(``CharacterCardV3`` and ``Lorebook``). Every field the types mark without ``?``
is required, with the type they give; unknown keys are allowed (both specs
ask readers to keep them). Where the texts disagree with each other, the
schema accepts both readings and says so.

``card_problems`` lists what a card breaks (empty = valid); exports run it
on every card they write, and tests run it on every format.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

SPEC_V2 = "chara_card_v2"
SPEC_V3 = "chara_card_v3"

_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}
_OBJECT = {"type": "object"}
_NUMBER = {"type": "number"}
_BOOLEAN = {"type": "boolean"}

V2_DATA_FIELDS: dict[str, Any] = {
    "name": _STRING,
    "description": _STRING,
    "personality": _STRING,
    "scenario": _STRING,
    "first_mes": _STRING,
    "mes_example": _STRING,
    "creator_notes": _STRING,
    "system_prompt": _STRING,
    "post_history_instructions": _STRING,
    "alternate_greetings": _STRINGS,
    "tags": _STRINGS,
    "creator": _STRING,
    "character_version": _STRING,
    "extensions": _OBJECT,
}
V3_DATA_FIELDS: dict[str, Any] = {**V2_DATA_FIELDS, "group_only_greetings": _STRINGS}
V3_OPTIONAL_FIELDS: dict[str, Any] = {
    "assets": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["type", "uri", "name", "ext"],
            "properties": {"type": _STRING, "uri": _STRING, "name": _STRING, "ext": _STRING},
        },
    },
    "nickname": _STRING,
    "creator_notes_multilingual": {"type": "object", "additionalProperties": _STRING},
    "source": _STRINGS,
    "creation_date": _NUMBER,
    "modification_date": _NUMBER,
}


def _lorebook(version: int) -> dict[str, Any]:
    entry_required = ["keys", "content", "extensions", "enabled", "insertion_order"]
    entry_fields: dict[str, Any] = {
        "keys": _STRINGS,
        "content": _STRING,
        "extensions": _OBJECT,
        "enabled": _BOOLEAN,
        "insertion_order": _NUMBER,
        "case_sensitive": _BOOLEAN,
        "name": _STRING,
        "priority": _NUMBER,
        # V2 types the id as a number, V3's text as a string; tools write both.
        "id": {"type": ["number", "string"]} if version == 3 else _NUMBER,
        "comment": _STRING,
        "selective": _BOOLEAN,
        "secondary_keys": _STRINGS,
        "constant": _BOOLEAN,
        "position": {"enum": ["before_char", "after_char"]},
    }
    if version == 3:
        entry_required.append("use_regex")
        entry_fields["use_regex"] = _BOOLEAN
    return {
        "type": "object",
        "required": ["extensions", "entries"],
        "properties": {
            "name": _STRING,
            "description": _STRING,
            "scan_depth": _NUMBER,
            "token_budget": _NUMBER,
            "recursive_scanning": _BOOLEAN,
            "extensions": _OBJECT,
            "entries": {
                "type": "array",
                "items": {"type": "object", "required": entry_required, "properties": entry_fields},
            },
        },
    }


@cache
def card_schema(spec: str) -> dict[str, Any]:
    """The schema of a whole card (built once; treat it as read-only)."""
    if spec == SPEC_V2:
        version, fields, optional = 2, V2_DATA_FIELDS, {}
        spec_version: dict[str, Any] = {"const": "2.0"}
    elif spec == SPEC_V3:
        version, fields, optional = 3, V3_DATA_FIELDS, V3_OPTIONAL_FIELDS
        spec_version = {"const": "3.0"}
    else:
        raise KeyError(f"no schema for {spec!r}; known: {SPEC_V2}, {SPEC_V3}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Character Card V{version}",
        "type": "object",
        "required": ["spec", "spec_version", "data"],
        "properties": {
            "spec": {"const": spec},
            "spec_version": spec_version,
            "data": {
                "type": "object",
                "required": list(fields),
                "properties": {
                    **fields,
                    **optional,
                    "character_book": _lorebook(version),
                },
            },
        },
    }


@cache
def _validator(spec: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(card_schema(spec))


def card_errors(card: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """What the card breaks of its spec: (path to the value, message) pairs."""
    spec = card.get("spec")
    if spec not in (SPEC_V2, SPEC_V3):
        return [(("spec",), f"{spec!r} is neither {SPEC_V2!r} nor {SPEC_V3!r}")]
    return [(tuple(e.absolute_path), e.message) for e in _validator(spec).iter_errors(card)]


def card_problems(card: Mapping[str, Any]) -> list[str]:
    """What the card breaks of its spec, as ``data.character_book.extensions: ...``
    lines (empty when valid)."""
    return sorted(
        f"{'.'.join(map(str, path)) or '(card)'}: {message}" for path, message in card_errors(card)
    )
