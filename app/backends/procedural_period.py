"""When a world is set: a year read from its text, and the technology level it allows.

``parse_year`` reads "110 AD", "44 BC", "1250", "the 1890s", "25th century",
"twelfth century", "late Middle Ages", "present day"; the first of era, time
period and detail that names a time wins. ``tech_level`` turns a year into
one of the levels below; tables and the rule checker compare levels, so an
entry from a later level than the world's never appears in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Technology levels, oldest first. A table entry or a word carries the level it
# first exists at; a world allows everything at or below its own level.
LEVELS: tuple[str, ...] = (
    "ancient",  # 0: before ~500 AD
    "medieval",  # 1: to ~1500
    "early_modern",  # 2: printing, muskets, the age of sail, to ~1800
    "industrial",  # 3: steam, rail, telegraph, gaslight, to ~1914
    "modern",  # 4: cars, radio, computers, phones
    "near_future",  # 5: implants, drones, megacorps
    "far_future",  # 6: starships, colonies
)
# First year of each level after the first.
LEVEL_STARTS: tuple[int, ...] = (500, 1500, 1800, 1914, 2035, 2200)

_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "twenty-first": 21,
    "twenty-second": 22,
}
# Named periods with a representative year, checked after explicit numbers.
NAMED_PERIODS: tuple[tuple[str, int], ...] = (
    (r"present[- ]day|contemporary|modern[- ]day|nowadays|\btoday\b", 2024),
    (r"far[- ]future|interstellar|spacefaring|galactic", 2600),
    (r"near[- ]future|cyberpunk", 2080),
    (r"post[- ]apocalyptic|after the (?:bombs|collapse|fall of civili[sz]ation)", 2080),
    (r"victorian|edwardian|industrial revolution|steam age|gaslit", 1870),
    (r"wild west|old west|weird west|frontier", 1875),
    (r"age of sail|golden age of piracy|elizabethan|tudor|renaissance|baroque", 1650),
    (r"georgian|regency|napoleonic", 1800),
    (r"late middle ages", 1400),
    (r"medieval|middle ages|dark ages|feudal|viking", 1200),
    (r"antiquity|ancient|bronze age|iron age|classical|roman empire|roman republic", 50),
)

_ERA_YEAR = re.compile(
    r"\b(?:(?P<pre>AD|CE|BC|BCE|A\.D\.|B\.C\.)\s*(?P<a>\d{1,4})|(?P<b>\d{1,4})\s*(?P<post>AD|CE|BC|BCE|A\.D\.|B\.C\.))(?![A-Za-z])"
)
_CENTURY = re.compile(
    r"\b(?P<n>\d{1,2})(?:st|nd|rd|th)[- ]century(?P<bc>\s*(?:BC|BCE))?", re.IGNORECASE
)
_WORD_CENTURY = re.compile(
    r"\b(?P<part>early |mid-|mid |late )?(?P<n>"
    + "|".join(sorted(_ORDINALS, key=len, reverse=True))
    + r")[- ]century(?P<bc>\s*(?:BC|BCE))?",
    re.IGNORECASE,
)
_DECADE = re.compile(r"\b(?:the )?(?P<y>1[0-9]{2}0|20[0-9]0)s\b")
_BARE_YEAR = re.compile(r"(?<![\d.,-])\b(?P<y>1[0-9]{3}|2[0-9]{3})\b(?![\d.,]\d)")


@dataclass(frozen=True, slots=True)
class Period:
    """What a world's text says about when it is set."""

    year: int | None  # negative for BC; None when the text names no time
    level: int | None  # index into LEVELS; None when unknown

    @property
    def label(self) -> str:
        return LEVELS[self.level] if self.level is not None else "unknown"


def _year_in(text: str, *, named: bool = True) -> int | None:
    found = _ERA_YEAR.search(text)
    if found:
        year = int(found.group("a") or found.group("b"))
        marker = (found.group("pre") or found.group("post") or "").upper().replace(".", "")
        return -year if marker in ("BC", "BCE") else year
    for pattern in (_CENTURY, _WORD_CENTURY):
        match = pattern.search(text)
        if match:
            raw = match.group("n").lower()
            number = int(raw) if raw.isdigit() else _ORDINALS[raw]
            part = (match.groupdict().get("part") or "").strip(" -").lower()
            offset = {"early": 20, "mid": 50, "late": 80}.get(part, 50)
            year = (number - 1) * 100 + offset
            return -year if match.group("bc") else year
    decade = _DECADE.search(text)
    if decade:
        return int(decade.group("y")) + 5
    bare = _BARE_YEAR.search(text)
    if bare:
        return int(bare.group("y"))
    if not named:
        return None
    lowered = text.lower()
    for named_pattern, named_year in NAMED_PERIODS:
        if re.search(named_pattern, lowered):
            return named_year
    return None


def parse_year(*texts: str, detail: str = "") -> int | None:
    """The year the first text that names a time points at; then ``detail``,
    where only a written year or century counts ("an ancient evil" is no date)."""
    for text in texts:
        year = _year_in(text)
        if year is not None:
            return year
    return _year_in(detail, named=False) if detail else None


def tech_level(year: int | None) -> int | None:
    if year is None:
        return None
    return sum(1 for start in LEVEL_STARTS if year >= start)


def parse_period(era: str, time_period: str, detail: str = "") -> Period:
    """The period of a world: its time period first, then its era, then its detail."""
    year = parse_year(time_period, era, detail=detail)
    return Period(year=year, level=tech_level(year))
