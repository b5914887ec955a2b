"""Generate a cast of NPCs concurrently, delivering each as it finishes.

Pipeline per NPC: spec -> prompt -> backend (under the guard's limits) ->
validate -> only if invalid, one repair call -> NPC. Identical specs in a
batch are generated once and delivered to every position that asked for them.
One NPC failing never loses the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from app.backends.base import JSONReply, JSONRequest
from app.backends.guard import GuardedBackend
from app.cache.keys import response_key
from app.cache.response import ResponseCache
from app.errors import NPCForgeError
from app.metrics import Metrics
from app.models import NPC, NPC_SCHEMA_VERSION, NPCProfile, NPCSpec, StageTimings
from app.services.planning import MAX_TRAITS
from app.services.prompts import npc_request
from app.services.validated import complete_validated

log = logging.getLogger(__name__)


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


def parse_profile(reply: JSONReply) -> NPCProfile:
    return NPCProfile.model_validate(reply.data)


@dataclass(frozen=True, slots=True)
class CachedProfile:
    """The shape of a response-cache entry for one NPC."""

    profile: NPCProfile
    repaired: bool

    @classmethod
    def from_value(cls, value: Any) -> CachedProfile:
        """Raises (KeyError, TypeError, ValidationError) for a record of another shape."""
        return cls(NPCProfile.model_validate(value["profile"]), bool(value["repaired"]))


class CastGenerator:
    """Runs casts against one guarded backend, through the response cache."""

    def __init__(
        self,
        guarded: GuardedBackend,
        cache: ResponseCache | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.guarded = guarded
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

    def _key(self, request: JSONRequest) -> str:
        return response_key(self.guarded.backend.cache_identity, request, NPC_SCHEMA_VERSION)

    async def _lookup(self, specs: Sequence[NPCSpec]) -> dict[NPCSpec, CachedProfile]:
        """Every spec's cached profile, read in one pass before any backend call."""
        if self.cache is None or not specs:
            return {}
        keys = [self._key(npc_request(spec)) for spec in specs]
        values = await self.cache.lookup_many(keys, validate=CachedProfile.from_value)
        return {
            spec: CachedProfile.from_value(value)
            for spec, value in zip(specs, values, strict=True)
            if value is not None
        }

    async def generate_one(
        self, spec: NPCSpec, *, use_cache: bool = True, cached: CachedProfile | None = None
    ) -> NPC:
        """One NPC: from ``cached`` (looked up by ``run``), else computed once
        however many casts ask for it at the same time."""
        started = time.perf_counter()
        timings = StageTimings()
        if cached is None:
            request = npc_request(spec)
            if self.cache is None:
                value: Any = await self._profile(request, timings)
            else:
                value, source = await self.cache.get_or_compute(
                    self._key(request),
                    lambda: self._profile(request, timings),
                    refresh=not use_cache,
                    lookup=False,  # run() looked it up already, in request order
                    validate=CachedProfile.from_value,
                )
                if source != "computed":  # another cast computed it just now
                    timings = StageTimings()
            profile = CachedProfile.from_value(value)
            from_cache = False
        else:
            profile, from_cache = cached, True
        timings.total_ms = (time.perf_counter() - started) * 1000
        return self._finish(spec, profile.profile, profile.repaired, timings, from_cache)

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
    ) -> AsyncGenerator[NPCOutcome, None]:
        """Yield one outcome per position, in the order they finish.

        Cached NPCs are looked up first, in one pass, so the backend calls of
        the rest start in request order. Closing the generator early (the user
        stopped; use ``contextlib.aclosing``) cancels the NPCs still running and
        waits for them; every NPC already yielded is the caller's to keep.
        """
        positions: dict[NPCSpec, list[int]] = {}
        for index, spec in enumerate(specs):
            positions.setdefault(spec, []).append(index)
        queue: asyncio.Queue[tuple[NPCSpec, NPC | None, str | None]] = asyncio.Queue()
        cached = await self._lookup(list(positions)) if use_cache else {}

        async def worker(spec: NPCSpec) -> None:
            try:
                npc = await self.generate_one(spec, use_cache=use_cache, cached=cached.get(spec))
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
