"""Draft a whole world from a one-line pitch, for the designer to edit before saving.

Offline (the procedural backend) the draft is composed from
``assets/world_drafts.json``: the pitch's year or genre words pick a period,
the setting features it names (a lighthouse, an island, a caravan town) bring
their places, people and troubles, and its capitalised names stay as they are.
With an LLM backend the same sections are asked for in one validated call.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.backends.base import JSONReply, JSONRequest, Message
from app.backends.pool import BackendPool
from app.errors import InputError
from app.models import World
from app.services.text import checked_text
from app.services.validated import complete_validated
from app.services.world_names import setting_name, time_period_in
from utils.cached_json import JSONFileCache

WORLD_DRAFT_TASK = "world_draft"
DRAFTS_FILE = "world_drafts.json"
MAX_PITCH_CHARS = 500
PROCEDURAL = "procedural"
DETAIL_SECTIONS = ("overview", "places", "people", "factions", "daily_life", "tensions")
GUARDRAILS = ("period", "tone", "content")
CONTENT_RULE = "No graphic violence, and no cruelty played for laughs."


class Period(BaseModel):
    """What fits one period, and what would be out of place in it."""

    model_config = ConfigDict(extra="forbid")

    label: str
    default_time: str
    technology: str
    out_of_place: list[str]
    people: list[str] = Field(min_length=2)
    factions: list[str] = Field(min_length=2)
    places: list[str] = Field(min_length=1)
    daily_life: list[str] = Field(min_length=2)
    tensions: list[str] = Field(min_length=1)
    tone: str


class FeatureInPeriod(BaseModel):
    """What a feature looks like in one period, where the plain lists would not fit
    (a mine on an asteroid has drill shafts, not a pithead)."""

    model_config = ConfigDict(extra="forbid")

    places: list[str] = Field(default_factory=list)
    people: list[str] = Field(default_factory=list)


class Feature(BaseModel):
    """A thing a pitch can name, with the places, people and troubles it brings."""

    model_config = ConfigDict(extra="forbid")

    words: list[str] = Field(min_length=1)
    places: list[str] = Field(default_factory=list)
    people: list[str] = Field(default_factory=list)
    tensions: list[str] = Field(default_factory=list)
    factions: list[str] = Field(default_factory=list)
    by_period: dict[str, FeatureInPeriod] = Field(default_factory=dict)

    def named_in(self, text: str) -> bool:
        return any(re.search(rf"\b{re.escape(word)}(?:s|es)?\b", text) for word in self.words)

    def places_in(self, period: str) -> list[str]:
        override = self.by_period.get(period)
        return override.places if override and override.places else self.places

    def people_in(self, period: str) -> list[str]:
        override = self.by_period.get(period)
        return override.people if override and override.people else self.people


class DraftTables(BaseModel):
    model_config = ConfigDict(extra="ignore")

    periods: dict[str, Period]
    genre_words: dict[str, list[str]]
    features: dict[str, Feature]


# Where one period ends and the next begins (a year before the first bound is ancient).
_PERIOD_BOUNDS = (
    (500, "ancient"),
    (1450, "medieval"),
    (1800, "early_modern"),
    (1914, "victorian"),
    (2040, "modern"),
    (2200, "near_future"),
)
# Genres that say more than a year does ("a cyberpunk city, 2077", "a gold rush town, 1870"),
# within the years they can be set in (a Roman fort on the frontier is no western).
_GENRE_YEARS = {
    "fantasy": (-10_000, 100_000),
    "western": (1840, 1920),
    "post_apocalyptic": (1950, 100_000),
    "near_future": (1980, 2300),
    "far_future": (2100, 100_000),
}
_CENTURY = re.compile(r"(\d{1,2})(?:st|nd|rd|th)\s+century(?:\s+(BCE|BC))?", re.IGNORECASE)
_YEAR = re.compile(r"(?:(AD|CE)\s+)?(\d{1,4})s?(?:\s*(BCE|BC|AD|CE))?", re.IGNORECASE)


def year_of(text: str) -> int | None:
    """The year a pitch is set in (negative before Christ), from its first period phrase."""
    period = time_period_in(text)
    if period is None:
        return None
    century = _CENTURY.search(period)
    if century is not None:
        middle = int(century.group(1)) * 100 - 50
        return -middle if century.group(2) else middle
    year = _YEAR.search(period)
    if year is None:
        return None
    value = int(year.group(2))
    return -value if (year.group(3) or "").upper().startswith("B") else value


def period_of(text: str, tables: DraftTables) -> str:
    """The period a pitch belongs to: a strong genre word, else its year, else a period word."""
    lowered = text.lower()
    named = [
        kind
        for kind, words in tables.genre_words.items()
        if any(re.search(rf"\b{re.escape(word)}", lowered) for word in words)
    ]
    year = year_of(text)
    for kind, (first, last) in _GENRE_YEARS.items():
        if kind in named and (year is None or first <= year <= last):
            return kind
    if year is not None:
        return next((kind for bound, kind in _PERIOD_BOUNDS if year < bound), "far_future")
    return named[0] if named else "medieval"


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def _listed(items: Sequence[str], last: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _drawn(rng: random.Random, items: Sequence[str], count: int) -> list[str]:
    """``count`` different items, in a seeded order."""
    pool = _unique(items)
    rng.shuffle(pool)
    return pool[:count]


# "on the Northumbrian coast", "in the Outer Hebrides", "a salt-marsh monastery":
# the land a pitch names is a place of its world.
_LAND = re.compile(
    r"\b(?:on|by|in|near|at|off|beyond|across) (the (?:[A-Z][\w'-]+ )*"
    r"(?:coast|shore|marsh(?:es)?|fens?|moors?|forest|woods|river|hills|mountains|highlands"
    r"|islands?|isles?|bay|sea|lake|loch|valley|desert|steppe|plains?|Hebrides|[A-Z][\w'-]+))\b"
)
_LAND_WORD = re.compile(r"\b(salt[- ]marsh|marsh|fen|moor|forest|river|harbour|estuary)[- ]\w+")
# "raided by Norse pirates", "ruled by a mad prince": who makes the pitch's trouble.
_THREAT = re.compile(
    r"\b(raided|plundered|besieged|burned|attacked|haunted|ruled|threatened|plagued"
    r"|occupied|watched|terrorised|terrorized|hunted) by ((?:the |an? )?[\w' -]{3,40}?)"
    r"(?=,|;|\.|$| and | who | in \d| since )"
)
_HAPPENED = {"raided", "plundered", "besieged", "burned", "attacked"}


def _land_in(pitch: str) -> list[str]:
    """The land a pitch names ("the Northumbrian coast", "the salt marsh")."""
    found = [m.group(1) for m in _LAND.finditer(pitch) if not m.group(1)[4:5].isdigit()]
    found += [f"the {m.group(1).replace('-', ' ').lower()}" for m in _LAND_WORD.finditer(pitch)]
    return _unique(found)


def _threats_in(pitch: str) -> list[tuple[str, str]]:
    """(who, a tension sentence) for each trouble the pitch names."""
    threats = []
    for verb, who in _THREAT.findall(pitch):
        who = who.strip()
        tense = "has been" if verb in _HAPPENED else "is"
        again = ", and everyone expects it again" if verb in _HAPPENED else ""
        threats.append((who, _sentence(f"This place {tense} {verb} by {who}{again}")))
    return threats


def draft_seed(pitch: str, seed: int | None) -> int:
    """The same pitch and seed draft the same world."""
    digest = hashlib.blake2b(f"{seed}|{pitch.strip().lower()}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def draft_world(pitch: str, tables: DraftTables, *, seed: int | None = None) -> World:
    """A full world from a pitch, composed from the tables (offline, deterministic)."""
    rng = random.Random(draft_seed(pitch, seed))
    lowered = pitch.lower()
    kind = period_of(pitch, tables)
    period = tables.periods[kind]
    features = [feature for feature in tables.features.values() if feature.named_in(lowered)]
    time = time_period_in(pitch) or period.default_time
    clause = pitch.strip().rstrip(".")

    places = _unique([p for f in features for p in f.places_in(kind)])
    places = places or _drawn(rng, period.places, 3)
    land = _land_in(pitch)
    places = _unique([*land, *(places[:5] if features else places)])
    local_people = _unique([p for f in features for p in f.people_in(kind)])
    people = (local_people[:8] + _drawn(rng, period.people, 8 - min(len(local_people), 6)))[:10]
    threats = _threats_in(pitch)  # "raided by Norse pirates": the pitch's own trouble first
    tensions = [sentence for _, sentence in threats]
    tensions += _unique([t for f in features for t in f.tensions])[: max(0, 2 - len(tensions))]
    tensions += _drawn(rng, period.tensions, 3 - len(tensions))
    factions = [who for who, _ in threats]
    factions += _unique([x for f in features for x in f.factions])[: max(0, 3 - len(factions))]
    factions += _drawn(rng, period.factions, 3 - len(factions))

    detail = {
        "overview": f"{_sentence(clause)} The time is {time}, in {period.label}. The technology "
        f"of the day: {period.technology}.",
        # One place an item: the generator reads the section as a list.
        "places": _sentence("; ".join(places)),
        "people": f"Among the people here are {_listed([_article(p) for p in people])}.",
        "factions": f"Power and loyalty are split: {'; '.join(factions)}.",
        "daily_life": " ".join(_drawn(rng, period.daily_life, 2)),
        "tensions": " ".join(_sentence(t) for t in tensions),
    }
    out_of_place = _listed(period.out_of_place[:6], "or")
    guardrails = {
        "period": f"Keep to {period.label} ({time}); nothing out of place in it: "
        f"no {out_of_place}.",
        "tone": _sentence(period.tone),
        "content": CONTENT_RULE,
    }
    # The era is the period, and where when the pitch says; the whole pitch is the overview's.
    era = f"{period.label[:1].upper()}{period.label[1:]}" + (f", {land[0]}" if land else "")
    return World(
        name=setting_name(pitch), era=era, time_period=time, detail=detail, guardrails=guardrails
    )


def draft_messages(pitch: str) -> list[Message]:
    sections = ", ".join(DETAIL_SECTIONS)
    return [
        {
            "role": "system",
            "content": "You write world files for a game's character generator. Answer with "
            "one JSON object: name (a short title), era, time_period (a year, decade or "
            f"century), detail (an object with the sections {sections}; 2-4 sentences each, "
            "naming concrete places, occupations, factions and people of this world), and "
            f"guardrails (an object with {', '.join(GUARDRAILS)}: the period rule lists things "
            "from later ages to leave out). Stay faithful to the pitch's place and period.",
        },
        {"role": "user", "content": f"Pitch: {pitch}"},
    ]


def _strings(names: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "string"} for name in names},
        "required": list(names),
        "additionalProperties": False,
    }


DRAFT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "era": {"type": "string"},
        "time_period": {"type": "string"},
        "detail": _strings(DETAIL_SECTIONS),
        "guardrails": _strings(GUARDRAILS),
    },
    "required": ["name", "era", "time_period", "detail", "guardrails"],
    "additionalProperties": False,
}


def parse_draft(reply: JSONReply) -> World:
    """A backend's draft as a World (pydantic says what is wrong, for the repair call)."""
    if not isinstance(reply.data, dict):
        raise ValueError("the draft must be a JSON object")
    return World.model_validate(reply.data)


@dataclass(frozen=True, slots=True)
class WorldDraft:
    """A drafted world and the backend that wrote it."""

    world: World
    backend: str


class WorldDrafter:
    """Pitch in, world draft out: offline from the tables, or by the chosen LLM backend."""

    def __init__(self, backends: BackendPool, files: JSONFileCache, assets_dir: Path) -> None:
        self.backends = backends
        self.files = files
        self.path = assets_dir / DRAFTS_FILE

    def tables(self) -> DraftTables:
        """The drafting tables (blocking read, mtime-cached)."""
        return DraftTables.model_validate(self.files.read(self.path))

    async def draft(
        self,
        pitch: str,
        *,
        backend: str | None = None,
        seed: int | None = None,
        temperature: float = 0.9,
    ) -> WorldDraft:
        pitch = checked_text(pitch or "", "The pitch").strip()
        if not pitch:
            raise InputError(
                "Type a one-line pitch, e.g. 'a lighthouse island in the Outer Hebrides, 1890'."
            )
        if len(pitch) > MAX_PITCH_CHARS:
            raise InputError(
                f"The pitch is {len(pitch):,} characters; keep it under {MAX_PITCH_CHARS} "
                "(one line), then add detail in the form."
            )
        guarded = self.backends.get(backend)
        if self.backends.resolve(backend) == PROCEDURAL:
            tables = await asyncio.to_thread(self.tables)
            return WorldDraft(draft_world(pitch, tables, seed=seed), guarded.name)
        request = JSONRequest(
            task=WORLD_DRAFT_TASK,
            messages=draft_messages(pitch),
            schema=DRAFT_SCHEMA,
            inputs={"pitch": pitch},
            temperature=temperature,
            seed=draft_seed(pitch, seed),
        )
        world, _ = await complete_validated(guarded, request, parse_draft, what="world draft")
        return WorldDraft(world, guarded.name)
