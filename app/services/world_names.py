"""Names and time periods read from free text: a setting typed in, or a pitch.

``setting_name("lighthouse island, Outer Hebrides 1890")`` is ``Lighthouse
Island, Outer Hebrides 1890``: the same text always gives the same name, so a
cast generated twice from one setting lands in one library world. Clashes with
other worlds are settled by the world service (it knows which names are taken).
"""

from __future__ import annotations

import re

MAX_NAME_CHARS = 60
MAX_NAME_WORDS = 8
_LEADING_ARTICLES = ("a", "an", "the")
_SMALL_WORDS = frozenset({"a", "an", "and", "at", "by", "for", "in", "of", "on", "or", "the", "to"})
# Where the first clause of a setting ends: its name is taken from that clause.
_CLAUSE_END = re.compile(r"[.;:!?()\[\]{}\n—–]| - ")
_WORD = re.compile(r"[^\W_][\w'’-]*|,")

# "1890", "1890s", "110 AD", "AD 110", "44 BC", "25th century", "the 3rd century BCE";
# a bare number is a year only from 1000 on ("500 soldiers" is no year).
_PERIOD = re.compile(
    r"\b(?:(?:the\s+)?\d{1,2}(?:st|nd|rd|th)\s+century(?:\s+(?:BCE|BC|CE|AD))?"
    r"|(?:AD|CE)\s+\d{1,4}"
    r"|\d{1,4}\s*(?:BCE|BC|CE|AD)"
    r"|[12]\d{3}s?)\b",
    re.IGNORECASE,
)


def _capitalised(word: str, first: bool) -> str:
    if word != word.lower():  # the writer chose the case: "McLeod", "AD", "iPhone"
        return word
    if word in _SMALL_WORDS and not first:
        return word
    return word[:1].upper() + word[1:]


def setting_name(text: str) -> str:
    """A short title for a free-text setting, taken from its first clause."""
    clause = _CLAUSE_END.split(text.strip(), maxsplit=1)[0]
    words = _WORD.findall(clause)
    while words and words[0].lower() in _LEADING_ARTICLES and len(words) > 1:
        words = words[1:]
    kept: list[str] = []
    length = 0
    for word in words:
        if len(kept) - kept.count(",") >= MAX_NAME_WORDS or length + len(word) > MAX_NAME_CHARS:
            # Cut where a phrase ends: "Mining Colony on an Asteroid", not "... in the 25th".
            small = [i for i, w in enumerate(kept) if w.lower() in _SMALL_WORDS and i > 1]
            kept = kept[: small[-1]] if small else kept
            break
        kept.append(word)
        length += len(word) + 1
    while kept and (kept[-1] == "," or kept[-1].lower() in _SMALL_WORDS):
        kept.pop()
    title = ""
    for index, word in enumerate(kept):
        if word == ",":
            title += ","
            continue
        title += (" " if title else "") + _capitalised(word, index == 0)
    return title or "Custom setting"


def time_period_in(text: str) -> str | None:
    """The first year, decade or century the text names (``1890``, ``110 AD``), or None."""
    found = _PERIOD.search(text)
    if found is None:
        return None
    return re.sub(r"\s+", " ", found.group()).strip()


def numbered(name: str, number: int) -> str:
    """The name a clash moves to: ``Harbour Town`` -> ``Harbour Town (2)``."""
    return name if number <= 1 else f"{name} ({number})"
