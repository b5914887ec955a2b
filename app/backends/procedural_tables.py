"""The tables the procedural generator draws from, read once from assets/.

genres.json      genre -> keywords, name cultures, places, factions, items
names.json       culture -> given names by gender, family names, epithets
occupations.json genre -> occupations with age ranges
npc_tables.json  genre -> appearance, quirks, goals, secrets, backstory, lines
personalities.json traits with their opposites (see app.personality)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from app.cache.memo import Memo
from app.personality import PersonalityData

GENERIC = "generic"
# Distinct world texts whose genre is remembered, and casts whose names are.
GENRE_MEMO_SIZE = 256
NAMES_MEMO_SIZE = 128


@dataclass(frozen=True, slots=True)
class Genre:
    id: str
    label: str
    keywords: tuple[str, ...]
    cultures: tuple[str, ...]
    places: tuple[str, ...]
    factions: tuple[str, ...]
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Culture:
    id: str
    given: dict[str, tuple[str, ...]]  # "male" / "female" / "neutral" -> names
    family: tuple[str, ...]
    epithets: tuple[str, ...]
    format: str
    # Cultures whose family names change with gender (Julius -> Julia) list the
    # feminine forms in the same order; empty means the one list serves all.
    family_female: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Occupation:
    title: str
    age_min: int
    age_max: int
    social: str


# eq=False: compared by identity; a new version of the files is a new Tables.
@dataclass(frozen=True, slots=True, eq=False)
class Tables:
    genres: dict[str, Genre]
    cultures: dict[str, Culture]
    occupations: dict[str, tuple[Occupation, ...]]
    npc: dict[str, dict[str, tuple[str, ...]]]  # genre -> table name -> entries
    personalities: PersonalityData
    _patterns: dict[str, tuple[re.Pattern[str], ...]]
    # Derived from these tables only, so they live and die with them.
    genre_memo: Memo[tuple[str, str], str] = field(
        default_factory=lambda: Memo("procedural.genres", GENRE_MEMO_SIZE)
    )
    names_memo: Memo[tuple[Any, ...], Any] = field(
        default_factory=lambda: Memo("procedural.cast_names", NAMES_MEMO_SIZE)
    )

    def entries(self, genre: str, table: str) -> tuple[str, ...]:
        return self.npc.get(genre, {}).get(table, ()) or self.npc[GENERIC][table]

    def genre_scores(self, text: str, weighted_text: str = "") -> dict[str, int]:
        """Keyword hits per genre; ``weighted_text`` (era, period) counts triple."""
        text, weighted_text = text.lower(), weighted_text.lower()
        scores = {}
        for genre, patterns in self._patterns.items():
            scores[genre] = sum(
                len(pattern.findall(text)) + 3 * len(pattern.findall(weighted_text))
                for pattern in patterns
            )
        return scores

    def detect_genre(self, text: str, weighted_text: str = "") -> str:
        # Every NPC of a cast asks about the same world: scan its text once.
        return self.genre_memo.get(
            (text, weighted_text), lambda: self._detect_uncached(text, weighted_text)
        )

    def _detect_uncached(self, text: str, weighted_text: str) -> str:
        scores = self.genre_scores(text, weighted_text)
        best = max(scores, key=lambda genre: (scores[genre], genre != GENERIC), default=GENERIC)
        return best if scores.get(best, 0) > 0 else GENERIC


def _tuple(values: Any) -> tuple[str, ...]:
    return tuple(str(value) for value in values or ())


TABLE_FILES = ("genres.json", "names.json", "occupations.json", "npc_tables.json")


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    # Whole words only: "rome" must not match "chromed".
    return re.compile(r"(?<![a-z0-9])" + re.escape(keyword.lower()) + r"(?![a-z0-9])")


def build_tables(
    raw_genres: Any,
    raw_names: Any,
    raw_occupations: Any,
    raw_npc: Any,
    personalities: PersonalityData,
) -> Tables:
    genres = {
        genre_id: Genre(
            id=genre_id,
            label=raw.get("label", genre_id),
            keywords=_tuple(raw.get("keywords")),
            cultures=_tuple(raw.get("cultures")),
            places=_tuple(raw.get("places")),
            factions=_tuple(raw.get("factions")),
            items=_tuple(raw.get("items")),
        )
        for genre_id, raw in raw_genres.items()
    }
    cultures = {
        culture_id: Culture(
            id=culture_id,
            given={
                "male": _tuple(raw.get("given_male")),
                "female": _tuple(raw.get("given_female")),
                "neutral": _tuple(raw.get("given_neutral")),
            },
            family=_tuple(raw.get("family")),
            family_female=_tuple(raw.get("family_female")),
            epithets=_tuple(raw.get("epithets")),
            format=raw.get("format", "{given} {family}"),
        )
        for culture_id, raw in raw_names.items()
    }
    occupations = {
        genre_id: tuple(
            Occupation(
                title=item["title"],
                age_min=int(item.get("age_min", 18)),
                age_max=int(item.get("age_max", 70)),
                social=item.get("social", "middle"),
            )
            for item in items
        )
        for genre_id, items in raw_occupations.items()
    }
    npc = {
        genre_id: {table: _tuple(entries) for table, entries in tables.items()}
        for genre_id, tables in raw_npc.items()
    }
    patterns = {
        genre_id: tuple(_keyword_pattern(keyword) for keyword in genre.keywords)
        for genre_id, genre in genres.items()
    }
    return Tables(
        genres=genres,
        cultures=cultures,
        occupations=occupations,
        npc=npc,
        personalities=personalities,
        _patterns=patterns,
    )
