"""Relationships among a world's cast: merging new ties in, and reading an edited table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.errors import InputError
from app.models import NPC, RELATIONSHIP_TYPES, Relationship

TIE_COLUMNS = ("from", "to", "type", "weight", "secret", "description")
TRUE_WORDS = ("true", "1", "yes", "y")
FALSE_WORDS = ("false", "0", "no", "n", "")
MAX_DESCRIPTION_CHARS = 400


def merge_ties(cast: Sequence[NPC], ties: Mapping[str, Sequence[Relationship]]) -> list[NPC]:
    """The cast with its ties among itself replaced by ``ties`` (source id -> ties);
    ties to NPCs outside the cast are kept."""
    cast_ids = {npc.id for npc in cast}
    return [
        npc.model_copy(
            update={
                "relationships": [r for r in npc.relationships if r.target_id not in cast_ids]
                + list(ties.get(npc.id, ()))
            }
        )
        for npc in cast
    ]


def tie_rows(cast: Sequence[NPC]) -> list[list[Any]]:
    """The cast's ties as table rows, in TIE_COLUMNS order."""
    return [
        [npc.name, tie.target_name, tie.type, tie.weight, tie.secret, tie.description]
        for npc in cast
        for tie in npc.relationships
    ]


def _cell(row: Sequence[Any], index: int) -> str:
    value = row[index] if index < len(row) else ""
    return "" if value is None else str(value).strip()


def _weight(text: str, where: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = float("nan")
    if not -1.0 <= weight <= 1.0:  # also refuses NaN
        raise InputError(
            f"{where}, weight: use a number from -1 (hostile) to 1 (devoted); got {text[:20]!r}."
        )
    return weight


def _secret(text: str, where: str) -> bool:
    lowered = text.lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise InputError(f"{where}, secret: use true or false; got {text[:20]!r}.")


def parse_tie_rows(
    rows: Sequence[Sequence[Any]], cast: Sequence[NPC]
) -> dict[str, list[Relationship]]:
    """An edited table back into ties (source id -> ties); every problem names the
    row, the column and what is allowed."""
    by_name = {npc.name.lower(): npc for npc in cast}
    names = ", ".join(npc.name for npc in cast)
    ties: dict[str, list[Relationship]] = {npc.id: [] for npc in cast}
    for line, row in enumerate(rows, 1):
        if not row or not _cell(row, 0):
            continue  # an empty row the table editor left behind
        where = f"Row {line}"
        ends = []
        for column, index in (("from", 0), ("to", 1)):
            npc = by_name.get(_cell(row, index).lower())
            if npc is None:
                raise InputError(
                    f"{where}, {column}: {_cell(row, index)[:60]!r} is not an NPC of this world; "
                    f"use one of: {names}."
                )
            ends.append(npc)
        source, target = ends
        if source.id == target.id:
            raise InputError(f"{where}: an NPC cannot have a relationship with themselves.")
        kind = _cell(row, 2).lower()
        if kind not in RELATIONSHIP_TYPES:
            raise InputError(
                f"{where}, type: {kind[:30]!r} is not a relationship type; "
                f"use one of: {', '.join(RELATIONSHIP_TYPES)}."
            )
        description = _cell(row, 5)
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise InputError(
                f"{where}, description: {len(description)} characters; "
                f"keep it under {MAX_DESCRIPTION_CHARS}."
            )
        ties[source.id].append(
            Relationship(
                target_id=target.id,
                target_name=target.name,
                type=kind,
                weight=_weight(_cell(row, 3), where),
                secret=_secret(_cell(row, 4), where),
                description=description,
            )
        )
    return ties
