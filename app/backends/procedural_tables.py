"""The tables the procedural generator draws from, read once from assets/.

genres.json      genre -> keywords, technology level, name cultures, places, factions, items
names.json       culture -> given names by gender, family names, epithets
occupations.json genre -> occupations with age ranges, class, tags, gender, level
npc_tables.json  genre -> appearance, quirks, goals, secrets, backstory, lines
world_cues.json  nouns a world's text may use -> occupations they bring
personalities.json traits with their opposites and clash groups (see app.personality)

Any table entry is a string or an object with ``text`` and constraints
(``gender``, ``min_age``, ``max_age``, ``social``, ``tags``, ``level``,
``levels``); ``Entry.fits`` says whether it suits an NPC in a world.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from app.backends.procedural_deck import shuffled
from app.cache.memo import Memo
from app.personality import PersonalityData

GENERIC = "generic"
# Distinct world texts whose genre is remembered, and casts whose names are.
GENRE_MEMO_SIZE = 256
NAMES_MEMO_SIZE = 128
# Shuffled decks: about 60 tables per cast, for a few dozen casts.
DECKS_MEMO_SIZE = 4096
MEMO_NAMES = ("procedural.genres", "procedural.cast_names", "procedural.decks", "procedural.casts")
# Casts whose sentence records are kept (each ~100 slots of a dozen sentence keys).
CASTS_MEMO_SIZE = 32
# Elves and androids outlive any table's idea of old age.
NO_AGE_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class Who:
    """What a table entry may depend on: the NPC and the world's technology level."""

    gender: str
    age: int
    social: str
    tags: frozenset[str]
    level: int

    def fits(self, entry: Entry) -> bool:
        return entry.fits(self)


@dataclass(frozen=True, slots=True)
class Entry:
    """One table entry and the NPCs and worlds it suits."""

    text: str
    gender: str | None = None  # only for NPCs of this gender
    min_age: int = 0
    max_age: int = NO_AGE_LIMIT
    social: tuple[str, ...] = ()  # only for these classes; empty: any
    tags: tuple[str, ...] = ()  # only for occupations with one of these tags
    level: int = 0  # the technology level it first exists at
    levels: tuple[int, ...] = ()  # only at these levels (a toga, a serf)

    def fits(self, who: Who) -> bool:
        """Whether the entry suits this NPC (``Who`` also fits as a deal filter)."""
        return (
            (self.gender is None or self.gender == who.gender)
            and self.min_age <= who.age <= self.max_age
            and (not self.social or who.social in self.social)
            and (not self.tags or bool(who.tags.intersection(self.tags)))
            and self.fits_level(who.level)
        )

    def fits_level(self, level: int) -> bool:
        return self.level <= level and (not self.levels or level in self.levels)


@dataclass(frozen=True, slots=True)
class Genre:
    id: str
    label: str
    keywords: tuple[str, ...]
    cultures: tuple[str, ...]
    places: tuple[Entry, ...]
    factions: tuple[Entry, ...]
    items: tuple[Entry, ...]
    level: int = 2  # technology level when the world names no year
    # Genres a year cannot override (a fantasy world with a calendar is still fantasy).
    sticky: bool = False


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
    tags: tuple[str, ...] = ()
    gender: str | None = None
    level: int = 0
    levels: tuple[int, ...] = ()

    def fits_level(self, level: int) -> bool:
        return self.level <= level and (not self.levels or level in self.levels)


# eq=False: compared by identity; a new version of the files is a new Tables.
@dataclass(frozen=True, slots=True, eq=False)
class Tables:
    genres: dict[str, Genre]
    cultures: dict[str, Culture]
    occupations: dict[str, tuple[Occupation, ...]]
    npc: dict[str, dict[str, tuple[Entry, ...]]]  # genre -> table name -> entries
    cues: dict[str, tuple[Occupation, ...]]  # a noun in a world's text -> occupations
    culture_cues: dict[str, tuple[str, ...]]  # a region in a world's text -> name cultures
    faction_cues: dict[str, tuple[str, ...]]  # a noun in a world's text -> factions it implies
    place_cues: dict[str, tuple[str, ...]]  # a noun in a one-line setting -> places it implies
    region_cues: dict[str, str]  # a region a world's text names -> the genre of its own tables
    speech: dict[str, dict[str, tuple[str, ...]]]  # speech parts: by trait, class, tag
    personalities: PersonalityData
    _patterns: dict[str, tuple[re.Pattern[str], ...]]
    # Derived from these tables only, so they live and die with them.
    genre_memo: Memo[tuple[str, str], Any] = field(
        default_factory=lambda: Memo("procedural.genres", GENRE_MEMO_SIZE)
    )
    names_memo: Memo[tuple[Any, ...], Any] = field(
        default_factory=lambda: Memo("procedural.cast_names", NAMES_MEMO_SIZE)
    )
    decks_memo: Memo[tuple[str, int], tuple[int, ...]] = field(
        default_factory=lambda: Memo("procedural.decks", DECKS_MEMO_SIZE)
    )
    casts_memo: Memo[tuple[str, float], Any] = field(
        default_factory=lambda: Memo("procedural.casts", CASTS_MEMO_SIZE)
    )

    def memos(self) -> tuple[Memo[Any, Any], ...]:
        """Every memo of these tables (their names are MEMO_NAMES), for the Stats tab."""
        return (self.genre_memo, self.names_memo, self.decks_memo, self.casts_memo)

    def deck_order(self, key: str, size: int) -> tuple[int, ...]:
        """The cast's shuffle of a table, worked out once for all its NPCs."""
        return self.decks_memo.get((key, size), lambda: tuple(shuffled(key, size)))

    def entries(self, genre: str, table: str) -> tuple[Entry, ...]:
        return self.npc.get(genre, {}).get(table, ()) or self.npc[GENERIC].get(table, ())

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


def _tuple(values: Any) -> tuple[str, ...]:
    return tuple(str(value) for value in values or ())


def _entry(raw: Any) -> Entry:
    if isinstance(raw, str):
        return Entry(raw)
    return Entry(
        text=str(raw["text"]),
        gender=raw.get("gender"),
        min_age=int(raw.get("min_age", 0)),
        max_age=int(raw.get("max_age", NO_AGE_LIMIT)),
        social=_tuple(raw.get("social")),
        tags=_tuple(raw.get("tags")),
        level=int(raw.get("level", 0)),
        levels=tuple(int(level) for level in raw.get("levels", ())),
    )


def _entries(values: Any) -> tuple[Entry, ...]:
    return tuple(_entry(value) for value in values or ())


def _title_gender(title: str) -> str | None:
    """``male`` for a foreman or a fisherman: the title says who holds it."""
    words = re.findall(r"[a-z]+", title.lower())
    if any(w.endswith("woman") for w in words):
        return "female"
    if any(w.endswith("man") and w not in ("human", "shaman", "roman") for w in words):
        return "male"
    return None


def _occupation(item: Any) -> Occupation:
    return Occupation(
        title=item["title"],
        age_min=int(item.get("age_min", 18)),
        age_max=int(item.get("age_max", 70)),
        social=item.get("social", "middle"),
        tags=_tuple(item.get("tags")),
        gender=item.get("gender") or _title_gender(item["title"]),
        level=int(item.get("level", 0)),
        levels=tuple(int(level) for level in item.get("levels", ())),
    )


TABLE_FILES = (
    "genres.json",
    "names.json",
    "occupations.json",
    "npc_tables.json",
    "world_cues.json",
    "speech.json",
)


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    # Whole words only: "rome" must not match "chromed".
    return re.compile(r"(?<![a-z0-9])" + re.escape(keyword.lower()) + r"(?![a-z0-9])")


def build_tables(raw: dict[str, Any], personalities: PersonalityData) -> Tables:
    """Tables from the parsed files, keyed by file name (see TABLE_FILES)."""
    raw_genres, raw_names, raw_occupations, raw_npc, raw_cues, raw_speech = (
        raw.get(name) or {} for name in TABLE_FILES
    )
    genres = {
        genre_id: Genre(
            id=genre_id,
            label=item.get("label", genre_id),
            keywords=_tuple(item.get("keywords")),
            cultures=_tuple(item.get("cultures")),
            places=_entries(item.get("places")),
            factions=_entries(item.get("factions")),
            items=_entries(item.get("items")),
            level=int(item.get("level", 2)),
            sticky=bool(item.get("sticky", False)),
        )
        for genre_id, item in raw_genres.items()
        if not genre_id.startswith("_")
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
        genre_id: tuple(_occupation(item) for item in items)
        for genre_id, items in raw_occupations.items()
        if not genre_id.startswith("_")
    }
    npc = {
        genre_id: {table: _entries(entries) for table, entries in tables.items()}
        for genre_id, tables in raw_npc.items()
        if not genre_id.startswith("_")
    }
    cues = {
        noun.lower(): tuple(_occupation(item) for item in items)
        for noun, items in raw_cues.get("occupations", {}).items()
    }
    speech = {
        part: {key: _tuple([v] if isinstance(v, str) else v) for key, v in values.items()}
        for part, values in raw_speech.items()
        if not part.startswith("_")
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
        cues=cues,
        culture_cues={
            cue.lower(): _tuple(found) for cue, found in raw_cues.get("cultures", {}).items()
        },
        faction_cues={
            cue.lower(): _tuple(found) for cue, found in raw_cues.get("factions", {}).items()
        },
        place_cues={
            cue.lower(): _tuple(found) for cue, found in raw_cues.get("places", {}).items()
        },
        region_cues={cue.lower(): str(genre) for cue, genre in raw_cues.get("regions", {}).items()},
        speech=speech,
        personalities=personalities,
        _patterns=patterns,
    )
