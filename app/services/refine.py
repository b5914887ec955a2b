"""Refine NPCs: regenerate one field, regenerate with locked fields, relationships."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from app.backends.base import JSONReply
from app.backends.guard import GuardedBackend
from app.errors import InputError
from app.models import NPC, PROFILE_FIELDS, NPCProfile, Relationship, World
from app.personality import PersonalityData
from app.services.prompts import field_request, regenerate_request, relationships_request
from app.services.ties import merge_ties
from app.services.validated import complete_validated

if TYPE_CHECKING:
    from app.backends.pool import BackendPool
    from app.services.library import Library
    from app.services.worlds import WorldService


def _new_seed(seed: int | None) -> int:
    return seed if seed is not None else random.SystemRandom().randrange(2**31)


class Refiner:
    """Backend-driven edits of NPCs already made."""

    def __init__(self, guarded: GuardedBackend, personalities: PersonalityData) -> None:
        self.guarded = guarded
        self.personalities = personalities

    def _checked(self, values: dict[str, object]) -> NPCProfile:
        profile = NPCProfile.model_validate(values)
        # A contradiction is a reason for the repair call, like any invalid field.
        conflicts = self.personalities.conflicts(profile.personality_traits)
        if conflicts:
            first, second = conflicts[0]
            raise ValueError(f"personality_traits: '{first}' and '{second}' contradict each other")
        return profile

    async def regenerate_field(
        self,
        npc: NPC,
        field: str,
        world: World,
        *,
        seed: int | None = None,
        temperature: float,
    ) -> NPC:
        """A new value for one field; every other field stays as it is."""
        if field not in PROFILE_FIELDS:
            raise InputError(
                f"{field!r} cannot be regenerated; pick one of {', '.join(PROFILE_FIELDS)}."
            )
        seed = _new_seed(seed)
        request = field_request(npc, field, world, seed=seed, temperature=temperature)
        base = npc.model_dump(include=set(PROFILE_FIELDS))
        if base["age"] is None:  # an imported card stated none; only `field` is kept below
            base["age"] = 0

        def parse(reply: JSONReply) -> NPCProfile:
            if not isinstance(reply.data, dict) or field not in reply.data:
                raise ValueError(f"the reply must be an object with the key {field!r}")
            return self._checked({**base, field: reply.data[field]})

        profile, _ = await complete_validated(self.guarded, request, parse, what=field)
        return npc.model_copy(update={field: getattr(profile, field), "backend": self.guarded.name})

    async def regenerate_npc(
        self,
        npc: NPC,
        locked: Collection[str],
        world: World,
        *,
        seed: int | None = None,
        temperature: float,
    ) -> NPC:
        """A new take on the NPC that keeps the locked fields exactly (same id)."""
        unknown = set(locked) - set(PROFILE_FIELDS)
        if unknown:
            raise InputError(f"Cannot lock {', '.join(sorted(unknown))}: not NPC fields.")
        locked_fields = tuple(field for field in PROFILE_FIELDS if field in locked)
        seed = _new_seed(seed)
        request = regenerate_request(npc, locked_fields, world, seed=seed, temperature=temperature)
        # A locked unknown age (an imported card stated none) stays unknown.
        kept = {
            k: v for k, v in npc.model_dump(include=set(locked_fields)).items() if v is not None
        }

        def parse(reply: JSONReply) -> NPCProfile:
            if not isinstance(reply.data, dict):
                raise ValueError("the reply must be a JSON object")
            # The locked values win over whatever the model wrote for them.
            return self._checked({**reply.data, **kept})

        profile, repaired = await complete_validated(self.guarded, request, parse, what="character")
        return npc.model_copy(
            update={
                **profile.model_dump(),
                **({"age": None} if "age" in locked_fields and npc.age is None else {}),
                "seed": seed,
                "backend": self.guarded.name,
                "repaired": repaired,
                "cached": False,
            }
        )

    async def relationships(
        self,
        npcs: Sequence[NPC],
        world: World,
        *,
        seed: int | None = None,
        temperature: float,
    ) -> list[NPC]:
        """The cast with new relationships among its members (others are kept)."""
        if len(npcs) < 2:
            raise InputError("Relationships need at least two NPCs of the same world.")
        seed = _new_seed(seed)
        polarities = {
            npc.id: [
                self.personalities.traits[t].polarity
                for t in npc.personality_traits
                if t in self.personalities.traits
            ]
            for npc in npcs
        }
        request = relationships_request(
            list(npcs), polarities, world, seed=seed, temperature=temperature
        )
        by_name = {npc.name.lower(): npc for npc in npcs}

        def parse(reply: JSONReply) -> dict[str, list[Relationship]]:
            items = reply.data.get("relationships") if isinstance(reply.data, dict) else None
            if not isinstance(items, list):
                raise ValueError("the reply must be an object with a 'relationships' list")
            ties: dict[str, list[Relationship]] = {}
            for item in items:
                source = by_name.get(str(item.get("source", "")).lower())
                target = by_name.get(str(item.get("target", "")).lower())
                if source is None or target is None or source.id == target.id:
                    continue  # a name not in the cast, or a tie to oneself
                ties.setdefault(source.id, []).append(
                    Relationship(
                        target_id=target.id,
                        target_name=target.name,
                        type=item.get("type", "acquaintance"),
                        weight=item.get("weight", 0.0),
                        secret=bool(item.get("secret", False)),
                        description=str(item.get("description", ""))[:400],
                    )
                )
            if not ties:
                raise ValueError("no relationship named two characters of the list")
            return ties

        ties, _ = await complete_validated(self.guarded, request, parse, what="relationship list")
        return merge_ties(npcs, ties)


class RefineService:
    """The library's edit-by-backend use cases: each reads the NPC and its world,
    asks the backend, and saves the result."""

    def __init__(
        self,
        backends: BackendPool,
        library: Library,
        worlds: WorldService,
        personalities: Callable[[], PersonalityData],
        *,
        default_temperature: float,
    ) -> None:
        self.backends = backends
        self.library = library
        self.worlds = worlds
        self.personalities = personalities
        self.default_temperature = default_temperature

    def seen_by(self, library: Library) -> RefineService:
        """The same service working on one viewer's view of the library."""
        return RefineService(
            self.backends,
            library,
            self.worlds,
            self.personalities,
            default_temperature=self.default_temperature,
        )

    def refiner(self, backend: str | None = None) -> Refiner:
        return Refiner(self.backends.get(backend), self.personalities())

    async def _context(self, npc_id: str, backend: str | None) -> tuple[NPC, Refiner, World]:
        """The NPC, a refiner on the chosen backend, and the NPC's world."""
        npc = await self.library.get(npc_id)
        refiner = self.refiner(backend)
        world = await asyncio.to_thread(self.worlds.world_for, npc.world)
        return npc, refiner, world

    def _temperature(self, temperature: float | None) -> float:
        return self.default_temperature if temperature is None else float(temperature)

    async def regenerate_field(
        self,
        npc_id: str,
        field: str,
        *,
        backend: str | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> NPC:
        """A new value for one field, the rest given to the backend as context; saved."""
        npc, refiner, world = await self._context(npc_id, backend)
        new = await refiner.regenerate_field(
            npc, field, world, seed=seed, temperature=self._temperature(temperature)
        )
        return await self.library.replace(new)

    async def regenerate_npc(
        self,
        npc_id: str,
        locked: Collection[str],
        *,
        backend: str | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> NPC:
        """A new take on the NPC keeping the locked fields (same id); saved."""
        npc, refiner, world = await self._context(npc_id, backend)
        new = await refiner.regenerate_npc(
            npc, locked, world, seed=seed, temperature=self._temperature(temperature)
        )
        return await self.library.replace(new)

    async def relationships(
        self,
        npc_id: str,
        *,
        backend: str | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> list[NPC]:
        """New ties among the NPCs of this NPC's world; saved."""
        cast = await self.library.world_cast(npc_id)
        refiner = self.refiner(backend)
        world = await asyncio.to_thread(self.worlds.world_for, cast[0].world)
        related = await refiner.relationships(
            cast, world, seed=seed, temperature=self._temperature(temperature)
        )
        await self.library.save(related)
        return related
