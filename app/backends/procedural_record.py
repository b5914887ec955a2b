"""A cast's record of the sentences its NPCs already use, so no two share one.

The NPCs of a cast are drafted one request at a time, concurrently and in any
order, so the record is built in slot order, never in arrival order: slot k
avoids exactly the sentences of slots 0 .. k-1 (drafted here first when they
have not been yet). A slot's NPC is then the same whatever order the cast
runs in, and a redraw of one slot gives the same NPC again.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'“])")
_DIGITS = re.compile(r"\d+")

# Drafts the story sentences of one slot given what the slots before it used.
SlotDraft = Callable[[int, frozenset[str]], frozenset[str]]


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences (as a reader, and the content checker, cut it)."""
    return [part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip()]


def sentence_key(sentence: str, name: str) -> str:
    """A sentence with its NPC's own name and any numbers blanked: two NPCs whose
    keys are equal say the same thing word for word."""
    for part in sorted({name, *name.split()}, key=len, reverse=True):
        if len(part) > 1:
            sentence = re.sub(rf"\b{re.escape(part)}\b", "X", sentence)
    return _DIGITS.sub("#", sentence).strip().lower()


class CastRecord:
    """The sentence keys of a cast's slots, drafted in slot order on demand."""

    def __init__(self, draft: SlotDraft) -> None:
        self._draft = draft
        self._slots: list[frozenset[str]] = []
        self._used: list[frozenset[str]] = [frozenset()]  # keys of slots < k, at index k
        # Two threads asking for one cast must not draft a slot twice or out of order.
        self._lock = threading.Lock()

    def used_before(self, slot: int) -> frozenset[str]:
        """Every sentence key of the slots before ``slot``."""
        with self._lock:
            while len(self._slots) < slot:
                done = len(self._slots)
                keys = self._draft(done, self._used[done])
                self._slots.append(keys)
                self._used.append(self._used[done] | keys)
            return self._used[max(slot, 0)]
