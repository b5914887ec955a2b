"""Drawing without replacement across a cast, and filling templates in.

Each NPC of a cast is drafted on its own (possibly concurrently, possibly
again later), so a cast's deck is positional: a table is shuffled once per
cast, and the NPC in slot k takes card k, or one that suits it. A
sentence composed of two parts takes its second part at ``k % n1 + k // n1``,
so slots 0 .. n1*n2-1 get n1*n2 different pairs: a 100-NPC cast repeats no
composed sentence when the two tables multiply past 100.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

# Verbs templates write after {they}: the base form for they, third person otherwise.
_IRREGULAR = {"are": "is", "were": "was", "have": "has", "do": "does", "dont": "doesn't"}
_PRONOUNS = {
    "male": {"they": "he", "them": "him", "their": "his", "themself": "himself", "theyre": "he's"},
    "female": {
        "they": "she",
        "them": "her",
        "their": "her",
        "themself": "herself",
        "theyre": "she's",
    },
    "non-binary": {
        "they": "they",
        "them": "them",
        "their": "their",
        "themself": "themself",
        "theyre": "they're",
    },
}
VERBS = frozenset(
    (
        *_IRREGULAR,
        "enter",
        "hear",
        "run",
        "belong",
        "come",
        "claim",
        "think",
        "want",
        "know",
        "make",
        "get",
    )
)


def article(noun: str) -> str:
    """``a`` or ``an`` and the noun: an innkeeper, a uniformed guard."""
    noun = noun.strip()
    vowel = noun[:1].lower() in "aeiou" and not noun.lower().startswith(("uni", "use", "eu"))
    return f"{'an' if vowel else 'a'} {noun}"


def pronouns(gender: str) -> dict[str, str]:
    """Template values for the NPC's pronouns and the verbs that follow them."""
    words = dict(_PRONOUNS.get(gender, _PRONOUNS["non-binary"]))
    plural = words["they"] == "they"
    words["s"] = "" if plural else "s"  # answer{s}: a verb ending after {they}
    for verb in VERBS:
        if plural:
            words[verb] = "don't" if verb == "dont" else verb
        else:
            words[verb] = _IRREGULAR.get(verb) or (
                verb + "es" if verb.endswith(("s", "sh", "ch", "x")) else verb + "s"
            )
    return words


class Blanks(dict[str, str]):
    """format_map values; {They} capitalises {they}; an unknown placeholder stays."""

    def __missing__(self, key: str) -> str:
        lowered = key[:1].lower() + key[1:]
        if lowered != key and lowered in self:
            value = self[lowered]
            return value[:1].upper() + value[1:]
        return "{" + key + "}"


def shuffled(key: str, size: int) -> list[int]:
    """The cast's order of a table of ``size`` entries."""
    order = list(range(size))
    random.Random(key).shuffle(order)
    return order


def deal(
    key: str,
    pool: Sequence[T],
    position: int,
    fits: Callable[[T], bool] = lambda _: True,
    order: Callable[[str, int], Sequence[int]] = shuffled,
) -> tuple[T | None, int]:
    """The card at ``position`` of the cast's deck of ``pool``, and the deck's size.

    Every NPC of a cast deals the same deck (a deck per gender or age would
    hand two NPCs the same card); when the card does not fit, the first that
    fits in an order of this position's own replaces it (walking on to the
    next card would give that card to two NPCs). ``order`` gives the cast's
    shuffle (a memo of ``shuffled`` in the app: every NPC asks for the same).
    """
    if not pool:
        return None, 0
    deck = [pool[i] for i in order(f"{key}|{len(pool)}", len(pool))]
    card = deck[position % len(deck)]
    if fits(card):
        return card, len(deck)
    for index in shuffled(f"{key}|{len(pool)}|{position}", len(deck)):
        if fits(deck[index]):
            return deck[index], len(deck)
    return None, len(deck)


def composed_position(slot: int, first_size: int) -> int:
    """Where a second part of a sentence is dealt from, so pairs differ: slot
    k = q*n1 + r takes (r, r + q), and no two k below n1*n2 share both."""
    size = max(first_size, 1)
    return slot % size + slot // size
