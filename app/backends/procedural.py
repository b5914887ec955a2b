"""The procedural backend: a seeded generator over the tables in assets/.

Deterministic for a seed, instant and offline. It reads the world (the
year picks the technology level, the keywords the genre, the text its own
places, factions and occupations; see procedural_world), deals every table
from a deck shuffled per cast, keeps entries to the NPCs they suit (gender,
age, class, trade, period), never gives one NPC clashing traits, and gives
every unnamed NPC of a cast a name no other NPC of that cast has. It is the default when no
LLM is configured and the backbone of the tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from app.backends.base import Backend, ChatRequest, JSONReply, JSONRequest
from app.backends.procedural_chat import chat_reply, chunks
from app.backends.procedural_deck import Blanks, article, composed_position, deal, pronouns
from app.backends.procedural_dialogue import DialogueWriter
from app.backends.procedural_memory import extract_memories, reflect
from app.backends.procedural_names import (
    cast_names,
    full_name,
    given_pool,
    infer_gender,
    pick_gender,
)
from app.backends.procedural_people import cast_people, mentioned
from app.backends.procedural_record import CastRecord, sentence_key, sentences
from app.backends.procedural_relationships import draft_relationships
from app.backends.procedural_tables import GENERIC, Entry, Genre, Occupation, Tables, Who
from app.backends.procedural_world import Setting, read_world
from app.errors import BackendCapabilityError
from app.models import (
    DIALOGUE_TASK,
    FIELD_TASK,
    MEMORY_TASK,
    NPC_TASK,
    REFLECTION_TASK,
    RELATIONSHIPS_TASK,
    World,
)
from config import Settings

if TYPE_CHECKING:
    from app.backends.registry import BackendContext

VERSION = "v1"
ELDERS = ("grandmother", "grandfather", "aunt", "uncle", "great-aunt", "older cousin")
RELATIVES = ("sister", "brother", "mother", "father", "cousin", "uncle", "aunt", "daughter", "son")
# Chance of drawing from the generic tables instead of the genre's, at temperature 1.
GENERIC_MIX = 0.12
MIN_OWN_ENTRIES = 10
NO_CLASHES: frozenset[str] = frozenset()
# How far a sentence's second part moves when its first part was a replacement.
REPLACED_STRIDE = 7
# A cast holds at most 100 NPCs by default (max_npcs): positions past that are free.
SECOND_REMARK = 100
# A designer-named NPC has no slot: it deals from a position its name picks, past
# the slots, and avoids the sentences of a whole cast's worth of slots.
NAMED_BASE = 2 * SECOND_REMARK
NAMED_SPREAD = 997
NAMED_AVOIDS = SECOND_REMARK
# Names drawn for a cast to keep out of its stories' mentions (a cast's NPCs at most).
CAST_NAMES = 128
# How many other compositions a sentence tries when another NPC already says it,
# and after how many the first part moves too (a small second table cycles).
RECOMPOSE_TRIES = 48
RECOMPOSE_ROUND = 6
# Ways to say the same thing, turned by slot so that NPCs dealt the same parts differ.
WEARS = ("wears", "goes about in", "is seldom seen out of", "turns out in", "is usually found in")
AGES = ("{age} years old", "aged {age}", "{age} this year", "some {age} years of age")
WANTS = ("wants", "means", "hopes", "is determined", "has sworn")
TRUTHS = ("", "Few know that ", "In truth, ", "", "What nobody knows: ")


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?…\"'”" else text + "."


def _clause(text: str) -> str:
    """Text to continue a sentence with: no closing full stop."""
    return " ".join(text.split()).rstrip(".")


def _fingerprint(world: Mapping[str, Any]) -> str:
    return hashlib.blake2b(
        orjson.dumps(world, option=orjson.OPT_SORT_KEYS), digest_size=8
    ).hexdigest()


def _turning(slot: int, first_size: int, pace: int) -> int:
    """Where a later part of a sentence is dealt: it turns ``pace`` cards for each
    round of the first part, so NPCs sharing the first part differ in this one."""
    size = max(first_size, 1)
    return slot % size + pace * (slot // size)


def _level_fit(level: int) -> Callable[[Entry], bool]:
    return lambda entry: entry.fits_level(level)


def _titled(occupation: Occupation, gender: str) -> str | None:
    """The occupation's title for this gender, or None when it is not open to it."""
    if occupation.gender is None or occupation.gender == gender:
        return occupation.title
    if occupation.gender == "male" and gender == "female":
        # A fisherman's trade open to women is a fisherwoman's.
        words = occupation.title.split()
        changed = [
            w[:-3] + "woman" if w.endswith("man") and w not in ("woman", "roman") else w
            for w in words
        ]
        if changed != words and not any(w.startswith(("guards", "free")) for w in changed):
            return " ".join(changed)
    return None


class Drawn(NamedTuple):
    """One card dealt to an NPC, filled in."""

    text: str
    size: int  # cards in the deck it came from
    replaced: bool  # the card at the NPC's position did not suit it


class NPCDrafter:
    """Draws one NPC profile; one instance per NPC, holding its RNG and choices."""

    def __init__(
        self,
        tables: Tables,
        inputs: Mapping[str, Any],
        seed: int,
        temperature: float,
        used: frozenset[str] = frozenset(),
    ) -> None:
        self.tables = tables
        self.world = World.model_validate(inputs["world"])
        world_id = _fingerprint(inputs["world"])
        self.setting: Setting = read_world(tables, self.world)
        self.genre: Genre = tables.genres.get(self.setting.genre, tables.genres[GENERIC])
        self.generic_mix = GENERIC_MIX * max(temperature, 0.0)
        self.cast_key = f"{inputs.get('cast_seed', 0)}|{world_id}|{VERSION}"
        self._mix: dict[str, bool] = {}
        # Sentence keys other NPCs of the cast already use (see procedural_record),
        # and this NPC's own as it writes them.
        self.used = set(used)
        self.keys: set[str] = set()
        slot = int(inputs["slot"]) if "slot" in inputs else None
        # A slot's NPC draws from the cast and its slot only, so the cast's record can
        # draft any slot again exactly as its own request does.
        if slot is not None and slot >= 0:
            self.rng = random.Random(f"{self.cast_key}|#{slot}")
        else:
            self.rng = random.Random(f"{seed}|{world_id}|{VERSION}")
        if slot is None:  # a lone redraw takes a random place in the decks
            slot = self.rng.randrange(1 << 20)
        elif slot < 0 and inputs.get("name"):  # named by the designer: a place of its own
            digest = hashlib.blake2b(str(inputs["name"]).lower().encode(), digest_size=4)
            slot = NAMED_BASE + int.from_bytes(digest.digest(), "big") % NAMED_SPREAD
        self.slot = slot
        # A named person of the world's text takes this slot when the cast deals them here.
        avoid = tuple(inputs.get("avoid_names", ()))
        people = self.setting.people
        dealt = cast_people(people, self.cast_key, avoid)
        self.person = None if inputs.get("name") else dealt.get(slot)
        self.required_traits = [t.lower() for t in inputs.get("traits", ())]
        self.name, self.given, self.gender = self._name(inputs)
        # Fields the designer locked: later text must agree with them.
        locked: Mapping[str, Any] = inputs.get("locked") or {}
        if locked.get("name"):
            self.name = str(locked["name"])
            self.given = self.name.split()[0]
        self.gender = str(locked.get("gender") or self.gender)
        occupation = self.person.occupation if self.person else None
        occupation = occupation or self._occupation()  # open to the (locked) gender
        self.occupation_title = _titled(occupation, self.gender) or occupation.title
        self.age = self.rng.randint(occupation.age_min, max(occupation.age_min, occupation.age_max))
        self.occupation_title = str(locked.get("occupation") or self.occupation_title)
        self.age = int(locked.get("age") or self.age)
        if locked.get("personality_traits"):
            self.required_traits = [str(t).lower() for t in locked["personality_traits"]]
        self.who = Who(
            gender=self.gender,
            age=self.age,
            social=occupation.social,
            tags=frozenset(occupation.tags),
            level=self.setting.level,
        )
        self.social = occupation.social
        # One place, faction, item and acquaintance per NPC, so the story hangs together.
        place = self._own("places", 0)
        self.values = Blanks(
            name=self.name,
            given=self.given,
            occupation=self.occupation_title,
            place=place,
            haunt=self._haunt(place),
            faction=self._own("factions", 1),
            item=self._own("items", 2),
            other=self._other_name(self._avoid(inputs)),
            region=self.setting.regions[self.slot % len(self.setting.regions)]
            if self.setting.regions
            else "",
            relative=self._relative(),
            elder=ELDERS[(self.slot * 5 + self.rng.randrange(2)) % len(ELDERS)],
            person=mentioned(people, self.slot, self.rng, self.name),
            home=self.setting.home[self.slot % len(self.setting.home)] if self.setting.home else "",
            **pronouns(self.gender),
        )

    def _own(self, field: str, stream: int) -> str:
        """A place, faction or item: the world's own when its text names some."""
        own: tuple[str, ...] = getattr(self.setting, field, ())
        stock = [e for e in getattr(self.genre, field) if e.fits_level(self.setting.level)]
        if not stock or self._mixed(field):
            generic = getattr(self.tables.genres[GENERIC], field)
            stock = [e for e in generic if e.fits_level(self.setting.level)]
        # The world's own names fill about three in four stories when it has some.
        copies = max(2, 3 * len(stock) // max(len(own), 1))
        pool = [*(own * copies), *(e.text for e in stock)]
        card, _ = deal(
            f"{self.cast_key}|{field}", pool, self.slot + 37 * stream, order=self.tables.deck_order
        )
        return card or ""

    def _haunt(self, place: str) -> str:
        """A second place for the same story, never the first one again."""
        for stream in range(4, 10):
            haunt = self._own("places", stream)
            if haunt != place:
                return haunt
        return place

    def _relative(self) -> str:
        # Nobody under twenty is dealt a grown son or daughter to mourn or protect.
        pool = RELATIVES if self.age >= 20 else RELATIVES[:-2]
        return pool[(self.slot * 7 + self.rng.randrange(3)) % len(pool)]

    def _mixed(self, table: str) -> bool:
        """Whether this cast tops ``table`` up from the generic one (more likely when
        hotter); decided once per cast, so every NPC of it deals the same deck."""
        if table not in self._mix:
            self._mix[table] = (
                random.Random(f"{self.cast_key}|mix|{table}").random() < self.generic_mix
            )
        return self._mix[table]

    def _pool(self, table: str) -> tuple[Entry, ...]:
        own = self.tables.npc.get(self.genre.id, {}).get(table, ())
        generic = self.tables.npc[GENERIC].get(table, ())
        # A thin table of the genre's is topped up from the generic one (what fits the
        # period), or a cast of 100 would deal its few cards over and over.
        if len(own) < MIN_OWN_ENTRIES or self._mixed(table):
            return (*own, *generic)
        return own

    def _entry(
        self, table: str, position: int | None = None, also: Callable[[Entry], bool] | None = None
    ) -> Drawn:
        """The NPC's card from ``table`` (filled in), the deck's size, and whether the
        card at the NPC's position did not suit it and was replaced."""
        # What the whole cast shares (the period) is taken out of the deck before
        # dealing, so every NPC deals one deck and no two share a card below its
        # size; what differs per NPC is left to the deal's own replacement.
        level = self.setting.level
        pool = tuple(
            e for e in self._pool(table) if e.fits_level(level) and (also is None or also(e))
        )
        where = self.slot if position is None else position
        key = f"{self.cast_key}|{table}"
        order = self.tables.deck_order
        dealt = deal(key, pool, where, self.who.fits, order)
        if dealt[0] is None:  # nothing fits this NPC: the generic table's cards for the period
            generic = self.tables.npc[GENERIC].get(table, ())
            fallback = deal(key, generic, where, _level_fit(level), order)
            dealt = fallback
        card, size = dealt
        replaced = card is not deal(key, pool, where, order=order)[0]
        text = self._articled(card.text.format_map(self.values)) if card else ""
        return Drawn(text, max(size, 1), replaced)

    def _articled(self, text: str) -> str:
        """The right article before the NPC's trade ("works as an innkeeper"), and
        "the" for a person the world's text names (there is one parish priest)."""
        title = self.occupation_title
        if not title or title not in text:
            return text
        wanted = "the" if self.person else article(title).split()[0]
        return re.sub(rf"\ban? (?={re.escape(title)}\b)", f"{wanted} ", text)

    def _table(self, table: str, position: int | None = None) -> str:
        return self._entry(table, position).text

    def _pair(
        self,
        first: str,
        second: str,
        shift: int = 0,
        also: Callable[[Entry], bool] | None = None,
        attempt: int = 0,
    ) -> tuple[str, str]:
        """Two parts of one sentence, dealt so that no two slots share both;
        ``attempt`` > 0 composes another pair for a sentence already used."""
        slot = self.slot + shift + attempt // RECOMPOSE_ROUND
        one = self._entry(first, slot)
        position = composed_position(slot, one.size)
        if one.replaced:
            # The first part is another slot's card: move the second part off that
            # slot's too, or the two NPCs would share the whole sentence.
            position += 1 + (slot * REPLACED_STRIDE) % one.size
        return one.text, self._entry(second, position + attempt, also).text

    def _unique(self, compose: Callable[[int], str]) -> str:
        """The first composition no NPC before this one (nor this one) has used."""
        text = compose(0)
        for attempt in range(1, RECOMPOSE_TRIES + 1):
            if self.used.isdisjoint(self._keys(text)):
                break
            text = compose(attempt)
        keys = self._keys(text)
        self.used |= keys
        self.keys |= keys
        return text

    def _keys(self, text: str) -> set[str]:
        return {sentence_key(part, self.name) for part in sentences(text)}

    def _avoid(self, inputs: Mapping[str, Any]) -> tuple[str, ...]:
        """Names the cast's own must not take: the designer's and the library's, and
        (nobody else is given it) the name of any person the world's text names."""
        return (*inputs.get("avoid_names", ()), *(p.bare for p in self.setting.people))

    def _name(self, inputs: Mapping[str, Any]) -> tuple[str, str, str]:
        given_name = inputs.get("name")
        if given_name:
            given = given_name.split()[0]
            return given_name, given, infer_gender(self.tables, given, self.rng)
        if self.person is not None:
            person = self.person
            gender = person.gender or infer_gender(self.tables, person.given, self.rng)
            return person.name, person.given, gender
        slot = int(inputs.get("slot", 0))
        # Compute names in blocks so a cast of n NPCs does not redo the draw n times.
        block = 32 * (slot // 32 + 1)
        names = cast_names(
            self.tables,
            self.setting.cultures,
            self.cast_key,
            self._avoid(inputs),
            block,
        )
        return names[slot]

    def _other_name(self, avoid: tuple[str, ...]) -> str:
        """Someone the NPC's story names who is nobody of this cast (a cast's
        NPC must not be the one a neighbour's story has drowned)."""
        cultures = [self.tables.cultures[c] for c in self.setting.cultures]
        culture = self.rng.choice(cultures or list(self.tables.cultures.values()))
        cast = cast_names(self.tables, self.setting.cultures, self.cast_key, avoid, CAST_NAMES)
        taken = {
            self.given,
            *(given for _, given, _ in cast),
            *(p.given for p in self.setting.people),
            *(name.split()[0] for name in avoid if name.split()),
        }
        gender = pick_gender(self.rng)
        pool = [name for name in given_pool(culture, gender) if name not in taken]
        if pool:
            return self.rng.choice(pool)
        # Every given name is one of the cast's (a small culture): a full name none has.
        cast_full = {full for full, _, _ in cast} | set(avoid)
        for _ in range(8):
            given = self.rng.choice(given_pool(culture, gender) or (self.given,))
            name = full_name(culture, given, gender, self.rng)
            if name not in cast_full and given != self.given:
                return name
        return "an old friend"

    def _occupation(self) -> Occupation:
        """The world's own occupations first (up to about half the cast), then the genre's."""
        level = self.setting.level
        own = self.tables.occupations.get(self.genre.id, ())
        if not own or self._mixed("occupations"):
            own = (*own, *self.tables.occupations.get(GENERIC, ()))
        stock = [o for o in own if o.fits_level(level)]
        mined = list(self.setting.occupations)
        # Each occupation the world names is dealt a few times, never most of the cast.
        copies = max(1, min(3, len(stock) // max(len(mined), 1)))
        pool = [*(mined * copies), *stock] or list(self.tables.occupations[GENERIC])

        def open_to(occupation: Occupation) -> bool:
            return _titled(occupation, self.gender) is not None

        chosen = deal(
            f"{self.cast_key}|occupations", pool, self.slot, open_to, self.tables.deck_order
        )[0]
        return chosen or pool[0]

    def traits(self) -> list[str]:
        """Required traits first, then random ones that clash with none chosen,
        with at least one strength and one flaw when there is room."""
        data = self.tables.personalities
        chosen = list(dict.fromkeys(self.required_traits))
        target = max(len(chosen), self.rng.randint(3, 5))
        archetypes = [a for a in data.archetypes if not data.conflicts([*chosen, *a.traits])]
        if archetypes and self.rng.random() < 0.3:
            for trait in self.rng.choice(archetypes).traits:
                if len(chosen) < target and trait not in chosen:
                    chosen.append(trait)

        clashes = data.clashes

        def allowed(trait: str) -> bool:
            # Clashes are mutual, so a trait fits exactly when none of its clashes is chosen
            # (a full conflicts() scan per candidate cost more than the rest of the NPC).
            return trait not in chosen and clashes.get(trait, NO_CLASHES).isdisjoint(chosen)

        names = sorted(data.traits)
        for polarity in ("positive", "negative"):
            if len(chosen) < target and not any(
                data.traits.get(t) and data.traits[t].polarity == polarity for t in chosen
            ):
                pool = [t for t in names if data.traits[t].polarity == polarity and allowed(t)]
                if pool:
                    chosen.append(self.rng.choice(pool))
        while len(chosen) < target:
            pool = [t for t in names if allowed(t)]
            if not pool:
                break
            chosen.append(self.rng.choice(pool))
        return chosen

    def _turn(self, options: Sequence[str], first_size: int, shift: int = 0) -> str:
        """One of several ways to say a sentence's frame. NPCs dealt the same first
        part are a deck apart (k, k + n), and a replaced card lands anywhere, so
        the choice turns with both the slot and the round."""
        slot = self.slot + shift
        return options[(3 * slot + slot // max(first_size, 1)) % len(options)]

    def appearance(self) -> str:
        builds = self._entry("builds").size
        features = self._entry("features").size
        age = self._turn(AGES, builds).format(age=self.age)

        def looks(attempt: int) -> str:
            build, hair = self._pair("builds", "hair", attempt=attempt)
            # A third part turns at twice the pace of the second, so NPCs sharing a
            # build and hair still differ in the eyes.
            eyes = self._table("eyes", _turning(self.slot, builds, 2) + 1 + attempt)
            return _sentence(f"{_clause(build)}, {age}, with {_clause(hair)} and {_clause(eyes)}")

        def dress(attempt: int) -> str:
            feature, clothing = self._pair("features", "clothing", 11, attempt=attempt)
            wears = self._turn(WEARS, features, 11)
            return _sentence(f"{self.given} has {_clause(feature)} and {wears} {_clause(clothing)}")

        def habit(attempt: int) -> str:
            quirk, tail = self._pair("quirks", "quirk_tails", 23, attempt=attempt)
            return _sentence(f"{self.given} {_clause(quirk)}, {_clause(tail)}")

        return " ".join(self._unique(part) for part in (looks, dress, habit))

    def backstory(self) -> str:
        # The present ends on a tie to the world's places and factions (its places
        # only, when its factions are implied rather than named).
        named = self.setting.named_factions or not self.setting.places
        regions = bool(self.setting.regions)

        def tie_fits(entry: Entry) -> bool:
            if "{region}" in entry.text:
                return regions
            return named or "{faction}" not in entry.text

        def past(attempt: int) -> str:
            origin, turning = self._pair("origins", "turning_points", attempt=attempt)
            return _sentence(f"{_clause(origin)}, {_clause(turning)}")

        # About one NPC in three is tied to a named person of the world, when it has any;
        # in a one-line setting, one whose trade and past say nothing of the place it
        # names is tied to that place (every NPC of a lighthouse island is of it).
        ties = "person_ties" if self.values["person"] and self.slot % 3 == 1 else "ties"
        home = self._home_words()
        if ties == "ties" and home:
            said = f"{self.occupation_title} {past(0)}".lower()
            if not any(word in said for word in home):
                ties = "home_ties"

        def present(attempt: int) -> str:
            now, tie = self._pair("present", ties, 5, tie_fits, attempt)
            return _sentence(f"{_clause(now)}; {_clause(tie)}")

        return " ".join(self._unique(part) for part in (past, present))

    def _home_words(self) -> tuple[str, ...]:
        """The words of what a one-line setting is set in ("lighthouse", "hebrides")."""
        words = {
            word
            for home in self.setting.home
            for word in re.findall(r"[a-z][a-z'’-]{3,}", home.lower())
            if word != "the"
        }
        return tuple(sorted(words))

    def motivation(self) -> str:
        wants = self._turn(WANTS, self._entry("goals").size, 31)

        def compose(attempt: int) -> str:
            goal, reason = self._pair("goals", "goal_reasons", 31, attempt=attempt)
            return _sentence(f"{self.given} {wants} {_clause(goal)}, {_clause(reason)}")

        return self._unique(compose)

    def secret(self) -> str:
        opening = self._turn(TRUTHS, self._entry("secrets").size, 41)

        def compose(attempt: int) -> str:
            secret, stake = self._pair("secrets", "secret_stakes", 41, attempt=attempt)
            joint = ", " if stake.startswith(("and ", "which ", "though ")) else "; "
            return _sentence(f"{opening}{self.given} {_clause(secret)}{joint}{_clause(stake)}")

        return self._unique(compose)

    def story_keys(self) -> frozenset[str]:
        """The sentence keys of the NPC's story fields, written as ``draft`` writes them."""
        self.appearance()
        self.backstory()
        self.motivation()
        self.secret()
        return frozenset(self.keys)

    def speech_style(self, traits: Sequence[str]) -> str:
        """Built from the NPC's first traits, class and trade, not picked whole."""
        speech = self.tables.speech
        parts: list[str] = []
        for trait in traits[:2]:
            options = speech.get("traits", {}).get(trait)
            if options:
                parts.append(options[(self.slot + len(parts)) % len(options)])
        known = self.tables.personalities.traits.get(traits[0]) if traits else None
        if not parts and known is not None:  # the first trait's leaning, when none is listed
            options = speech.get("polarity", {}).get(known.polarity, ())
            if options:
                parts.append(options[self.slot % len(options)])
        by_class = speech.get("social", {}).get(self.social, ())
        if by_class:
            parts.append(by_class[(self.slot // 3) % len(by_class)])
        for tag in sorted(self.who.tags):
            options = speech.get("tags", {}).get(tag)
            if options:
                parts.append(options[self.slot % len(options)])
                break
        text = ", ".join(dict.fromkeys(p.format_map(self.values) for p in parts))
        return _sentence(text) if text else _sentence(self._table("speech_styles"))

    def sample_lines(self) -> list[str]:
        greeting, aside = self._pair("greetings", "asides", 3)
        opener, remark = self._pair("interjections", "remarks", 17)
        lines = [f"{greeting} {aside}", f"{opener} {remark}"]
        if self.rng.random() < 0.6:
            opener, hint = self._pair("interjections", "secret_hints", 29)
            lines.append(f"{opener} {hint}")
        if self.rng.random() < 0.3:
            # A second remark is dealt from the positions after the whole cast's first ones.
            opener, remark = self._pair("interjections", "remarks", 17 + SECOND_REMARK)
            lines.append(f"{opener} {remark}")
        unique = list(dict.fromkeys(" ".join(line.split()) for line in lines if line.strip()))
        return unique[:4]

    def draft(self) -> dict[str, Any]:
        traits = self.traits()
        return {
            "name": self.name,
            "age": self.age,
            "gender": self.gender,
            "occupation": self.occupation_title,
            "appearance": self.appearance(),
            "personality_traits": traits,
            "backstory": self.backstory(),
            "motivation": self.motivation(),
            "secret": self.secret(),
            "speech_style": self.speech_style(traits),
            "sample_lines": self.sample_lines(),
        }


class ProceduralBackend(Backend):
    """Seeded NPCs from tables: instant, offline, reproducible."""

    kind = "local"
    supports_schema = True
    can_stream = True  # chat replies from the NPC's own profile
    # Drafting an NPC takes less time than reading it back from disk.
    cache_responses = False

    def __init__(self, settings: Settings, context: BackendContext | None = None) -> None:
        if context is None:  # standalone use (scripts, tests): own asset caches
            from app.assets import Assets

            self._assets = Assets(settings.assets_dir)
        else:
            self._assets = context.assets
        self._dialogue = DialogueWriter(self._assets)

    @property
    def name(self) -> str:
        return f"procedural:{VERSION}"

    @property
    def tables(self) -> Tables:
        """The tables as the files are now (rebuilt only when one changed)."""
        return self._assets.tables()

    async def complete_json(self, request: JSONRequest) -> JSONReply:
        started = time.perf_counter()
        if request.task == NPC_TASK:
            data: dict[str, Any] = self._drafter(request).draft()
        elif request.task == FIELD_TASK:
            field = str(request.inputs["field"])
            data = {field: self._drafter(request).draft()[field]}
        elif request.task == RELATIONSHIPS_TASK:
            data = {"relationships": draft_relationships(request.inputs["cast"], request.seed)}
        elif request.task == MEMORY_TASK:
            data = extract_memories(request.inputs)
        elif request.task == REFLECTION_TASK:
            data = reflect(request.inputs)
        elif request.task == DIALOGUE_TASK:
            data = self._dialogue.write(self.tables, request.inputs, request.seed)
        else:
            raise BackendCapabilityError(self.name, f"cannot do the task {request.task!r}")
        elapsed_ms = (time.perf_counter() - started) * 1000
        # Drafting never waits, so without this a whole cast would be drafted in
        # one go before anyone could be shown the first NPC.
        await asyncio.sleep(0)
        return JSONReply(
            raw=orjson.dumps(data).decode(), data=data, stats={"backend_ms": elapsed_ms}
        )

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[str]:
        """The NPC's reply, built from ``request.inputs`` (its profile, its
        memories, the message), streamed a few words at a time."""
        if "npc" not in request.inputs:
            raise BackendCapabilityError(
                self.name, "chats only with an NPC: the request carries no NPC profile"
            )
        for piece in chunks(chat_reply(request.inputs, request.seed)):
            yield piece
            await asyncio.sleep(0)  # a long reply does not hold the event loop

    def _drafter(self, request: JSONRequest) -> NPCDrafter:
        tables = self.tables
        used = self._used_before(tables, request)
        return NPCDrafter(tables, request.inputs, request.seed, request.temperature, used)

    def _used_before(self, tables: Tables, request: JSONRequest) -> frozenset[str]:
        """The sentences the cast's earlier slots use (all of them, for a named NPC)."""
        inputs = request.inputs
        if "slot" not in inputs:
            return frozenset()
        slot = int(inputs["slot"])
        upto = slot if slot >= 0 else NAMED_AVOIDS
        if upto <= 0:
            return frozenset()
        # What every slot's request of one cast shares, and nothing else.
        cast = {key: inputs.get(key) for key in ("world", "cast_seed", "avoid_names")}
        temperature = request.temperature
        key = (_fingerprint(cast), temperature)

        def draft(slot: int, used: frozenset[str]) -> frozenset[str]:
            inputs = {**cast, "slot": slot}
            return NPCDrafter(tables, inputs, 0, temperature, used).story_keys()

        record: CastRecord = tables.casts_memo.get(key, lambda: CastRecord(draft))
        return record.used_before(upto)
