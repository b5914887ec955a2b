"""The NPC and world data models, and the JSON schema sent to backends.

``NPCProfile`` holds what a backend writes; ``NPC`` adds what NPC Forge knows
about where it came from. ``NPC_SCHEMA_VERSION`` goes into cache keys: bump it
whenever a field of ``NPCProfile`` changes meaning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

NPC_SCHEMA_VERSION = 1
# Task names backends see: write one NPC profile, rewrite one field of an NPC,
# connect the NPCs of a cast.
NPC_TASK = "npc_profile"
FIELD_TASK = "npc_field"
RELATIONSHIPS_TASK = "relationships"
# Long-term memory: pick what is worth keeping from a batch of chat messages (with
# an importance 1-10), and write higher-level reflections over recent memories.
MEMORY_TASK = "memory_extract"
REFLECTION_TASK = "memory_reflect"
# Dialogue: lines for several situations (each with its variants) of one NPC.
DIALOGUE_TASK = "dialogue_lines"

# Bounds a game designer would not hit and a broken model easily would.
_SHORT = 120
_LONG = 4000


class NPCProfile(BaseModel):
    """The character itself, as a backend writes it."""

    # Extra keys a model adds are dropped rather than failing the whole NPC.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=_SHORT, description="Full name, fitting the world")
    age: int = Field(ge=0, le=100_000, description="Age in years")
    gender: str = Field(
        min_length=1, max_length=60, description="Gender as the character states it"
    )
    occupation: str = Field(
        min_length=1, max_length=_SHORT, description="Occupation or role in the world"
    )
    appearance: str = Field(
        min_length=1, max_length=_LONG, description="What others see: 1-3 sentences"
    )
    personality_traits: list[str] = Field(
        min_length=1, max_length=8, description="3-5 single-word personality traits"
    )
    backstory: str = Field(
        min_length=1, max_length=_LONG, description="Where they come from: 2-5 sentences"
    )
    motivation: str = Field(
        min_length=1, max_length=_LONG, description="What they want now and why"
    )
    secret: str = Field(min_length=1, max_length=_LONG, description="Something they hide")
    speech_style: str = Field(min_length=1, max_length=_SHORT * 4, description="How they talk")
    sample_lines: list[str] = Field(
        min_length=2, max_length=4, description="2-4 things they might say, in their own voice"
    )

    @field_validator("personality_traits", "sample_lines")
    @classmethod
    def _no_blank_items(cls, items: list[str]) -> list[str]:
        cleaned = [item.strip() for item in items]
        if any(not item for item in cleaned):
            raise ValueError("items must not be empty")
        return cleaned

    @field_validator("personality_traits")
    @classmethod
    def _traits_lowercase(cls, traits: list[str]) -> list[str]:
        return [trait.lower() for trait in traits]


class StageTimings(BaseModel):
    """Where one NPC's time went, in milliseconds."""

    queue_ms: float = 0.0
    backend_ms: float = 0.0
    parse_ms: float = 0.0
    repair_ms: float = 0.0
    total_ms: float = 0.0


RELATIONSHIP_TYPES = (
    "ally", "rival", "family", "mentor", "student", "lover", "enemy", "friend",
    "employer", "employee", "debtor", "creditor", "acquaintance",
)  # fmt: skip


class Relationship(BaseModel):
    """A directed tie from one NPC to another."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    target_id: str = Field(min_length=1, description="id of the other NPC")
    target_name: str = Field(min_length=1, max_length=_SHORT)
    type: str = Field(min_length=1, max_length=40, description="ally, rival, family, ...")
    weight: float = Field(ge=-1.0, le=1.0, description="-1 hostile .. 1 devoted")
    secret: bool = Field(default=False, description="True when others do not know of it")
    description: str = Field(default="", max_length=400, description="one line")

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        value = value.lower()
        if value not in RELATIONSHIP_TYPES:
            raise ValueError(
                f"unknown relationship type {value!r}; use one of {', '.join(RELATIONSHIP_TYPES)}"
            )
        return value


def owned_id(npc_id: str, owner: str | None) -> str:
    """An NPC's id for one owner: two users making the same request get two
    NPCs, never one that the second write takes from the first."""
    if not owner:
        return npc_id
    return f"{npc_id}-{hashlib.sha256(owner.encode()).hexdigest()[:8]}"


class NPC(NPCProfile):
    """A generated character with its provenance."""

    # Generated NPCs always have an age (NPCProfile is validated first); a card
    # imported from another tool may not state one, and a guess would show as fact.
    age: int | None = Field(  # type: ignore[assignment]  # widened on purpose, see above
        default=None, ge=0, le=100_000, description="Age in years, if known"
    )
    id: str = Field(description="Stable id: the same request gives the same id")
    world: str = Field(description="Name of the world the NPC belongs to")
    backend: str = Field(description="Backend name, e.g. procedural:v1 or openai:gpt-4o-mini")
    seed: int
    cast_seed: int | None = Field(default=None, description="seed of the cast it came from")
    schema_version: int = NPC_SCHEMA_VERSION
    repaired: bool = Field(default=False, description="True when a repair call fixed the output")
    cached: bool = Field(default=False, description="True when this came from the response cache")
    timing: StageTimings | None = None
    tags: list[str] = Field(default_factory=list, description="free labels for the library")
    relationships: list[Relationship] = Field(default_factory=list)
    # Who made it, when people sign in; None = the team's (made without sign-in).
    owner: str | None = Field(default=None, description="the signed-in user who made it")
    # Shared by its owner: every signed-in user sees and uses it; only the owner changes it.
    shared: bool = Field(default=False, description="shared with the team by its owner")

    def owned_by(self, owner: str | None) -> NPC:
        """This NPC as ``owner``'s: the owner set, its id and its ties' ids made theirs."""
        if not owner:
            return self
        ties = [
            r.model_copy(update={"target_id": owned_id(r.target_id, owner)})
            for r in self.relationships
        ]
        return self.model_copy(
            update={"owner": owner, "id": owned_id(self.id, owner), "relationships": ties}
        )

    def age_text(self, suffix: str = "") -> str:
        """``47`` (plus ``suffix``, e.g. `` years old``), or ``age unknown``."""
        return "age unknown" if self.age is None else f"{self.age}{suffix}"

    def identity(self) -> str:
        """``Maud, baker, 47 years old (female)``, leaving out what is unknown
        (an imported card may not say)."""
        known = [part for part in (self.occupation,) if part != "unknown"]
        known += [] if self.age is None else [self.age_text(" years old")]
        gender = "" if self.gender == "unknown" else f" ({self.gender})"
        return ", ".join([self.name, *known]) + gender


_UNSUPPORTED_SCHEMA_KEYS = frozenset(
    {"title", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems"}
)


def _strip_schema(node: Any, keys: frozenset[str] = _UNSUPPORTED_SCHEMA_KEYS) -> Any:
    if isinstance(node, dict):
        return {k: _strip_schema(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [_strip_schema(item, keys) for item in node]
    return node


def strict_schema(schema: Any) -> Any:
    """``schema`` without what strict structured output rejects (titles, bounds)."""
    return _strip_schema(schema)


@cache
def profile_json_schema() -> dict[str, Any]:
    """The NPCProfile schema in the subset strict structured output accepts.

    Built once; treat it as read-only.

    Length bounds are left out (many servers reject them, and a cut-off
    ``maxLength`` truncates mid-word); pydantic enforces them after parsing.
    """
    return strict_schema(profile_grammar_schema())


@cache
def profile_grammar_schema() -> dict[str, Any]:
    """The NPCProfile schema with the bounds a grammar enforces as it generates.

    Built once; treat it as read-only. A server that constrains generation by
    the schema (llama.cpp) cannot then write an empty name, no sample lines or
    blank prose. ``maxLength`` stays out: a grammar cuts a string mid-word at it.
    """
    schema = _strip_schema(NPCProfile.model_json_schema(), frozenset({"title", "maxLength"}))
    schema["additionalProperties"] = False
    schema["required"] = list(schema["properties"])
    properties = schema["properties"]
    # Blank items fail validation (_no_blank_items); the prompt asks for 3-5 traits.
    for name in ("personality_traits", "sample_lines"):
        properties[name]["items"] = {"type": "string", "minLength": 1}
    properties["personality_traits"].update(minItems=3, maxItems=5)
    return schema


class World(BaseModel):
    """A setting NPCs belong to, in the world file format."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(default="Custom setting", min_length=1, max_length=200)
    era: str = Field(min_length=1, max_length=500)
    time_period: str = Field(min_length=1, max_length=500)
    detail: str | dict[str, str] = ""
    guardrails: dict[str, str] = Field(default_factory=dict)

    def detail_text(self) -> str:
        """The detail as plain text, sections as ``Section: text`` paragraphs."""
        if isinstance(self.detail, str):
            return self.detail
        return "\n".join(
            f"{section.replace('_', ' ').capitalize()}: {text}"
            for section, text in self.detail.items()
        )

    def full_text(self) -> str:
        """Everything the world says, for keyword matching and prompts."""
        return f"{self.era}\n{self.time_period}\n{self.detail_text()}"

    def key(self) -> str:
        """A short digest of everything the world says (part of NPC ids)."""
        return hashlib.blake2b(self.model_dump_json().encode(), digest_size=8).hexdigest()


# The fields a backend writes, in the order prompts and editors show them.
PROFILE_FIELDS: tuple[str, ...] = tuple(NPCProfile.model_fields)


@dataclass(frozen=True, slots=True)
class NPCSpec:
    """One NPC to generate. Equal specs give equal NPCs, so they run once."""

    world: World = field(compare=False, hash=False)
    world_key: str
    name: str | None
    traits: tuple[str, ...]
    slot: int  # ordinal among the unnamed NPCs of the cast; -1 when named
    cast_seed: int
    temperature: float
    avoid_names: tuple[str, ...]

    @property
    def seed(self) -> int:
        """Per-NPC seed: stable for the same cast seed and the same name or slot."""
        who = self.name.lower() if self.name else f"#{self.slot}"
        digest = hashlib.blake2b(f"{self.cast_seed}|{who}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") & 0x7FFFFFFF

    @property
    def label(self) -> str:
        """How the UI names the position while it is being generated."""
        return self.name or "New NPC"

    def npc_id(self, backend_name: str) -> str:
        key = "|".join(
            [
                backend_name,
                str(NPC_SCHEMA_VERSION),
                self.world_key,
                self.name or "",
                ",".join(self.traits),
                str(self.slot),
                str(self.cast_seed),
                f"{self.temperature:.3f}",
            ]
        )
        return "npc-" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
