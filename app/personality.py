"""Personality data: traits with their opposites, clash groups, and archetypes.

Two traits clash when one is the other's opposite or when a clash group in
personalities.json holds both (lazy and tireless are no listed opposites,
but no one is both).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from app.errors import InputError

Polarity = Literal["positive", "neutral", "negative"]


@dataclass(frozen=True, slots=True)
class Trait:
    name: str
    polarity: Polarity
    opposite: str | None
    description: str = ""


@dataclass(frozen=True, slots=True)
class Archetype:
    name: str
    traits: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class PersonalityData:
    """All traits and archetypes, parsed once."""

    traits: dict[str, Trait]
    archetypes: tuple[Archetype, ...]
    # trait -> every trait it clashes with (its opposite and its clash groups' members)
    clashes: dict[str, frozenset[str]] = field(default_factory=dict)

    def clashes_with(self, trait: str) -> frozenset[str]:
        return self.clashes.get(trait.lower(), frozenset())

    def opposite(self, trait: str) -> str | None:
        known = self.traits.get(trait.lower())
        return known.opposite if known else None

    def conflicts(self, chosen: Iterable[str]) -> list[tuple[str, str]]:
        """Pairs of chosen traits that contradict each other."""
        chosen_set = {trait.lower() for trait in chosen}
        pairs = set()
        for trait in chosen_set:
            for other in self.clashes_with(trait) & chosen_set:
                pairs.add(tuple(sorted((trait, other))))
        return sorted(pairs)  # type: ignore[arg-type]

    def check_compatible(self, chosen: Iterable[str]) -> None:
        """Raise InputError naming the first contradicting pair."""
        conflicts = self.conflicts(chosen)
        if conflicts:
            first, second = conflicts[0]
            raise InputError(
                f"The traits '{first}' and '{second}' contradict each other; keep one of them."
            )

    def names(self) -> list[str]:
        return sorted(self.traits)


def parse_personalities(raw: object, source: str) -> PersonalityData:
    """Build typed personality data; broken data names the file and the entry."""
    if not isinstance(raw, dict) or not isinstance(raw.get("traits"), list):
        raise ValueError(f"{source}: expected an object with a 'traits' list")
    traits: dict[str, Trait] = {}
    for entry in raw["traits"]:
        name = str(entry["name"]).strip().lower()
        opposite = entry.get("opposite")
        traits[name] = Trait(
            name=name,
            polarity=entry.get("polarity", "neutral"),
            opposite=str(opposite).strip().lower() if opposite else None,
            description=entry.get("description", ""),
        )
    for trait in traits.values():
        if trait.opposite and traits.get(trait.opposite, trait).opposite not in (trait.name, None):
            raise ValueError(
                f"{source}: '{trait.name}' and '{trait.opposite}' are not mutual opposites"
            )
    archetypes = tuple(
        Archetype(
            name=entry["name"],
            traits=tuple(str(t).lower() for t in entry.get("traits", ())),
            description=entry.get("description", ""),
        )
        for entry in raw.get("archetypes", ())
    )
    clashes: dict[str, set[str]] = {name: set() for name in traits}
    for trait in traits.values():
        if trait.opposite:
            clashes[trait.name].add(trait.opposite)
            clashes.setdefault(trait.opposite, set()).add(trait.name)
    for group in raw.get("clash_groups", ()):
        members = {str(t).strip().lower() for t in group}
        unknown = sorted(members - set(traits))
        if unknown:
            raise ValueError(f"{source}: clash group names unknown traits {unknown}")
        for member in members:
            clashes[member] |= members - {member}
    return PersonalityData(
        traits=traits,
        archetypes=archetypes,
        clashes={name: frozenset(found) for name, found in clashes.items()},
    )
