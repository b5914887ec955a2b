"""Names for the procedural generator: a cast's names drawn once, and genders.

Every unnamed NPC of a cast gets a name no other NPC of that cast has (and
none the library already holds for the world), drawn from one RNG for the
whole cast so that slot k gets the same name in whatever order the NPCs
are drafted.
"""

from __future__ import annotations

import random

from app.backends.procedural_tables import Culture, Tables

GENDERS: tuple[str, ...] = ("male", "female", "non-binary")
GENDER_WEIGHTS: tuple[float, ...] = (0.47, 0.47, 0.06)


def pick_gender(rng: random.Random) -> str:
    """A gender in the proportions the generator uses."""
    return rng.choices(GENDERS, GENDER_WEIGHTS)[0]


def given_pool(culture: Culture, gender: str) -> tuple[str, ...]:
    """The culture's given names for a gender (neutral ones for non-binary NPCs)."""
    key = {"male": "male", "female": "female"}.get(gender, "neutral")
    return culture.given[key] or culture.given["neutral"] or culture.given["male"]


def full_name(culture: Culture, given: str, gender: str, rng: random.Random) -> str:
    family = ""
    if culture.family:
        index = rng.randrange(len(culture.family))
        feminine = gender == "female" and len(culture.family_female) == len(culture.family)
        family = (culture.family_female if feminine else culture.family)[index]
    epithet = rng.choice(culture.epithets) if culture.epithets else ""
    return " ".join(culture.format.format(given=given, family=family, epithet=epithet).split())


def cast_names(
    tables: Tables, cultures: tuple[str, ...], cast_key: str, avoid: tuple[str, ...], count: int
) -> tuple[tuple[str, str, str], ...]:
    """``count`` distinct (full name, given name, gender) for the unnamed NPCs of a cast.

    Drawn from one RNG for the whole cast, so slot k gets the same name no
    matter in which order the NPCs are generated; remembered with the tables.
    """
    key = (cultures, cast_key, avoid, count)
    built: tuple[tuple[str, str, str], ...] = tables.names_memo.get(
        key, lambda: _draw_cast_names(tables, cultures, cast_key, avoid, count)
    )
    return built


def _draw_cast_names(
    tables: Tables, culture_ids: tuple[str, ...], cast_key: str, avoid: tuple[str, ...], count: int
) -> tuple[tuple[str, str, str], ...]:
    rng = random.Random(f"names|{cast_key}")
    cultures = [tables.cultures[c] for c in culture_ids if c in tables.cultures] or list(
        tables.cultures.values()
    )
    taken_full = {name.lower() for name in avoid}
    taken_given = {name.split()[0].lower() for name in avoid if name.split()}
    names: list[tuple[str, str, str]] = []
    attempts = 0
    while len(names) < count:
        attempts += 1
        culture = rng.choice(cultures)
        gender = pick_gender(rng)
        given = rng.choice(given_pool(culture, gender))
        # Prefer distinct first names too; accept a repeat only when the pool runs dry.
        if given.lower() in taken_given and attempts < 40 * count:
            continue
        full = full_name(culture, given, gender, rng)
        if full.lower() in taken_full:
            if attempts > 400 * count:  # every combination used: number them
                full = f"{full} {len(names) + 2}"
            else:
                continue
        taken_full.add(full.lower())
        taken_given.add(given.lower())
        names.append((full, given, gender))
    return tuple(names)


def infer_gender(tables: Tables, given: str, rng: random.Random) -> str:
    """The gender a given name has in any culture, else one drawn."""
    lowered = given.lower()
    for culture in tables.cultures.values():
        for gender in ("male", "female"):
            if any(name.lower() == lowered for name in culture.given[gender]):
                return gender
    return pick_gender(rng)
