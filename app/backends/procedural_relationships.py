"""Seeded relationships among the NPCs of a cast, for the procedural backend.

Each NPC gets one or two ties to others. The type leans on personality: two
NPCs with many flaws between them drift toward rivalry, two with many
strengths toward alliance; the weight comes from the type's range.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from app.backends.procedural_deck import pronouns

# type -> (weight range, chance it is secret, one-line descriptions)
RELATIONSHIP_TABLE: dict[str, tuple[tuple[float, float], float, tuple[str, ...]]] = {
    "ally": (
        (0.4, 0.9),
        0.15,
        (
            "{a} and {b} cover for each other when it counts",
            "{a} trusts {b} with the jobs nobody else can know about",
            "{a} once lied under oath to keep {b} out of trouble",
            "{a} and {b} have an arrangement that suits them both",
        ),
    ),
    "friend": (
        (0.3, 0.8),
        0.05,
        (
            "{a} and {b} share a drink and old stories most evenings",
            "{a} would lend {b} anything but money",
            "{a} and {b} grew up on the same street and still argue like children",
            "{a} keeps a chair by the fire for {b}",
        ),
    ),
    "rival": (
        (-0.6, -0.2),
        0.1,
        (
            "{a} and {b} want the same thing and both know it",
            "{a} measures every success against {b}'s",
            "{a} and {b} have been undercutting each other for years",
            "{a} would never admit that {b} is better at the work",
        ),
    ),
    "enemy": (
        (-1.0, -0.6),
        0.35,
        (
            "{a} blames {b} for a loss that never healed",
            "{a} is waiting for the right moment to ruin {b}",
            "{a} has sworn that {b} will pay for what happened",
            "{a} spreads stories about {b} wherever {a_they} can",
        ),
    ),
    "family": (
        (0.1, 0.9),
        0.2,
        (
            "{a} and {b} are cousins, though they rarely admit it",
            "{a} is {b}'s older sibling and never lets {b_them} forget it",
            "{a} and {b} share a grandmother and a grudge",
            "{a} raised {b} after the rest of the family was gone",
        ),
    ),
    "mentor": (
        (0.5, 0.9),
        0.05,
        (
            "{a} taught {b} the trade and still corrects {b_their} mistakes",
            "{a} sees a younger self in {b}",
            "{a} is teaching {b} everything except the one thing that matters",
            "{a} took {b} in when nobody else would",
        ),
    ),
    "lover": (
        (0.6, 1.0),
        0.6,
        (
            "{a} and {b} meet where no one will see them",
            "{a} has loved {b} for years and said nothing",
            "{a} writes letters to {b} that are never sent",
            "{a} and {b} were promised to each other once",
        ),
    ),
    "employer": (
        (0.0, 0.5),
        0.1,
        (
            "{a} pays {b}'s wages and expects loyalty for it",
            "{a} employs {b} and trusts {b_them} less each month",
            "{a} pays {b} well and asks no questions",
            "{a} hired {b} as a favour to someone else",
        ),
    ),
    "debtor": (
        (-0.4, 0.1),
        0.4,
        (
            "{a} owes {b} more than {a_they} can repay",
            "{a} borrowed from {b} and has been avoiding {b_them} since",
            "{a} lost a bet to {b} and has not paid",
            "{a} still owes {b} for a favour years old",
        ),
    ),
    "acquaintance": (
        (-0.1, 0.3),
        0.0,
        (
            "{a} knows {b} by sight and by rumour",
            "{a} and {b} nod to each other in the street",
            "{a} has heard a great deal about {b}, little of it good",
            "{a} and {b} have met once and both remember it differently",
        ),
    ),
}
FRIENDLY = ("ally", "friend", "family", "mentor", "lover", "employer")
HOSTILE = ("rival", "enemy", "debtor")


def _lean(member: Mapping[str, Any], other: Mapping[str, Any]) -> float:
    """Positive when the pair's traits are mostly strengths, negative for flaws."""
    polarity = {"positive": 1.0, "negative": -1.0}
    values = [
        polarity.get(p, 0.0) for p in (*member.get("polarities", ()), *other.get("polarities", ()))
    ]
    return sum(values) / len(values) if values else 0.0


def _names(member: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, str]:
    """Names and pronouns of both ends of a tie ("they" when a gender is not given)."""
    values = {"a": str(member["name"]), "b": str(other["name"])}
    for end, npc in (("a", member), ("b", other)):
        words = pronouns(str(npc.get("gender") or "non-binary"))
        values |= {f"{end}_{key}": words[key] for key in ("they", "them", "their")}
    return values


def draft_relationships(cast: Sequence[Mapping[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Ties among ``cast`` (dicts with id, name, gender, polarities); deterministic for a seed."""
    if len(cast) < 2:
        return []
    rng = random.Random(f"relationships|{seed}|{'|'.join(str(m['id']) for m in cast)}")
    ties: list[dict[str, Any]] = []
    seen: set[frozenset[str]] = set()
    for member in cast:
        others = [other for other in cast if other["id"] != member["id"]]
        for other in rng.sample(others, k=min(len(others), rng.choice((1, 1, 2)))):
            pair = frozenset((str(member["id"]), str(other["id"])))
            if pair in seen:
                continue
            seen.add(pair)
            lean = _lean(member, other)
            pool: tuple[str, ...] = FRIENDLY if rng.random() < 0.55 + 0.35 * lean else HOSTILE
            if rng.random() < 0.15:
                pool = ("acquaintance",)
            kind = rng.choice(pool)
            (low, high), secret_chance, lines = RELATIONSHIP_TABLE[kind]
            ties.append(
                {
                    "source": member["name"],
                    "target": other["name"],
                    "type": kind,
                    "weight": round(rng.uniform(low, high), 2),
                    "secret": rng.random() < secret_chance,
                    "description": rng.choice(lines).format_map(_names(member, other)),
                }
            )
    return ties
