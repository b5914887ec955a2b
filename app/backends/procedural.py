"""The procedural backend: a seeded generator over the tables in assets/.

Deterministic for a seed, instant and offline. It reads the world (era,
period and detail keywords pick a genre, and with it names, occupations and
details), never gives one NPC contradicting traits, and gives every unnamed
NPC of a cast a name no other NPC of that cast has. It is the default when no
LLM is configured and the backbone of the tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from app.backends.base import Backend, ChatRequest, JSONReply, JSONRequest
from app.backends.procedural_chat import chat_reply, chunks
from app.backends.procedural_memory import extract_memories, reflect
from app.backends.procedural_relationships import draft_relationships
from app.backends.procedural_tables import GENERIC, Culture, Genre, Tables
from app.errors import BackendCapabilityError
from app.models import (
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
GENDERS: tuple[str, ...] = ("male", "female", "non-binary")
GENDER_WEIGHTS: tuple[float, ...] = (0.47, 0.47, 0.06)
RELATIVES = ("sister", "brother", "mother", "father", "cousin", "uncle", "aunt", "daughter", "son")
# Chance of drawing from the generic tables instead of the genre's, at temperature 1.
GENERIC_MIX = 0.12


class _Blanks(dict[str, str]):
    """format_map values; an unknown placeholder stays as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


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


def _pick_gender(rng: random.Random) -> str:
    return rng.choices(GENDERS, GENDER_WEIGHTS)[0]


def _given_pool(culture: Culture, gender: str) -> tuple[str, ...]:
    key = {"male": "male", "female": "female"}.get(gender, "neutral")
    return culture.given[key] or culture.given["neutral"] or culture.given["male"]


def _full_name(culture: Culture, given: str, gender: str, rng: random.Random) -> str:
    family = ""
    if culture.family:
        index = rng.randrange(len(culture.family))
        feminine = gender == "female" and len(culture.family_female) == len(culture.family)
        family = (culture.family_female if feminine else culture.family)[index]
    epithet = rng.choice(culture.epithets) if culture.epithets else ""
    return " ".join(culture.format.format(given=given, family=family, epithet=epithet).split())


def _cast_names(
    tables: Tables, genre_id: str, cast_key: str, avoid: tuple[str, ...], count: int
) -> tuple[tuple[str, str, str], ...]:
    """``count`` distinct (full name, given name, gender) for the unnamed NPCs of a cast.

    Drawn from one RNG for the whole cast, so slot k gets the same name no
    matter in which order the NPCs are generated; remembered with the tables.
    """
    key = (genre_id, cast_key, avoid, count)
    built: tuple[tuple[str, str, str], ...] = tables.names_memo.get(
        key, lambda: _draw_cast_names(tables, genre_id, cast_key, avoid, count)
    )
    return built


def _draw_cast_names(
    tables: Tables, genre_id: str, cast_key: str, avoid: tuple[str, ...], count: int
) -> tuple[tuple[str, str, str], ...]:
    rng = random.Random(f"names|{cast_key}")
    genre = tables.genres.get(genre_id) or tables.genres[GENERIC]
    cultures = [tables.cultures[c] for c in genre.cultures if c in tables.cultures] or list(
        tables.cultures.values()
    )
    taken_full = {name.lower() for name in avoid}
    taken_given = {name.split()[0].lower() for name in avoid if name.split()}
    names: list[tuple[str, str, str]] = []
    attempts = 0
    while len(names) < count:
        attempts += 1
        culture = rng.choice(cultures)
        gender = _pick_gender(rng)
        given = rng.choice(_given_pool(culture, gender))
        # Prefer distinct first names too; accept a repeat only when the pool runs dry.
        if given.lower() in taken_given and attempts < 40 * count:
            continue
        full = _full_name(culture, given, gender, rng)
        if full.lower() in taken_full:
            if attempts > 400 * count:  # every combination used: number them
                full = f"{full} {len(names) + 2}"
            else:
                continue
        taken_full.add(full.lower())
        taken_given.add(given.lower())
        names.append((full, given, gender))
    return tuple(names)


def _infer_gender(tables: Tables, given: str, rng: random.Random) -> str:
    lowered = given.lower()
    for culture in tables.cultures.values():
        for gender in ("male", "female"):
            if any(name.lower() == lowered for name in culture.given[gender]):
                return gender
    return _pick_gender(rng)


class NPCDrafter:
    """Draws one NPC profile; one instance per NPC, holding its RNG and choices."""

    def __init__(
        self, tables: Tables, inputs: Mapping[str, Any], seed: int, temperature: float
    ) -> None:
        self.tables = tables
        self.world = World.model_validate(inputs["world"])
        world_id = _fingerprint(inputs["world"])
        self.genre: Genre = tables.genres.get(self._detect(), tables.genres[GENERIC])
        self.rng = random.Random(f"{seed}|{world_id}|{VERSION}")
        self.generic_mix = GENERIC_MIX * max(temperature, 0.0)
        self.required_traits = [t.lower() for t in inputs.get("traits", ())]
        self.name, self.given, self.gender = self._name(inputs, world_id)
        self.occupation_title, self.age = self._occupation()
        # Fields the designer locked: later text must agree with them.
        locked: Mapping[str, Any] = inputs.get("locked") or {}
        if locked.get("name"):
            self.name = str(locked["name"])
            self.given = self.name.split()[0]
        self.gender = str(locked.get("gender") or self.gender)
        self.occupation_title = str(locked.get("occupation") or self.occupation_title)
        self.age = int(locked.get("age") or self.age)
        if locked.get("personality_traits"):
            self.required_traits = [str(t).lower() for t in locked["personality_traits"]]
        # One place, faction, item and acquaintance per NPC, so the story hangs together.
        self.values = _Blanks(
            name=self.name,
            given=self.given,
            occupation=self.occupation_title,
            place=self._from_genre("places"),
            faction=self._from_genre("factions"),
            item=self._from_genre("items"),
            other=self._other_name(),
            relative=self.rng.choice(RELATIVES),
        )

    def _detect(self) -> str:
        world = self.world
        return self.tables.detect_genre(
            world.detail_text(), f"{world.name} {world.era} {world.time_period}"
        )

    def _from_genre(self, field: str) -> str:
        own: Sequence[str] = getattr(self.genre, field)
        generic: Sequence[str] = getattr(self.tables.genres[GENERIC], field)
        pool = generic if (not own or self.rng.random() < self.generic_mix) else own
        return self.rng.choice(pool) if pool else ""

    def _table(self, table: str) -> str:
        own = self.tables.npc.get(self.genre.id, {}).get(table, ())
        generic = self.tables.npc[GENERIC].get(table, ())
        pool = generic if (not own or self.rng.random() < self.generic_mix) else own
        return self.rng.choice(pool).format_map(self.values) if pool else ""

    def _name(self, inputs: Mapping[str, Any], world_id: str) -> tuple[str, str, str]:
        given_name = inputs.get("name")
        if given_name:
            given = given_name.split()[0]
            return given_name, given, _infer_gender(self.tables, given, self.rng)
        slot = int(inputs.get("slot", 0))
        # Compute names in blocks so a cast of n NPCs does not redo the draw n times.
        block = 32 * (slot // 32 + 1)
        cast_key = f"{inputs.get('cast_seed', 0)}|{world_id}|{VERSION}"
        names = _cast_names(
            self.tables, self.genre.id, cast_key, tuple(inputs.get("avoid_names", ())), block
        )
        return names[slot]

    def _other_name(self) -> str:
        cultures = [
            self.tables.cultures[c] for c in self.genre.cultures if c in self.tables.cultures
        ]
        culture = self.rng.choice(cultures or list(self.tables.cultures.values()))
        pool = [name for name in _given_pool(culture, _pick_gender(self.rng)) if name != self.given]
        return self.rng.choice(pool) if pool else "an old friend"

    def _occupation(self) -> tuple[str, int]:
        own = self.tables.occupations.get(self.genre.id, ())
        generic = self.tables.occupations.get(GENERIC, ())
        pool = generic if (not own or self.rng.random() < self.generic_mix) else own
        occupation = self.rng.choice(pool)
        return occupation.title, self.rng.randint(
            occupation.age_min, max(occupation.age_min, occupation.age_max)
        )

    def traits(self) -> list[str]:
        """Required traits first, then random ones that contradict none chosen,
        with at least one strength and one flaw when there is room."""
        data = self.tables.personalities
        chosen = list(dict.fromkeys(self.required_traits))
        target = max(len(chosen), self.rng.randint(3, 5))
        archetypes = [a for a in data.archetypes if not data.conflicts([*chosen, *a.traits])]
        if archetypes and self.rng.random() < 0.3:
            for trait in self.rng.choice(archetypes).traits:
                if len(chosen) < target and trait not in chosen:
                    chosen.append(trait)

        def allowed(trait: str) -> bool:
            # Opposites are mutual, so a trait clashes with the chosen ones exactly
            # when its opposite is among them (a full conflicts() scan per candidate
            # cost more than the rest of the NPC).
            return trait not in chosen and data.opposite(trait) not in chosen

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

    def appearance(self) -> str:
        build = _clause(self._table("builds"))
        hair = _clause(self._table("hair"))
        eyes = _clause(self._table("eyes"))
        feature = _clause(self._table("features"))
        clothing = _clause(self._table("clothing"))
        quirk = _clause(self._table("quirks"))
        return " ".join(
            [
                _sentence(f"{build}, {self.age} years old, with {hair} and {eyes}"),
                _sentence(f"{self.given} has {feature} and wears {clothing}"),
                _sentence(f"{self.given} {quirk}"),
            ]
        )

    def backstory(self) -> str:
        origin = _clause(self._table("origins"))
        turning = _clause(self._table("turning_points"))
        present = self._table("present")
        return " ".join([_sentence(f"{origin}, {turning}"), _sentence(present)])

    def sample_lines(self) -> list[str]:
        lines = [self._table("greetings"), self._table("remarks")]
        if self.rng.random() < 0.6:
            lines.append(self._table("secret_hints"))
        if self.rng.random() < 0.3:
            lines.append(self._table("remarks"))
        unique = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
        while len(unique) < 2:
            unique.append(self._table("remarks").strip() or "...")
        return unique[:4]

    def draft(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "age": self.age,
            "gender": self.gender,
            "occupation": self.occupation_title,
            "appearance": self.appearance(),
            "personality_traits": self.traits(),
            "backstory": self.backstory(),
            "motivation": _sentence(f"{self.given} wants {_clause(self._table('goals'))}"),
            "secret": _sentence(f"{self.given} {_clause(self._table('secrets'))}"),
            "speech_style": _sentence(self._table("speech_styles")),
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
        return NPCDrafter(self.tables, request.inputs, request.seed, request.temperature)
