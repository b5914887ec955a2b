"""Dialogue lines written offline from the NPC itself (the tables in assets/dialogue.json).

A line is a *lead* chosen by the NPC's attitude (warm, gruff, wary or sly,
from its traits) and the situation's kind (greeting, barter, crime, a
question about something, ...), then a *body* for that kind, filled from the
NPC's occupation (its work and wares), its world's places, factions and
objects, the time of day the situation names and the topic it asks about.
The speech style shapes the result: a formal speaker never contracts, a
rambler digresses, a nervous one stutters, a loud one exclaims, a smooth one
flatters, a proverb-lover adds a saying, a terse one drops the niceties.

Deterministic for a seed; the variants of one situation never repeat each
other or the lines the request says to avoid.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import TYPE_CHECKING, Any

from app.backends.procedural_deck import article
from app.backends.procedural_world import Setting, read_world
from app.models import World

if TYPE_CHECKING:
    from app.assets import Assets
    from app.backends.procedural_tables import Tables

DIALOGUE_FILE = "dialogue.json"
ATTITUDES = ("warm", "gruff", "wary", "sly")
# How often a speech style adds its own sentence (an aside, a proverb, flattery).
TAIL_CHANCE = 0.35
# Kinds whose body may be a remark on the time of day the situation names.
TIMED_KINDS = frozenset({"greeting", "farewell", "idle_bark", "other"})
# Checked in this order: "steals from the stall" is a crime before it is a sale.
# A refusal of anything ("refuses a bribe", "refuses to sell below their price") is a
# refusal before it is a bribe or a sale.
KIND_ORDER = (
    "question", "crime_reaction", "combat_bark", "refusal", "bribe", "quest_done", "quest_offer",
    "farewell", "greeting", "barter", "rumour", "idle_bark",
)  # fmt: skip
_TOPIC = re.compile(
    r"\b(?:asked|asks|asking|questions?|inquires?|wants to know)\s+about\s+(.+)", re.I
)
_CONTRACTIONS = (
    ("I'm", "I am"), ("don't", "do not"), ("can't", "cannot"), ("won't", "will not"),
    ("you're", "you are"), ("it's", "it is"), ("that's", "that is"), ("there's", "there is"),
    ("I'll", "I shall"), ("I've", "I have"), ("isn't", "is not"), ("didn't", "did not"),
    ("you've", "you have"), ("hasn't", "has not"), ("I'd", "I would"), ("you'll", "you will"),
    ("Don't", "Do not"), ("Can't", "Cannot"), ("It's", "It is"), ("That's", "That is"),
    ("There's", "There is"), ("You're", "You are"), ("Someone's", "Someone has"),
    ("Nobody's", "Nobody is"), ("Door's", "The door is"), ("nothing's", "nothing is"),
    ("shouldn't", "should not"), ("Here's", "Here is"), ("They'll", "They will"),
    ("we'll", "we shall"), ("hadn't", "had not"), ("couldn't", "could not"),
    ("aren't", "are not"), ("You'll", "You will"), ("I've", "I have"), ("wasn't", "was not"),
)  # fmt: skip
# "don't I?" stays a tag question: "do not I?" is no one's English.
_TAG = r"(?!\s+(?:I|you|we|they|he|she|it)\?)"
_DANGLING = re.compile(r",\s*(\.\.\.|[.!?])")
_FULL_STOP = re.compile(r"(?<![.])\.(?=\s|$)")


def _words(pattern_words: Sequence[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(word.strip().lower()) for word in pattern_words if word)
    return re.compile(rf"\b(?:{alternatives})" if alternatives else r"(?!x)x")


@dataclass(frozen=True, slots=True)
class _Kind:
    keywords: re.Pattern[str]
    lead: Mapping[str, tuple[str, ...]]
    body: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DialogueTables:
    """assets/dialogue.json, compiled once per version of the file."""

    attitudes: Mapping[str, frozenset[str]]
    registers: Mapping[str, re.Pattern[str]]
    address: Mapping[str, tuple[str, ...]]
    work: tuple[tuple[tuple[str, ...], str, str], ...]
    default_work: tuple[str, str]
    times: Mapping[str, tuple[str, tuple[str, ...]]]
    time_pattern: re.Pattern[str]
    kinds: Mapping[str, _Kind]
    asides: tuple[str, ...]
    proverbs: tuple[str, ...]
    flattery: tuple[str, ...]
    relatives: tuple[str, ...]

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> DialogueTables:
        kinds = {
            name: _Kind(
                _words(entry["keywords"]),
                {attitude: tuple(entry["lead"][attitude]) for attitude in ATTITUDES},
                tuple(entry["body"]),
            )
            for name, entry in raw["kinds"].items()
        }
        return cls(
            attitudes={name: frozenset(traits) for name, traits in raw["attitudes"].items()},
            registers={name: _words(words) for name, words in raw["registers"].items()},
            address={genre: tuple(words) for genre, words in raw["address"].items()},
            work=tuple((tuple(words), work, wares) for words, work, wares in raw["work"]),
            default_work=(raw["default_work"][0], raw["default_work"][1]),
            times={
                word: (greeting, tuple(remarks))
                for word, (greeting, remarks) in raw["times"].items()
            },
            time_pattern=_words(list(raw["times"])),
            kinds=kinds,
            asides=tuple(raw["asides"]),
            proverbs=tuple(raw["proverbs"]),
            flattery=tuple(raw["flattery"]),
            relatives=tuple(raw["relatives"]),
        )

    def attitude(self, traits: Sequence[str], register: str, rng: random.Random) -> str:
        """The attitude most of the traits share; earlier traits break ties."""
        scores = {name: 0.0 for name in ATTITUDES}
        for rank, trait in enumerate(traits):
            for name in ATTITUDES:
                if trait.lower() in self.attitudes.get(name, ()):
                    scores[name] += 1.0 + 0.1 / (rank + 1)
        best = max(ATTITUDES, key=lambda name: scores[name])
        if scores[best] > 0:
            return best
        by_register = {"terse": "gruff", "hesitant": "wary", "smooth": "sly", "loud": "warm"}
        return by_register.get(register) or rng.choice(ATTITUDES)

    def register(self, speech_style: str) -> str:
        text = speech_style.lower()
        hits = {name: len(pattern.findall(text)) for name, pattern in self.registers.items()}
        best = max(hits, key=lambda name: hits[name], default="plain")
        return best if hits.get(best) else "plain"

    def kind(self, situation: str) -> tuple[str, str]:
        """The situation's kind, and what it asks about (for questions)."""
        text = situation.lower()
        topic = _TOPIC.search(situation)
        if topic:
            return "question", topic.group(1).strip().rstrip(".!?")
        for name in KIND_ORDER:
            kind = self.kinds.get(name)
            if kind is not None and kind.keywords.search(text):
                return name, "that"
        return "other", "that"

    def time_of_day(self, situation: str) -> str | None:
        found = self.time_pattern.search(situation.lower())
        return found.group(0) if found else None

    def work_of(self, occupation: str) -> tuple[str, str]:
        text = occupation.lower()
        for words, work, wares in self.work:
            if any(word in text for word in words):
                return work, wares
        return self.default_work


class _Blanks(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _uncontract(text: str) -> str:
    for short, full in _CONTRACTIONS:
        text = re.sub(rf"\b{re.escape(short)}(?![\w']){_TAG}", full, text)
    return text


@dataclass(slots=True)
class _Speaker:
    """One NPC's voice for one call: what it draws on and how it talks."""

    tables: DialogueTables
    npc: Mapping[str, Any]
    setting: Setting
    genre_tables: Tables
    attitude: str
    register: str
    work: str
    wares: str

    def _pick(self, rng: random.Random, field: str) -> str:
        """A place, faction or object of the NPC's world: its own nouns (places and
        factions its text names) and its genre's that exist at its technology level."""
        from app.backends.procedural_tables import GENERIC

        tables, setting = self.genre_tables, self.setting
        own: list[str] = list(getattr(setting, field, ()))
        for genre in (tables.genres.get(setting.genre), tables.genres[GENERIC]):
            if genre is not None and len(own) < 3:
                own += [e.text for e in getattr(genre, field) if e.fits_level(setting.level)]
        return rng.choice(own) if own else ""

    def fills(self, rng: random.Random, topic: str, time_greeting: str) -> _Blanks:
        given = str(self.npc["name"]).split()[0]
        address = (
            ""
            if self.register == "terse"
            else rng.choice(
                self.tables.address.get(self.setting.genre) or self.tables.address["generic"]
            )
        )
        values = {
            "given": given,
            "a_occupation": article(str(self.npc["occupation"])),
            "address": address,
            "work": self.work,
            "wares": self.wares,
            "place": self._pick(rng, "places"),
            "faction": self._pick(rng, "factions"),
            "item": self._pick(rng, "items"),
            "other": self._other(rng, given),
            "topic": topic,
            "time": time_greeting,
            "relative": rng.choice(self.tables.relatives),
        }
        blanks = _Blanks(values)
        blanks.update({_capitalised(k): _capitalised(v) for k, v in values.items()})
        return blanks

    def _other(self, rng: random.Random, given: str) -> str:
        tables = self.genre_tables
        genre = tables.genres.get(self.setting.genre)
        names = self.setting.cultures or (genre.cultures if genre else ())
        cultures = [tables.cultures[c] for c in names if c in tables.cultures]
        culture = rng.choice(cultures or list(tables.cultures.values()))
        pool = [n for names in culture.given.values() for n in names if n != given]
        return rng.choice(pool) if pool else "old Tam"

    def shape(self, text: str, rng: random.Random, blanks: _Blanks) -> str:
        """The line as this NPC says it."""
        text = _DANGLING.sub(r"\1", " ".join(text.split()))
        register = self.register
        # A tic on every line is a tic too many: the added sentences come now and then.
        tail = rng.random() < TAIL_CHANCE
        if register == "formal":
            text = _uncontract(text)
        elif not tail:
            pass
        elif register == "rambling":
            text = f"{text} {rng.choice(self.tables.asides).format_map(blanks)}"
        elif register == "proverbial":
            text = f"{text} {rng.choice(self.tables.proverbs)}"
        elif register == "smooth":
            text = f"{text} {rng.choice(self.tables.flattery)}"
        elif register == "loud":
            text = _FULL_STOP.sub("!", text)
        elif register == "hesitant" and rng.random() < 0.6:
            first, _, rest = text.partition(" ")
            if first[:1].isalpha() and first[:1] not in "IiAa":
                text = f"{first[0]}-{first[0].lower()}{first[1:]} {rest}".strip()
        if register in ("hesitant", "soft") and text.endswith(".") and not text.endswith(".."):
            text = text[:-1] + "..."
        return text


def _order(count: int, rng: random.Random) -> list[int]:
    order = list(range(count))
    rng.shuffle(order)
    return order


def _template(text: str) -> tuple[re.Pattern[str], ...]:
    """Patterns that find a table entry in a written line, as written or as a formal
    speaker (no contractions) or a loud one (exclamation marks) says it."""
    patterns = []
    for form in dict.fromkeys((text, _uncontract(text))):
        parts = re.split(r"\{[^}]*\}", form)
        pattern = ".+?".join(re.escape(part) for part in parts).replace(r"\.", "[.!]")
        patterns.append(re.compile(pattern, re.I))
    return tuple(patterns)


def _used(entries: Sequence[str], lines: Sequence[str]) -> set[int]:
    """Which entries the lines already use."""
    used = set()
    for index, entry in enumerate(entries):
        patterns = _template(entry)
        if any(p.search(line) for p in patterns for line in lines):
            used.add(index)
    return used


def _lines_for(speaker: _Speaker, situation: Mapping[str, Any], seed: int, take: int) -> list[str]:
    """The variants asked for: each a lead and a body no other variant (nor a line
    to avoid) uses, while there are such; never the same text twice."""
    text = str(situation["situation"])
    kind_name, topic = speaker.tables.kind(text)
    kind = speaker.tables.kinds[kind_name]
    time = speaker.tables.time_of_day(text)
    time_greeting, remarks = speaker.tables.times.get(time or "", ("day", ()))
    leads = kind.lead[speaker.attitude]
    # A time of day the situation names colours about half of the lines, not all.
    bodies = (*remarks, *kind.body) if remarks and kind_name in TIMED_KINDS else kind.body
    key = f"{seed}|{speaker.npc['name']}|{' '.join(text.casefold().split())}"
    lead_order = _order(len(leads), random.Random(f"{key}|lead"))
    body_order = _order(len(bodies), random.Random(f"{key}|body"))
    if bodies is not kind.body:  # time remarks and the rest in turn: variant 1 names the time
        timed = [i for i in body_order if i < len(remarks)]
        rest = [i for i in body_order if i >= len(remarks)]
        body_order = [i for pair in zip_longest(timed, rest) for i in pair if i is not None]
    avoid = [str(line) for line in situation.get("avoid") or ()]
    seen = {line.casefold() for line in avoid}
    used_leads, used_bodies = _used(leads, avoid), _used(bodies, avoid)
    lines = []
    for variant in situation["variants"]:
        start = int(variant) - 1 + take * len(leads)
        best: tuple[int, str, int, int] | None = None
        for k in range(start, start + len(leads) * len(bodies)):
            lead_index = lead_order[k % len(leads)]
            body_index = body_order[(k + k // len(leads)) % len(bodies)]
            stale = (lead_index in used_leads) + (body_index in used_bodies)
            if best is not None and stale >= best[0]:
                continue
            rng = random.Random(f"{key}|{k}")
            blanks = speaker.fills(rng, topic, time_greeting)
            line = speaker.shape(
                f"{leads[lead_index].format_map(blanks)} {bodies[body_index].format_map(blanks)}",
                rng,
                blanks,
            )
            if line.casefold() not in seen:
                best = (stale, line, lead_index, body_index)
                if stale == 0:
                    break
        if best is None:  # every combination is said already: write no more than that
            break
        _, line, lead_index, body_index = best
        used_leads.add(lead_index)
        used_bodies.add(body_index)
        seen.add(line.casefold())
        lines.append(line)
    return lines


class DialogueWriter:
    """Writes ``dialogue_lines`` replies for the procedural backend."""

    def __init__(self, assets: Assets) -> None:
        self._assets = assets
        self._compiled: tuple[Any, DialogueTables] | None = None

    def tables(self) -> DialogueTables:
        """The compiled tables; compiled again only when the file changed (the file
        cache hands back the same object until then)."""
        raw = self._assets.files.read(self._assets.directory / DIALOGUE_FILE)
        compiled = self._compiled
        if compiled is None or compiled[0] is not raw:
            compiled = self._compiled = (raw, DialogueTables.from_raw(raw))
        return compiled[1]

    def write(self, genre_tables: Tables, inputs: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """``{"lines": [{"id", "variants": [...]}]}`` for every situation asked for."""
        tables = self.tables()
        npc = inputs["npc"]
        world = npc.get("world") or {"era": "unknown", "time_period": "unknown"}
        setting = read_world(genre_tables, World.model_validate(world))
        rng = random.Random(f"{seed}|{npc['name']}|attitude")
        register = tables.register(str(npc.get("speech_style", "")))
        work, wares = tables.work_of(str(npc.get("occupation", "")))
        speaker = _Speaker(
            tables,
            npc,
            setting,
            genre_tables,
            tables.attitude(list(npc.get("personality_traits") or ()), register, rng),
            register,
            work,
            wares,
        )
        take = int(inputs.get("take") or 0)
        return {
            "lines": [
                {"id": str(s["id"]), "variants": _lines_for(speaker, s, seed, take)}
                for s in inputs["situations"]
            ]
        }
