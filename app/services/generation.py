"""Generate a cast of NPCs concurrently, delivering each as it finishes.

Pipeline per NPC: spec -> prompt -> backend (under the guard's limits) ->
validate -> only if invalid, one repair call -> NPC. Identical specs in a
batch are generated once and delivered to every position that asked for them.
One NPC failing never loses the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.backends.base import JSONReply, JSONRequest
from app.backends.guard import GuardedBackend
from app.cache.keys import response_key
from app.cache.response import ResponseCache
from app.errors import InputError, NPCForgeError
from app.metrics import Metrics
from app.models import NPC, NPC_SCHEMA_VERSION, NPCProfile, StageTimings, World
from app.personality import PersonalityData
from app.services.prompts import npc_request
from app.services.validated import complete_validated

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 120
MAX_TRAITS = 8


@dataclass(frozen=True, slots=True)
class CastRequest:
    """What the user asked for; validated by ``plan_cast``."""

    world: World
    count: int
    names: tuple[str, ...] = ()
    traits: tuple[str, ...] = ()
    temperature: float = 0.9
    seed: int | None = None
    # Names already used in this world (the library): the generator avoids them.
    avoid: tuple[str, ...] = ()


# Prompts list at most this many names to avoid; more costs tokens for little.
MAX_AVOID_NAMES = 150


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


@dataclass(slots=True)
class NPCOutcome:
    """One position of the cast: its NPC, or why it failed."""

    index: int
    spec: NPCSpec
    npc: NPC | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.npc is not None


def new_cast_seed() -> int:
    return random.SystemRandom().randrange(2**31)


def world_key(world: World) -> str:
    return hashlib.blake2b(world.model_dump_json().encode(), digest_size=8).hexdigest()


def parse_name_lines(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """``Name`` or ``Name: trait, trait`` per line; blank lines are skipped."""
    entries = []
    for line in text.splitlines():
        name, _, traits = line.partition(":")
        name = " ".join(name.split())
        if not name:
            continue
        entries.append((name, tuple(t.strip().lower() for t in traits.split(",") if t.strip())))
    return entries


def _check_traits(traits: Sequence[str], personalities: PersonalityData, who: str) -> None:
    if len(traits) > MAX_TRAITS:
        raise InputError(f"{who} has {len(traits)} traits; the limit is {MAX_TRAITS}.")
    try:
        personalities.check_compatible(traits)
    except InputError as exc:
        raise InputError(f"{who}: {exc}") from None


def plan_cast(
    request: CastRequest,
    personalities: PersonalityData,
    *,
    max_npcs: int,
    name_traits: Sequence[tuple[str, ...]] = (),
) -> list[NPCSpec]:
    """Validate the request and turn it into one spec per position.

    ``name_traits`` holds extra traits per named NPC (from ``Name: traits`` lines).
    """
    if not 1 <= request.count <= max_npcs:
        raise InputError(
            f"The number of NPCs must be between 1 and {max_npcs}; got {request.count}."
        )
    if len(request.names) > request.count:
        raise InputError(
            f"You gave {len(request.names)} names for {request.count} NPCs; "
            f"raise the number to {len(request.names)} or remove names."
        )
    if not 0.0 <= request.temperature <= 2.0:
        raise InputError(
            f"Creativity (temperature) must be between 0 and 2; got {request.temperature}."
        )
    too_long = next((given for given in request.names if len(given) > MAX_NAME_CHARS), None)
    if too_long is not None:
        raise InputError(
            f"The name {too_long[:40]!r}... is longer than {MAX_NAME_CHARS} characters."
        )
    base_traits = tuple(dict.fromkeys(t.strip().lower() for t in request.traits if t.strip()))
    _check_traits(base_traits, personalities, "The chosen traits")

    cast_seed = request.seed if request.seed is not None else new_cast_seed()
    key = world_key(request.world)
    avoid = tuple(dict.fromkeys((*request.names, *request.avoid)))[:MAX_AVOID_NAMES]
    specs = []
    for index in range(request.count):
        name: str | None = None
        traits, slot = base_traits, index - len(request.names)
        if index < len(request.names):
            name, slot = request.names[index], -1
            extra = name_traits[index] if index < len(name_traits) else ()
            traits = tuple(dict.fromkeys(base_traits + extra))
            _check_traits(traits, personalities, name)
        specs.append(
            NPCSpec(
                world=request.world,
                world_key=key,
                name=name,
                traits=traits,
                slot=slot,
                cast_seed=cast_seed,
                temperature=request.temperature,
                avoid_names=avoid,
            )
        )
    return specs


def parse_profile(reply: JSONReply) -> NPCProfile:
    return NPCProfile.model_validate(reply.data)


class CastGenerator:
    """Runs casts against one guarded backend, through the response cache."""

    def __init__(
        self,
        guarded: GuardedBackend,
        personalities: PersonalityData,
        cache: ResponseCache | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.guarded = guarded
        self.personalities = personalities
        self.cache = cache if guarded.backend.cache_responses else None
        self.metrics = metrics
        self.repairs = 0

    async def _profile(self, request: JSONRequest, timings: StageTimings) -> dict[str, Any]:
        """A valid profile from the backend; one repair call only if the first is invalid."""
        profile, repaired = await complete_validated(
            self.guarded, request, parse_profile, timings, what="character"
        )
        self.repairs += repaired
        return {"profile": profile.model_dump(), "repaired": repaired}

    async def generate_one(self, spec: NPCSpec, *, use_cache: bool = True) -> NPC:
        """One NPC, from the cache when allowed and present."""
        started = time.perf_counter()
        timings = StageTimings()
        request = npc_request(spec)
        if self.cache is None:
            result, source = await self._profile(request, timings), "computed"
        else:
            key = response_key(self.guarded.backend.cache_identity, request, NPC_SCHEMA_VERSION)
            result, source = await self.cache.get_or_compute(
                key, lambda: self._profile(request, timings), refresh=not use_cache
            )
        profile = NPCProfile.model_validate(result["profile"])
        timings.total_ms = (time.perf_counter() - started) * 1000
        return self._finish(spec, profile, bool(result["repaired"]), timings, source != "computed")

    def _finish(
        self,
        spec: NPCSpec,
        profile: NPCProfile,
        repaired: bool,
        timings: StageTimings,
        cached: bool,
    ) -> NPC:
        data = profile.model_dump()
        if spec.name:  # the designer's name wins over the model's
            data["name"] = spec.name
        data["personality_traits"] = list(
            dict.fromkeys([*spec.traits, *data["personality_traits"]])
        )[:MAX_TRAITS]
        return NPC(
            **data,
            id=spec.npc_id(self.guarded.name),
            world=spec.world.name,
            backend=self.guarded.name,
            seed=spec.seed,
            cast_seed=spec.cast_seed,
            repaired=repaired,
            cached=cached,
            timing=timings,
        )

    async def run(
        self, specs: Sequence[NPCSpec], *, use_cache: bool = True
    ) -> AsyncIterator[NPCOutcome]:
        """Yield one outcome per position, in the order they finish.

        Leaving the loop early (the user cancelled) cancels the NPCs still running;
        every NPC already yielded is the caller's to keep.
        """
        positions: dict[NPCSpec, list[int]] = {}
        for index, spec in enumerate(specs):
            positions.setdefault(spec, []).append(index)
        queue: asyncio.Queue[tuple[NPCSpec, NPC | None, str | None]] = asyncio.Queue()

        async def worker(spec: NPCSpec) -> None:
            try:
                npc = await self.generate_one(spec, use_cache=use_cache)
            except NPCForgeError as exc:
                await queue.put((spec, None, str(exc)))
            except Exception as exc:  # a bug must not take the rest of the cast with it
                log.exception("unexpected error generating %s", spec.name or f"slot {spec.slot}")
                await queue.put((spec, None, f"internal error: {type(exc).__name__}: {exc}"))
            else:
                await queue.put((spec, npc, None))

        tasks = [asyncio.create_task(worker(spec)) for spec in positions]
        started = time.perf_counter()
        finished: list[tuple[NPCSpec, NPC | None, str | None]] = []
        try:
            for _ in range(len(tasks)):
                spec, npc, error = await queue.get()
                finished.append((spec, npc, error))
                self._record_npc(npc)
                for index in positions[spec]:
                    yield NPCOutcome(index=index, spec=spec, npc=npc, error=error)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._record_batch(finished, len(positions), time.perf_counter() - started)

    def _record_npc(self, npc: NPC | None) -> None:
        if self.metrics is None:
            return
        stages = None
        if npc is not None and npc.timing is not None and not npc.cached:
            t = npc.timing
            stages = {
                "queue": t.queue_ms,
                "backend": t.backend_ms,
                "parse": t.parse_ms,
                "repair": t.repair_ms,
                "total": t.total_ms,
            }
        self.metrics.npc_done(self.guarded.name, npc is not None, stages)

    def _record_batch(
        self, finished: list[tuple[NPCSpec, NPC | None, str | None]], planned: int, seconds: float
    ) -> None:
        """One log line per cast, and its per-NPC breakdown for the Stats tab."""
        npcs = [npc for _, npc, _ in finished if npc is not None]
        cancelled = planned - len(finished)
        log.info(
            "cast from %s: %d ok, %d failed, %d cached, %d repaired%s in %.2f s",
            self.guarded.name,
            len(npcs),
            len(finished) - len(npcs),
            sum(npc.cached for npc in npcs),
            sum(npc.repaired for npc in npcs),
            f", {cancelled} cancelled" if cancelled else "",
            seconds,
        )
        if self.metrics is None:
            return
        breakdown: list[dict[str, float | str]] = [
            {
                "npc": npc.name,
                "queue": npc.timing.queue_ms,
                "backend": npc.timing.backend_ms,
                "parse": npc.timing.parse_ms,
                "repair": npc.timing.repair_ms,
                "total": npc.timing.total_ms,
            }
            for npc in npcs
            if npc.timing is not None
        ]
        self.metrics.batch_done(self.guarded.name, seconds, breakdown)


async def collect(outcomes: AsyncIterator[NPCOutcome], count: int) -> list[NPCOutcome]:
    """Gather a run's outcomes back into request order."""
    ordered: list[NPCOutcome | None] = [None] * count
    async for outcome in outcomes:
        ordered[outcome.index] = outcome
    return [outcome for outcome in ordered if outcome is not None]
