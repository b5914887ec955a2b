"""Turn what a designer asked for into one spec per NPC, validated.

Everything a form or a command line can get wrong is caught here, with a
message that says what to change; nothing here calls a backend.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from app.errors import InputError
from app.models import NPCSpec, World
from app.personality import PersonalityData
from app.services.text import checked_text

MAX_NAME_CHARS = 120
MAX_TRAITS = 8
MAX_TRAIT_CHARS = 40
# Prompts list at most this many names to avoid; more costs tokens for little.
MAX_AVOID_NAMES = 150
# Seeds travel through JSON, Chroma metadata and SQLite: keep them in int64.
MAX_SEED = 2**63 - 1


@dataclass(frozen=True, slots=True)
class NamedNPC:
    """A name the designer gave, with traits for that NPC only."""

    name: str
    traits: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CastRequest:
    """What the designer asked for; ``plan_cast`` validates it."""

    world: World
    count: int
    temperature: float
    named: tuple[NamedNPC, ...] = ()
    traits: tuple[str, ...] = ()
    seed: int | None = None
    # Names already used in this world (the library): the generator avoids them.
    avoid: tuple[str, ...] = ()


def new_cast_seed() -> int:
    return random.SystemRandom().randrange(2**31)


def parse_name_lines(text: str) -> tuple[NamedNPC, ...]:
    """``Name`` or ``Name: trait, trait`` per line; blank lines are skipped."""
    entries = []
    for line in checked_text(text, "The names").splitlines():
        name, _, traits = line.partition(":")
        name = " ".join(name.split())
        if not name:
            continue
        entries.append(
            NamedNPC(name, tuple(t.strip().lower() for t in traits.split(",") if t.strip()))
        )
    return tuple(entries)


def parse_whole_number(value: object, what: str) -> int | None:
    """A whole number from a form field or flag; empty means "not given"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise InputError(f"{what} must be a whole number; got {value!r}.")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text)  # exact: a float would turn 99999999999999999999 into 1e20
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"{what} must be a whole number; got {str(value)[:40]!r}.") from None
    if not math.isfinite(number):
        raise InputError(f"{what} must be a whole number; got {text[:40]!r}.")
    if not number.is_integer():
        raise InputError(f"{what} must be a whole number; got {number:g}.")
    return int(number)


def _check_traits(traits: Sequence[str], personalities: PersonalityData, who: str) -> None:
    if len(traits) > MAX_TRAITS:
        raise InputError(f"{who} has {len(traits)} traits; the limit is {MAX_TRAITS}.")
    too_long = next((trait for trait in traits if len(trait) > MAX_TRAIT_CHARS), None)
    if too_long is not None:
        raise InputError(
            f"{who}: the trait {too_long[:30]!r}... is longer than {MAX_TRAIT_CHARS} characters; "
            "a trait is one or two words."
        )
    conflicts = personalities.conflicts(traits)
    if conflicts:
        first, second = conflicts[0]
        raise InputError(
            f"{who}: '{first}' and '{second}' contradict each other; keep one of them."
        )


def plan_cast(
    request: CastRequest, personalities: PersonalityData, *, max_npcs: int
) -> list[NPCSpec]:
    """Validate the request and turn it into one spec per position."""
    if not 1 <= request.count <= max_npcs:
        raise InputError(
            f"The number of NPCs must be between 1 and {max_npcs}; got {request.count}."
        )
    if len(request.named) > request.count:
        raise InputError(
            f"You gave {len(request.named)} names for {request.count} NPCs; "
            f"raise the number to {len(request.named)} or remove names."
        )
    if not 0.0 <= request.temperature <= 2.0:
        raise InputError(
            f"Creativity (temperature) must be between 0 and 2; got {request.temperature}."
        )
    if request.seed is not None and not 0 <= request.seed <= MAX_SEED:
        raise InputError(
            f"The seed must be between 0 and {MAX_SEED}; got {request.seed}. "
            "Leave it empty for a random cast."
        )
    for named in request.named:
        checked_text(named.name, "A name")
        if not any(ch.isalpha() for ch in named.name):
            raise InputError(
                f"The name {named.name[:40]!r} has no letters; give each NPC a name to be "
                "called by (one per line)."
            )
    too_long = next((n.name for n in request.named if len(n.name) > MAX_NAME_CHARS), None)
    if too_long is not None:
        raise InputError(
            f"The name {too_long[:40]!r}... is longer than {MAX_NAME_CHARS} characters."
        )
    base_traits = tuple(
        dict.fromkeys(
            checked_text(t, "A trait").strip().lower() for t in request.traits if t.strip()
        )
    )
    _check_traits(base_traits, personalities, "The chosen traits")

    cast_seed = request.seed if request.seed is not None else new_cast_seed()
    key = request.world.key()
    names = [named.name for named in request.named]
    avoid = tuple(dict.fromkeys((*names, *request.avoid)))[:MAX_AVOID_NAMES]
    specs = []
    for index in range(request.count):
        name: str | None = None
        traits, slot = base_traits, index - len(request.named)
        if index < len(request.named):
            named = request.named[index]
            name, slot = named.name, -1
            traits = tuple(dict.fromkeys(base_traits + named.traits))
            _check_traits(traits, personalities, named.name)
        specs.append(
            NPCSpec(
                world=request.world,
                world_key=key,
                name=name,
                traits=traits,
                slot=slot,
                cast_seed=cast_seed,
                temperature=request.temperature,
                avoid_names=avoid,
            )
        )
    return specs
