"""The cast use case, the same for the UI, the API and the CLI.

``CastService.plan`` validates a request into specs (avoiding names the
library already has in that world); ``CastService.run`` generates them
concurrently and hands out each NPC the moment it is ready. Finished NPCs are
saved to the library in the background, in batches (the first one alone,
then whatever finished while that write ran), so a save never delays a card;
a stopped or cancelled run keeps and saves everything that finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from app.backends.pool import BackendPool
from app.cache.response import ResponseCache
from app.metrics import Metrics
from app.models import NPC, NPCSpec, World, owned_id
from app.personality import PersonalityData
from app.services.generation import CastGenerator, NPCOutcome
from app.services.library import Library
from app.services.planning import CastRequest, new_cast_seed, plan_cast
from app.services.worlds import WorldService
from utils.aio import until_set

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CastLimits:
    """What a form may ask for, and its defaults (from the settings)."""

    max_npcs: int
    default_temperature: float


@dataclass(frozen=True, slots=True)
class CastPlan:
    """A validated cast: one spec per position, for one backend."""

    specs: list[NPCSpec]
    world: World
    backend: str  # the guarded backend's name, e.g. procedural:v1
    requested_backend: str | None
    save: bool
    owner: str | None = None  # the signed-in user the NPCs are made for

    @property
    def cast_seed(self) -> int:
        return self.specs[0].cast_seed

    def positions_missing(self, finished_ids: Collection[str]) -> list[int]:
        """Positions whose NPC is not among ``finished_ids`` (a resumed run)."""
        return [
            index
            for index, spec in enumerate(self.specs)
            if owned_id(spec.npc_id(self.backend), self.owner) not in finished_ids
        ]


@dataclass(slots=True)
class SaveReport:
    """How the library write of a run went."""

    saved: int = 0
    error: str | None = None


@dataclass(slots=True)
class _Saver:
    """Writes finished NPCs to the library in the background, batch by batch."""

    library: Library
    worlds: WorldService
    world: World
    metrics: Metrics
    backend: str
    owner: str | None = None  # whose the cast is: a world first kept with it is theirs
    report: SaveReport = field(default_factory=SaveReport)
    pending: list[NPC] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    world_kept: bool = False

    def add(self, npc: NPC, background: set[asyncio.Task[None]]) -> None:
        self.pending.append(npc)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._drain())
            background.add(self.task)
            self.task.add_done_callback(background.discard)

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            started = time.perf_counter()
            try:
                await self.library.save(batch)
                if not self.world_kept:
                    await asyncio.to_thread(self.worlds.remember, self.world, self.owner)
                    self.world_kept = True
            except Exception as exc:  # the library being down must not lose the cast
                log.warning("cannot save %d NPCs to the library: %s", len(batch), exc)
                self.report.error = f"{type(exc).__name__}: {exc}"
                continue
            self.report.saved += len(batch)
            self.metrics.store_done(self.backend, time.perf_counter() - started, len(batch))

    async def wait(self) -> SaveReport:
        # Shielded: a cancelled caller must not cancel the write of finished NPCs.
        while self.task is not None and not self.task.done():
            await asyncio.shield(self.task)
        return self.report


class CastRun:
    """One run over some positions of a plan. Use as ``async with``.

    ``outcomes()`` yields each position's outcome as it finishes (``index`` is
    the position in the plan); ``stop()`` ends it early, keeping what finished;
    leaving the block cancels whatever still runs; ``saved()`` waits for the
    library write.
    """

    def __init__(
        self,
        generator: CastGenerator,
        plan: CastPlan,
        positions: Sequence[int],
        *,
        use_cache: bool,
        saver: _Saver | None,
        background: set[asyncio.Task[None]],
    ) -> None:
        self.plan = plan
        self.positions = list(positions)
        self._generator = generator
        self._use_cache = use_cache
        self._saver = saver
        self._background = background
        self._stop = asyncio.Event()
        self._stream: AsyncGenerator[NPCOutcome, None] | None = None

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """End the run after the NPCs that already finished (idempotent)."""
        self._stop.set()

    def outcomes(self) -> AsyncGenerator[NPCOutcome, None]:
        """The outcomes as they finish; the same stream however often it is asked for."""
        if self._stream is None:
            self._stream = self._outcomes()
        return self._stream

    async def _outcomes(self) -> AsyncGenerator[NPCOutcome, None]:
        specs = [self.plan.specs[index] for index in self.positions]
        source = self._generator.run(specs, use_cache=self._use_cache)
        async with contextlib.aclosing(until_set(self._stop, source)) as stream:
            async for outcome in stream:
                outcome.index = self.positions[outcome.index]
                if outcome.npc is not None:
                    outcome.npc = outcome.npc.owned_by(self.plan.owner)
                if outcome.npc is not None and self._saver is not None:
                    self._saver.add(outcome.npc, self._background)
                yield outcome

    async def saved(self) -> SaveReport | None:
        """The library write of this run's NPCs, once it is done (None: not saving)."""
        return await self._saver.wait() if self._saver is not None else None

    async def __aenter__(self) -> CastRun:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Cancel what still runs now, not when the generator is garbage collected.
        if self._stream is not None:
            await self._stream.aclose()


class CastService:
    """Plan, run and keep casts of NPCs."""

    def __init__(
        self,
        *,
        backends: BackendPool,
        personalities: Callable[[], PersonalityData],
        cache: ResponseCache | None,
        metrics: Metrics,
        library: Library,
        worlds: WorldService,
        limits: CastLimits,
        autosave: bool,
    ) -> None:
        self.backends = backends
        self.personalities = personalities
        self.cache = cache
        self.metrics = metrics
        self.library = library
        self.worlds = worlds
        self.limits = limits
        self.autosave = autosave
        self._background: set[asyncio.Task[None]] = set()

    async def _used_names(self, world: World, cast_seed: int) -> set[str]:
        """Names the library already has in this world, except this cast's own."""
        try:
            return await self.library.used_names(world.name, except_cast_seed=cast_seed)
        except Exception as exc:  # the library being down must not stop generation
            log.warning("cannot read used names from the library: %s", exc)
            return set()

    async def plan(
        self,
        request: CastRequest,
        *,
        backend: str | None = None,
        save: bool | None = None,
        owner: str | None = None,
    ) -> CastPlan:
        """Validate a request (raises InputError / ConfigError with what to change)."""
        save = self.autosave if save is None else save
        guarded = self.backends.get(backend)  # fails now for a missing key, not per NPC
        seed = request.seed if request.seed is not None else new_cast_seed()
        avoid = await self._used_names(request.world, seed) if save else set()
        specs = plan_cast(
            CastRequest(
                world=request.world,
                count=request.count,
                temperature=request.temperature,
                named=request.named,
                traits=request.traits,
                seed=seed,
                avoid=tuple(sorted({*request.avoid, *avoid})),
            ),
            self.personalities(),
            max_npcs=self.limits.max_npcs,
        )
        return CastPlan(specs, request.world, guarded.name, backend, save, owner)

    def run(
        self, plan: CastPlan, positions: Sequence[int] | None = None, *, use_cache: bool = True
    ) -> CastRun:
        """Generate the given positions of a plan (all by default)."""
        generator = CastGenerator(
            self.backends.get(plan.requested_backend), self.cache, self.metrics
        )
        saver = (
            _Saver(self.library, self.worlds, plan.world, self.metrics, plan.backend, plan.owner)
            if plan.save
            else None
        )
        return CastRun(
            generator,
            plan,
            range(len(plan.specs)) if positions is None else positions,
            use_cache=use_cache,
            saver=saver,
            background=self._background,
        )

    async def aclose(self) -> None:
        """Wait for library writes still running (shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
