"""The content rule checker: what a game designer would call a contradiction.

Reads an NPC against its world with the word lists in assets/content_rules.json:
gender against clothing, facial hair, titles and pronouns; age against grey
hair, careers and years served; scars of war against a fighting life; dress
against social class; words from a later technology level than the world's
(or from one earlier period only); traits that clash. ``cast_report`` adds
what only a whole cast shows: sentences repeated verbatim, distinct sample
lines, and how many NPCs use the world's own nouns. It checks any backend's
output (the procedural generator's tests and benchmarks/content.py use it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.backends.procedural_period import LEVELS, Period
from app.backends.procedural_record import sentence_key, sentences
from app.personality import PersonalityData

__all__ = [
    "CastReport",
    "ContentRules",
    "Finding",
    "OccupationFacts",
    "cast_report",
    "check_npc",
    "parse_content_rules",
    "sentences",
    "world_nouns",
]

TEXT_FIELDS = ("appearance", "backstory", "motivation", "secret", "speech_style")
STORY_FIELDS = ("appearance", "backstory", "motivation", "secret")
_WORD = re.compile(r"[a-z][a-z'-]+")
_NUMBER_WORDS = {
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
}
_YEARS_SERVED = re.compile(
    r"\b(?P<n>\d{1,3}|"
    + "|".join(_NUMBER_WORDS)
    + r") years (?:of(?! age)|at|in|as|on|with|behind|under)\b"
)
# Occupation words ending in -man that name no man.
_NOT_MALE_MAN = {"woman", "human", "shaman", "talisman", "caiman", "ottoman", "german", "roman"}
_WRONG_PRONOUNS = {
    "male": ("she", "her", "hers", "herself"),
    "female": ("he", "him", "his", "himself"),
}
# Lower-case words inside a person's name, which name no thing of any period.
_NAME_PARTICLES = re.compile(
    r"\b([A-Z][\w'’-]+) (?:van|von|de|da|di|du|del|der|den|la|le|ter|ten)(?= [A-Z])"
)
_NEUTRAL_PRONOUNS = ("they", "them", "their", "theirs", "themselves", "themself")
# A sentence about the NPC names nobody else when no other capitalised word and
# none of these follow its name; only then is a pronoun surely about the NPC.
_OTHER_PEOPLE = re.compile(
    r"\b(?:mother|father|sister|brother|son|daughter|wife|husband|uncle|aunt|cousin|"
    r"friend|partner|family|parents|children|who|whose|people|everyone|they all)\b",
    re.IGNORECASE,
)


def _phrase(words: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive whole-word pattern for all ``words``."""
    alternatives = sorted({re.escape(w.lower()) for w in words if w}, key=len, reverse=True)
    if not alternatives:
        return None
    return re.compile(r"(?<![a-z0-9-])(?:" + "|".join(alternatives) + r")(?![a-z0-9])")


def _find(pattern: re.Pattern[str] | None, text: str) -> str | None:
    if pattern is None:
        return None
    found = pattern.search(text.lower())
    return found.group() if found else None


@dataclass(frozen=True, slots=True)
class OccupationFacts:
    """What the tables know about an occupation title."""

    age_min: int
    age_max: int
    social: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """One contradiction in one NPC."""

    npc: str
    rule: str
    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.npc}: {self.rule} in {self.field}: {self.detail}"


@dataclass(frozen=True)
class ContentRules:
    """The word lists of assets/content_rules.json, compiled once."""

    tech: dict[int, re.Pattern[str] | None]
    period_only: dict[int, re.Pattern[str] | None]
    gone_by: dict[int, re.Pattern[str] | None]
    female: dict[str, re.Pattern[str] | None]
    male: dict[str, re.Pattern[str] | None]
    grey_min_age: int
    grey_hair: re.Pattern[str] | None
    white_min_age: int
    white_hair: re.Pattern[str] | None
    age_words: tuple[tuple[re.Pattern[str] | None, int], ...]
    war_scars: re.Pattern[str] | None
    fighting_life: re.Pattern[str] | None
    fighting_tags: frozenset[str]
    high_class: re.Pattern[str] | None
    low_class: re.Pattern[str] | None

    def later_than(self, level: int, text: str) -> tuple[int, str] | None:
        """The first word of ``text`` from a level later than ``level``."""
        for word_level, pattern in sorted(self.tech.items()):
            if word_level > level:
                word = _find(pattern, text)
                if word:
                    return word_level, word
        return None

    def out_of_period(self, level: int, text: str) -> tuple[int, str] | None:
        """The first word of ``text`` that belongs only to a level other than ``level``."""
        for word_level, pattern in self.period_only.items():
            if word_level != level:
                word = _find(pattern, text)
                if word:
                    return word_level, word
        return None

    def gone(self, level: int, text: str) -> tuple[int, str] | None:
        """The first word of ``text`` for a thing gone by ``level`` (a reverse anachronism)."""
        for gone_level, pattern in sorted(self.gone_by.items()):
            if level >= gone_level:
                word = _find(pattern, text)
                if word:
                    return gone_level, word
        return None

    def grey(self, text: str) -> str | None:
        """The first sign of age (grey hair, a bald crown) in ``text``."""
        return _find(self.grey_hair, text)

    def gendered(self, gender: str, place: str, text: str) -> str | None:
        """A word in ``text`` (``place``: appearance or occupation) the other gender owns."""
        other = {"male": self.female, "female": self.male}.get(gender)
        return _find(other.get(place), text) if other else None


def parse_content_rules(raw: Mapping[str, Any]) -> ContentRules:
    def level_map(section: str) -> dict[int, re.Pattern[str] | None]:
        return {int(level): _phrase(words) for level, words in raw.get(section, {}).items()}

    def places(section: str) -> dict[str, re.Pattern[str] | None]:
        return {place: _phrase(words) for place, words in raw.get(section, {}).items()}

    return ContentRules(
        tech=level_map("tech"),
        period_only=level_map("period_only"),
        gone_by=level_map("gone_by"),
        female=places("female"),
        male=places("male"),
        grey_min_age=int(raw.get("grey_min_age", 35)),
        grey_hair=_phrase(raw.get("grey_hair", ())),
        white_min_age=int(raw.get("white_min_age", 50)),
        white_hair=_phrase(raw.get("white_hair", ())),
        age_words=tuple(
            (_phrase(entry["words"]), int(entry["min_age"])) for entry in raw.get("age_words", ())
        ),
        war_scars=_phrase(raw.get("war_scars", ())),
        fighting_life=_phrase(raw.get("fighting_life", ())),
        fighting_tags=frozenset(raw.get("fighting_tags", ())),
        high_class=_phrase(raw.get("high_class", ())),
        low_class=_phrase(raw.get("low_class", ())),
    )


def _masked(text: str, npc: Mapping[str, Any]) -> str:
    """A sentence with the NPC's own name and numbers blanked, to compare across NPCs."""
    return sentence_key(text, str(npc.get("name", "")))


def _occupation_gender(title: str) -> str | None:
    """``male`` for a fisherman, ``female`` for a fisherwoman, else None."""
    for word in _WORD.findall(title.lower()):
        if word.endswith(("woman", "women")):
            return "female"
        if word.endswith(("man", "men")) and word not in _NOT_MALE_MAN and len(word) > 3:
            return "male"
    return None


def _pronoun_findings(npc: Mapping[str, Any], name: str, gender: str) -> list[Finding]:
    given = str(npc.get("name", "")).split()[0] if npc.get("name") else ""
    found: list[Finding] = []
    wrong = (*_WRONG_PRONOUNS.get(gender, ()), *_NEUTRAL_PRONOUNS)
    if gender == "non-binary":
        wrong = (*_WRONG_PRONOUNS["male"], *_WRONG_PRONOUNS["female"])
    pattern = _phrase(wrong)
    for field_name in STORY_FIELDS:
        for sentence in sentences(str(npc.get(field_name, ""))):
            if not given or not sentence.startswith(given):
                continue
            rest = sentence[len(given) :]
            others = re.findall(r"\b[A-Z][a-z]+", rest)
            if others or _OTHER_PEOPLE.search(rest):
                continue  # the pronoun may be about someone else
            word = _find(pattern, rest)
            if word:
                found.append(Finding(name, "pronoun", field_name, f"{gender} NPC as '{word}'"))
    return found


def check_npc(
    npc: Mapping[str, Any],
    period: Period,
    rules: ContentRules,
    *,
    personalities: PersonalityData | None = None,
    occupations: Mapping[str, OccupationFacts] | None = None,
) -> list[Finding]:
    """Every contradiction in one NPC (a profile dict) set in a world of ``period``."""
    name = str(npc.get("name", "?"))
    gender = str(npc.get("gender", "")).lower()
    age = int(npc.get("age") or 0)
    occupation = str(npc.get("occupation", ""))
    appearance = str(npc.get("appearance", ""))
    lines = " ".join(str(line) for line in npc.get("sample_lines", ()))
    texts = {f: str(npc.get(f, "")) for f in TEXT_FIELDS} | {
        "occupation": occupation,
        "sample_lines": lines,
    }
    facts = (occupations or {}).get(occupation.lower())
    found: list[Finding] = []

    def add(rule: str, field_name: str, detail: str) -> None:
        found.append(Finding(name, rule, field_name, detail))

    if period.level is not None:
        for field_name, text in texts.items():
            text = _NAME_PARTICLES.sub(r"\1", text)  # Pieter van Dyke drives no van
            later = rules.later_than(period.level, text)
            if later:
                add(
                    "anachronism",
                    field_name,
                    f"'{later[1]}' ({LEVELS[later[0]]}) in a {period.label} world",
                )
            earlier = rules.out_of_period(period.level, text)
            if earlier:
                add(
                    "out of period",
                    field_name,
                    f"'{earlier[1]}' ({LEVELS[earlier[0]]} only) in a {period.label} world",
                )
            gone = rules.gone(period.level, text)
            if gone:
                add(
                    "out of period",
                    field_name,
                    f"'{gone[1]}' (gone by {LEVELS[gone[0]]}) in a {period.label} world",
                )
    if gender in ("male", "female"):
        for place, text in (("appearance", appearance), ("occupation", occupation)):
            word = rules.gendered(gender, place, text)
            if word:
                add("gender", place, f"{gender} NPC with '{word}'")
        owner = _occupation_gender(occupation)
        if owner and owner != gender:
            add("gender", "occupation", f"{gender} NPC titled '{occupation}'")
    found += _pronoun_findings(npc, name, gender)
    story = " ".join(str(npc.get(f, "")) for f in STORY_FIELDS)
    if age:
        grey = rules.grey(appearance)
        if grey and age < rules.grey_min_age:
            add("age", "appearance", f"'{grey}' at {age}")
        white = _find(rules.white_hair, appearance)
        if white and age < rules.white_min_age and "prematurely" not in appearance.lower():
            add("age", "appearance", f"'{white}' at {age} (needs {rules.white_min_age})")
        for pattern, min_age in rules.age_words:
            word = _find(pattern, f"{story} {occupation}")
            if word and age < min_age:
                add("age", "backstory", f"'{word}' at {age} (needs {min_age})")
        for match in _YEARS_SERVED.finditer(story.lower()):
            raw = match.group("n")
            years = int(raw) if raw.isdigit() else _NUMBER_WORDS[raw]
            if years + 12 > age:
                add("age", "backstory", f"'{match.group()}' at {age}")
        if facts and not facts.age_min <= age <= facts.age_max:
            add("age", "occupation", f"{occupation} at {age} ({facts.age_min}-{facts.age_max})")
    scar = _find(rules.war_scars, appearance)
    if scar:
        fighter = bool(facts and rules.fighting_tags & set(facts.tags)) or bool(
            _find(rules.fighting_life, f"{story} {occupation}")
        )
        if not fighter or (age and age < 18):
            add("scars", "appearance", f"'{scar}' on a {age}-year-old {occupation} with no fights")
    if facts:
        posh = _find(rules.high_class, appearance)
        if posh and facts.social == "low":
            add("class", "appearance", f"low-born {occupation} in '{posh}'")
        poor = _find(rules.low_class, appearance)
        if poor and facts.social == "high":
            add("class", "appearance", f"high-born {occupation} in '{poor}'")
    if personalities is not None:
        for first, second in personalities.conflicts(npc.get("personality_traits", ())):
            add("traits", "personality_traits", f"'{first}' and '{second}' clash")
    return found


@dataclass
class CastReport:
    """What a rule checker and a reader see in a whole cast."""

    npcs: int = 0
    findings: list[Finding] = field(default_factory=list)
    sentences: int = 0
    repeated: Counter[str] = field(default_factory=Counter)  # sentence -> extra uses
    lines: int = 0
    distinct_lines: int = 0
    grounded: int = 0

    @property
    def repeated_sentences(self) -> int:
        return sum(self.repeated.values())

    @property
    def distinct_line_share(self) -> float:
        return self.distinct_lines / self.lines if self.lines else 1.0

    @property
    def grounded_share(self) -> float:
        return self.grounded / self.npcs if self.npcs else 0.0


def _grounded(npc: Mapping[str, Any], nouns: frozenset[str]) -> bool:
    text = f"{npc.get('occupation', '')} {npc.get('backstory', '')}".lower()
    return any(noun in text for noun in nouns)


def cast_report(
    cast: Sequence[Mapping[str, Any]],
    period: Period,
    rules: ContentRules,
    *,
    world_nouns: Iterable[str] = (),
    personalities: PersonalityData | None = None,
    occupations: Mapping[str, OccupationFacts] | None = None,
) -> CastReport:
    """Contradictions, repeated sentences, distinct lines and grounding of a cast.

    A sentence counts as repeated when another NPC (or the same one) has it
    word for word once its own name and any numbers are blanked out; a line
    likewise. ``world_nouns`` are the world's own words (lower case); an NPC
    whose occupation or backstory holds one is grounded in the world.
    """
    report = CastReport(npcs=len(cast))
    nouns = frozenset(n.lower() for n in world_nouns if n)
    seen: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    for npc in cast:
        report.findings += check_npc(
            npc, period, rules, personalities=personalities, occupations=occupations
        )
        for field_name in STORY_FIELDS:
            for sentence in sentences(str(npc.get(field_name, ""))):
                seen[_masked(sentence, npc)] += 1
        for line in npc.get("sample_lines", ()):
            lines[_masked(str(line), npc)] += 1
        report.grounded += _grounded(npc, nouns)
    report.sentences = sum(seen.values())
    report.repeated = Counter({s: n - 1 for s, n in seen.items() if n > 1})
    report.lines = sum(lines.values())
    report.distinct_lines = len(lines)
    return report


_PROPER = re.compile(
    r"(?:(?<=[a-z,;:] )|^)(?:[A-Z][a-z'’-]+)(?: (?:of |the |de )?[A-Z][a-z'’-]+)*", re.MULTILINE
)
_LOWER_NOUN = re.compile(r"\b[a-z]{6,}\b")


def world_nouns(world_text: str, common: Iterable[str]) -> frozenset[str]:
    """The world's own words: names written inside its sentences, and long
    lower-case words it uses that ``common`` (the generator's stock words,
    lower case) does not hold."""
    stock = {word.lower() for word in common}
    names = {
        match.group().lower()
        for match in _PROPER.finditer(world_text)
        if match.group().lower() not in stock  # "A" or "The" opening a line is no name
    }
    words = {word for word in _LOWER_NOUN.findall(world_text) if word not in stock}
    # "Victorian Hebrides" is the Hebrides too: the long words of a name count alone.
    words |= {w for name in names for w in name.split() if len(w) >= 5 and w not in stock}
    words |= {w[:-1] for w in words if w.endswith("s") and len(w) >= 6}  # shelters: shelter
    return frozenset(n for n in names | words if len(n) >= 4)
