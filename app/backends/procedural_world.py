"""What the procedural generator takes from a world: its genre, period and own nouns.

The year (app.backends.procedural_period) picks the technology level and,
with the keywords, the genre; fantasy and post-apocalyptic worlds keep their
genre whatever the calendar says. The world's own text gives places (its
notable places and named sites), factions (named companies, families,
guilds), and occupations: titles from any table that the text names, and
the occupations its nouns bring (world_cues.json: a lighthouse brings a
lighthouse keeper), all at or below the world's technology level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.backends.procedural_people import Person, mine_people
from app.backends.procedural_period import parse_period, tech_level
from app.backends.procedural_tables import GENERIC, Occupation, Tables
from app.models import World

# Genres by technology level, the first is the default at that level.
GENRES_AT_LEVEL: dict[int, tuple[str, ...]] = {
    0: ("ancient_rome",),
    1: ("medieval", "fantasy"),
    2: ("age_of_sail", "medieval"),
    3: ("victorian", "western"),
    4: ("modern", "post_apocalyptic"),
    5: ("cyberpunk", "post_apocalyptic"),
    6: ("scifi",),
}
_PLACE_WORDS = (
    "road|street|lane|square|market|bridge|hill|hills|island|isle|bay|harbour|harbor|port|"
    "tower|hall|steps|quarter|district|gate|forum|temple|circus|docks|dock|wharf|quay|"
    "inn|tavern|saloon|hotel|church|abbey|chapel|castle|keep|mill|mine|creek|gulch|canyon|"
    "river|lake|loch|sound|point|head|ridge|valley|vale|wood|forest|marsh|fen|station|"
    "colony|dome|ring|deck|plaza|arcade|arcology|tenement|row|yard|lighthouse|camp|fort"
)
_FACTION_WORDS = (
    "company|guild|brotherhood|sisterhood|council|family|guard|watch|church|order|syndicate|"
    "corporation|corp|logistics|analytics|authority|legion|gang|crew|society|league|union|"
    "cartel|clan|house|trust|bank|railroad|mining|industries|collective|circle|cult|faction|"
    "factions|wardens|riders|boys|lenders|navy|militia|party|ledger|tribunal|senate|annona"
)
# The last word of a place or a faction: what ends so names no person.
_NOT_A_PERSON = re.compile(rf"^(?:{_PLACE_WORDS}|{_FACTION_WORDS})$", re.IGNORECASE)
# A world whose whole text is shorter is a pitch, not a description.
SHORT_SETTING = 200
# Companies go by their names alone: Brightwater Logistics, not the Brightwater Logistics.
_COMPANY = re.compile(
    r"(?:logistics|analytics|dynamics|industries|corp|inc|systems|holdings)$", re.I
)
_NAME = r"(?:[A-Z][\w'’-]+)(?: (?:of|the|de|du|van|von|and) [A-Z][\w'’-]+| [A-Z][\w'’-]+)*"
_NAMED = re.compile(_NAME)
_FAMILY = re.compile(r"\b[Tt]he ([A-Z][\w'’-]+) (family|clan|brothers|gang)\b")
# Words that start sentences or name no place of this world.
_NOT_NAMES = {
    "the",
    "a",
    "an",
    "every",
    "nobody",
    "everyone",
    "some",
    "most",
    "power",
    "beyond",
    "below",
    "above",
    "fifteen",
    "old",
    "new",
    "at",
    "in",
    "on",
}


@dataclass(frozen=True, slots=True)
class Setting:
    """A world as the generator reads it; built once per world text."""

    genre: str
    year: int | None
    level: int  # technology level (LEVELS index); the genre's own when no year
    places: tuple[str, ...]
    regions: tuple[str, ...]  # named regions of a one-line setting ("the Outer Hebrides")
    home: tuple[str, ...]  # what a one-line setting is set in: its own places and regions
    factions: tuple[str, ...]
    occupations: tuple[Occupation, ...]
    cultures: tuple[str, ...]  # name cultures: the region's when the text names one
    named_factions: bool  # the text names its factions (not only implies them)
    people: tuple[Person, ...]  # named people of the world (procedural_people)
    nouns: tuple[str, ...]  # every own noun above, lower case, for grounding checks


def _genre_for(tables: Tables, world: World, year: int | None) -> str:
    scores = tables.genre_scores(
        world.detail_text(), f"{world.name} {world.era} {world.time_period}"
    )
    sticky = [g for g, genre in tables.genres.items() if genre.sticky and scores.get(g, 0) > 0]
    best_sticky = max(sticky, key=lambda g: scores[g], default=None)
    best = max(scores, key=lambda g: (scores[g], g != GENERIC), default=GENERIC)
    if best_sticky and scores[best_sticky] >= scores[best]:
        return best_sticky
    level = tech_level(year)
    if level is None:
        return best if scores.get(best, 0) > 0 else GENERIC
    choices = [g for g in GENRES_AT_LEVEL.get(level, ()) if g in tables.genres]
    if not choices:
        return GENERIC
    return max(choices, key=lambda g: (scores.get(g, 0), -choices.index(g)))


def _clean(phrase: str) -> str:
    phrase = " ".join(phrase.strip(" .;:,").split())
    return phrase[0].lower() + phrase[1:] if phrase.startswith("The ") else phrase


def _notable_places(world: World) -> list[str]:
    """The items of a ``notable_places`` section, each cut before its description."""
    if not isinstance(world.detail, dict):
        return []
    text = next((t for k, t in world.detail.items() if "place" in k.lower()), "")
    # "The places that matter: the cloister, the scriptorium and the guest house":
    # a label and a list; its commas and last "and" separate the places.
    label = re.match(r"\s*[^:;\n]{0,40}:\s*", text)
    if label is not None:
        text = re.sub(r",\s*(?:and\s+)?|\s+and\s+(?=the\s|an?\s)", ";", text[label.end() :])
    places = []
    for item in re.split(r";|\n", text):
        item = re.sub(r"^\s*(?:and\s+)?", "", item)
        head = re.split(r",| where | which | that | who | and its ", item, maxsplit=1)[0]
        head = re.sub(r"^an?\s+", "the ", _clean(head), flags=re.IGNORECASE)
        if 3 <= len(head) <= 60 and not head.lower().startswith(("and ", "or ")):
            places.append(head if head[0].isupper() or head.startswith("the ") else f"the {head}")
    return places


def _pitch_places(world: World) -> list[str]:
    """A one-line setting names its place in its parts: "lighthouse island, Outer
    Hebrides 1890" is set on the lighthouse island, in the Outer Hebrides."""
    text = world.detail_text()
    if len(text) > SHORT_SETTING:
        return []
    # Its first sentence names where it is; what follows tells of its people.
    text = re.split(r"(?<=[a-z0-9])\.\s+(?=[A-Z])", text.strip(), maxsplit=1)[0]
    places = []
    parts = re.split(
        r"(,|;| under | run by | above | below | on | in (?=[A-Z])| in (?=the [A-Z]))", text
    )
    for separator, chunk in zip(["", *parts[1::2]], parts[::2], strict=True):
        if separator == " under " and re.fullmatch(r"(?:the )?[A-Z][a-z]+s\W*", chunk.strip()):
            continue  # "Ravenna under the Goths": the Goths rule it, they are no place
        chunk = re.sub(
            r"\b(?:in )?(?:\d+(?:st|nd|rd|th)? ?(?:century|AD|BC)?|present day)\b", "", chunk
        )
        chunk = re.sub(r"^\s*(?:an?|the)\s+", "", chunk.strip(), flags=re.IGNORECASE).strip(" .")
        chunk = re.sub(r"^(?:Victorian|Medieval|Ancient|Modern|Roman) (?=[A-Z])", "", chunk)
        words = chunk.split()
        if chunk[:1].isupper() and len(words) > 1 and not words[1][:1].isupper():
            chunk = chunk[0].lower() + chunk[1:]  # "Orbital shipyard" is no name
        if 3 <= len(chunk) <= 50 and not re.search(
            r"\b(?:years?|after|ago|age of|who|which|that)\b", chunk
        ):
            bare = chunk[0].isupper() and " " not in chunk and not chunk.endswith("s")
            places.append(chunk if bare else f"the {chunk}")  # Titan; the Hebrides
    return places


def _named(text: str, words: str) -> list[str]:
    """Capitalised names in ``text`` whose last word is one of ``words``."""
    ending = re.compile(rf"(?:{words})$", re.IGNORECASE)
    found = []
    for match in _NAMED.finditer(text):
        name = match.group()
        if name.startswith("The ") and len(name) > 4:
            name = name[4:]  # "The Praetorian Guard watches": a name, wherever it stands
        elif not re.fullmatch(r"[a-z,;:'’] ", text[max(match.start() - 2, 0) : match.start()]):
            continue  # any other capital that starts a sentence names nothing
        first = name.split()[0].lower()
        if first in _NOT_NAMES or not ending.search(name):
            continue
        if " " not in name and ending.fullmatch(name):
            continue  # "the Church" alone is a word, not a name
        found.append(name)
    return found


def _own_occupations(tables: Tables, text: str, level: int) -> list[Occupation]:
    """Occupations the world's text names or brings, at or below its level."""
    lowered = text.lower()
    found: dict[str, Occupation] = {}
    for noun, occupations in tables.cues.items():
        if re.search(rf"(?<![a-z]){re.escape(noun)}(?:s|es)?(?![a-z])", lowered):
            for occupation in occupations:
                if occupation.fits_level(level):
                    found.setdefault(occupation.title, occupation)
    for occupations in tables.occupations.values():
        for occupation in occupations:
            title = occupation.title.lower()
            if (
                " " not in title
                and len(title) > 4
                and occupation.fits_level(level)
                and re.search(rf"\b{re.escape(title)}s?\b", lowered)
            ):
                found.setdefault(occupation.title, occupation)
    return list(found.values())


def _distinct(names: list[str], taken: set[str]) -> list[str]:
    """``names`` without repeats ("the Subura" is "Subura") or any in ``taken``."""
    kept = []
    for name in names:
        key = name.lower().removeprefix("the ")
        if key not in taken:
            taken.add(key)
            kept.append(name)
    return kept


def read_world(tables: Tables, world: World) -> Setting:
    """The genre, period and own nouns of ``world`` (remembered per world text)."""
    text = world.detail_text()
    key = (text, f"{world.name}|{world.era}|{world.time_period}")
    built: Setting = tables.genre_memo.get(key, lambda: _read(tables, world))
    return built


def _region_genre(tables: Tables, world: World, level: int | None) -> str | None:
    """A region's own tables (the Silk Road) when the text names it and the period fits."""
    lowered = f"{world.era} {world.time_period} {world.detail_text()}".lower()
    for cue, genre in tables.region_cues.items():
        own = tables.genres.get(genre)
        if own is None or not re.search(rf"(?<![a-z]){re.escape(cue)}(?![a-z])", lowered):
            continue
        if level is None or abs(level - own.level) <= 1:
            return genre
    return None


def _read(tables: Tables, world: World) -> Setting:
    period = parse_period(world.era, world.time_period, world.detail_text())
    genre = _region_genre(tables, world, period.level) or _genre_for(tables, world, period.year)
    own_level = tables.genres[genre].level if genre in tables.genres else 2
    level = own_level if period.level is None or tables.genres[genre].sticky else period.level
    detail = world.detail if isinstance(world.detail, str) else "\n".join(world.detail.values())
    text = f"{world.era}. {world.time_period}. {detail}"
    lowered = text.lower()
    pitch = _pitch_places(world)
    home = tuple(pitch)
    sites = [
        place
        for cue, found in tables.place_cues.items()
        if pitch and re.search(rf"(?<![a-z]){re.escape(cue)}", lowered)
        for place in found
    ]
    # "the lighthouse" is a place to meet; "the Outer Hebrides" is a region to live in.
    regions = [p for p in pitch if not (p.startswith("the ") and p[4:5].islower())]
    if sites:
        pitch = [p for p in pitch if p not in regions]
    places = (
        pitch
        + sites
        + _notable_places(world)
        + [_clean(p) for p in _named(text, _PLACE_WORDS) if not re.search(_FACTION_WORDS + "$", p)]
    )
    factions = [f"the {m.group(1)} {m.group(2)}" for m in _FAMILY.finditer(text)] + [
        name if name.startswith("the ") or _COMPANY.search(name) else f"the {name}"
        for name in (_clean(n) for n in _named(text, _FACTION_WORDS))
    ]
    named_factions = bool(factions)
    if len(factions) < 2 and len(detail) <= 3 * SHORT_SETTING:
        # A pitch names few factions: take the ones its nouns imply.
        factions += [
            faction
            for cue, found in tables.faction_cues.items()
            if re.search(rf"(?<![a-z]){re.escape(cue)}", lowered)
            for faction in found
        ]
    factions = _distinct(factions, set())
    places = _distinct(places, {f.lower().removeprefix("the ") for f in factions})
    occupations = _own_occupations(tables, text, level)
    cultures = tuple(
        dict.fromkeys(
            culture
            for cue, found in tables.culture_cues.items()
            if re.search(rf"(?<![a-z]){re.escape(cue)}(?![a-z])", lowered)
            for culture in found
            if culture in tables.cultures
        )
    ) or tuple(c for c in tables.genres[genre].cultures if c in tables.cultures)
    nouns = {p.lower().removeprefix("the ") for p in (*places, *factions)}
    nouns |= {o.title.lower() for o in occupations}
    people = mine_people(tables, text, level, _NOT_A_PERSON)
    nouns |= {p.bare.lower() for p in people}
    return Setting(
        genre=genre,
        year=period.year,
        level=level,
        places=tuple(places[:24]),
        regions=tuple(regions),
        home=home,
        factions=tuple(factions[:16]),
        occupations=tuple(occupations),
        cultures=cultures or tuple(tables.cultures),
        named_factions=named_factions,
        people=people,
        nouns=tuple(sorted(nouns)),
    )
