"""Dialogue lines for many NPCs and situations at once, each generated once.

``DialogueManager.get_dialogues(requests)`` looks every request up in the
two-tier response cache first, deduplicates the misses, and sends only the
unique misses to the backend: all the situations of one NPC go into one
structured call (up to ``dialogue_situations_per_call``) that returns a list.
Results map back to the requests, so the output order is the input order.
Concurrent runs share their work: a line another run is generating is waited
for, not generated twice. Calls run a few at a time for a remote API and
more for in-process backends (``dialogue_concurrency`` overrides it per
backend); 429s slow the guard down as for every call. A line that fails is
delivered with its reason; the others are delivered all the same.

A line's cache key holds the backend's identity (name, model, server), the
NPC's voice fields and world (``VOICE_FIELDS``), the situation and the
variant: another backend never reuses a line, an edited NPC gets new ones.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from app.backends.guard import GuardedBackend
from app.backends.pool import BackendPool
from app.cache.response import ResponseCache
from app.cache.stats import CacheStats, StatsRegistry
from app.errors import NPCForgeError
from app.models import NPC, World
from app.services.dialogue_prompts import (
    DIALOGUE_PROMPT_VERSION,
    Ask,
    lines_request,
    parse_lines,
    voice,
)
from app.services.validated import complete_validated
from config import DEFAULT_DIALOGUE_CONCURRENCY, Settings
from utils.counters import Counters

log = logging.getLogger(__name__)

WorldLookup = Callable[[str], World]  # blocking: called in a thread
_SLUG = re.compile(r"[^a-z0-9]+")
_SLUG_CHARS = 40


def situation_text(situation: str) -> str:
    """A situation as shown: one line, single spaces."""
    return " ".join(situation.split())


def localisation_key(npc_id: str, situation: str, variant: int) -> str:
    """A stable id for a line's slot: the same NPC, situation and variant give the
    same key in every run (the text may change; the key does not)."""
    text = situation_text(situation).casefold()
    slug = _SLUG.sub("_", text).strip("_")[:_SLUG_CHARS].rstrip("_") or "line"
    digest = hashlib.blake2b(text.encode(), digest_size=3).hexdigest()
    return f"{npc_id}.{slug}_{digest}.{variant}"


@dataclass(frozen=True, slots=True)
class LineRequest:
    """One line to write: this NPC, in this situation, variant 1, 2, ..."""

    npc: NPC
    situation: str
    variant: int = 1


@dataclass(frozen=True, slots=True)
class DialogueLine:
    """A delivered line (``line``), or why it could not be written (``error``)."""

    key: str
    npc_id: str
    npc_name: str
    situation: str
    variant: int
    line: str | None
    cached: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.line is not None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Delivered:
    """A finished line for the request at ``index``."""

    index: int
    line: DialogueLine


@dataclass(frozen=True, slots=True)
class _Outcome:
    line: str | None
    error: str | None = None


def _cached_line(value: Any) -> str:
    """The line of a cache entry; raises for a record of another shape (a miss)."""
    line = value["line"]
    if not isinstance(line, str) or not line:
        raise ValueError("a cached dialogue line must be a non-empty string")
    return line


@dataclass(slots=True)
class _Unique:
    """One distinct line of a run and the requests (by position) that asked for it."""

    key: str
    situation: str
    variant: int
    voice_id: str
    voice: dict[str, Any]
    speaker: str
    asked: list[tuple[int, LineRequest]] = field(default_factory=list)
    # Set when this run generates the line; other runs wait for it.
    future: asyncio.Future[_Outcome] | None = None


@dataclass(slots=True)
class RunReport:
    """What one run cost, for its log line and for callers that count."""

    requests: int = 0
    unique: int = 0
    cached: int = 0
    generated: int = 0
    joined: int = 0  # waited for another run's line
    failed: int = 0
    calls: int = 0


@dataclass(slots=True)
class _Run:
    """One call of ``stream``: where it runs and what it has said so far."""

    guarded: GuardedBackend
    requested: str | None
    report: RunReport
    refresh: bool
    take: int
    avoid: Sequence[str]
    # Every line this run delivers, folded: no two NPCs or variants share one.
    said: set[str] = field(default_factory=set)


class DialogueManager:
    """Looks up, deduplicates, batches and generates dialogue lines."""

    def __init__(
        self,
        backends: BackendPool,
        cache: ResponseCache | None,
        world_for: WorldLookup,
        *,
        situations_per_call: int,
        concurrency: Mapping[str, int],
        temperature: float,
        stats: StatsRegistry | None = None,
    ) -> None:
        self._backends = backends
        self._cache = cache
        self._world_for = world_for
        self.situations_per_call = situations_per_call
        self._overrides = dict(concurrency)
        self._temperature = temperature
        self.counters = Counters()
        self.last_run = RunReport()
        # Lines being generated, per event loop: a second run waits for them.
        self._inflight: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Future[_Outcome]]
        ] = weakref.WeakKeyDictionary()
        self._gates: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()
        self._limits: dict[str, int] = {}  # backend name -> limit in use (Stats tab)
        if stats is not None:
            stats.register("dialogue.lines", self.stats)

    @classmethod
    def from_settings(
        cls,
        backends: BackendPool,
        cache: ResponseCache | None,
        world_for: WorldLookup,
        settings: Settings,
        stats: StatsRegistry | None = None,
    ) -> DialogueManager:
        return cls(
            backends,
            cache,
            world_for,
            situations_per_call=settings.dialogue_situations_per_call,
            concurrency=settings.dialogue_concurrency,
            temperature=settings.default_temperature,
            stats=stats,
        )

    def stats(self) -> CacheStats:
        hits, misses, _ = self.counters.snapshot()
        return CacheStats("dialogue.lines", hits, misses, 0, None)

    # -- concurrency ------------------------------------------------------------------
    def concurrency_for(self, guarded: GuardedBackend, requested: str | None = None) -> int:
        """Calls at once for this backend: its override (by registered name or full
        name), else the default of its kind."""
        names = (self._backends.resolve(requested), guarded.name)
        for name in names:
            if name in self._overrides:
                return max(1, self._overrides[name])
        return DEFAULT_DIALOGUE_CONCURRENCY[guarded.backend.kind]

    def backend_name(self, requested: str | None = None) -> str:
        """The full name of the backend a run would use (``auto`` resolved)."""
        return self._backends.get(requested).name

    def limits(self) -> dict[str, int]:
        """The limit each backend used so far runs dialogue at (for the Stats tab)."""
        return dict(self._limits)

    def _gate(self, guarded: GuardedBackend, requested: str | None) -> asyncio.Semaphore:
        gates = self._gates.setdefault(asyncio.get_running_loop(), {})
        gate = gates.get(guarded.name)
        if gate is None:
            limit = self.concurrency_for(guarded, requested)
            gate = gates[guarded.name] = asyncio.Semaphore(limit)
            if self._limits.get(guarded.name) != limit:
                self._limits[guarded.name] = limit
                log.info(
                    "dialogue for %s: %d calls at once (%s backend%s; guard limit %d)",
                    guarded.name,
                    limit,
                    guarded.backend.kind,
                    ", overridden in settings" if self._is_overridden(guarded, requested) else "",
                    guarded.concurrency,
                )
        return gate

    def _is_overridden(self, guarded: GuardedBackend, requested: str | None) -> bool:
        return any(n in self._overrides for n in (self._backends.resolve(requested), guarded.name))

    # -- keys -------------------------------------------------------------------------
    def _key(self, identity: str, voice_id: str, situation: str, variant: int) -> str:
        payload = {
            "backend": identity,
            "task": "dialogue_line",
            "version": DIALOGUE_PROMPT_VERSION,
            "voice": voice_id,
            "situation": situation.casefold(),
            "variant": variant,
            "temperature": round(self._temperature, 4),
        }
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()

    async def _worlds(self, npcs: Sequence[NPC]) -> dict[str, World]:
        names = sorted({npc.world for npc in npcs})
        found = await asyncio.gather(*(asyncio.to_thread(self._world_for, n) for n in names))
        return dict(zip(names, found, strict=True))

    async def _uniques(
        self, guarded: GuardedBackend, requests: Sequence[LineRequest]
    ) -> dict[str, _Unique]:
        worlds = await self._worlds([request.npc for request in requests])
        voices: dict[int, tuple[str, dict[str, Any]]] = {}  # id(npc) -> voice, once per NPC
        uniques: dict[str, _Unique] = {}
        identity = guarded.backend.cache_identity
        for index, request in enumerate(requests):
            known = voices.get(id(request.npc))
            if known is None:
                fields = voice(request.npc, worlds[request.npc.world])
                digest = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))
                known = voices[id(request.npc)] = (digest.hexdigest(), fields)
            voice_id, fields = known
            situation = situation_text(request.situation)
            key = self._key(identity, voice_id, situation, request.variant)
            unique = uniques.get(key)
            if unique is None:
                unique = uniques[key] = _Unique(
                    key, situation, request.variant, voice_id, fields, request.npc.name
                )
            unique.asked.append((index, request))
        return uniques

    # -- the public surface -----------------------------------------------------------
    async def get_dialogue(
        self, npc: NPC, situation: str, variant: int = 1, *, backend: str | None = None
    ) -> DialogueLine:
        """One line (from the cache when it is there)."""
        return (await self.get_dialogues([LineRequest(npc, situation, variant)], backend=backend))[
            0
        ]

    async def get_dialogues(
        self, requests: Sequence[LineRequest], *, backend: str | None = None
    ) -> list[DialogueLine]:
        """Every request's line, in the order of ``requests``."""
        ordered: list[DialogueLine | None] = [None] * len(requests)
        async for delivered in self.stream(requests, backend=backend):
            ordered[delivered.index] = delivered.line
        return [line for line in ordered if line is not None]

    async def regenerate(
        self,
        request: LineRequest,
        *,
        take: int,
        avoid: Sequence[str] = (),
        backend: str | None = None,
    ) -> DialogueLine:
        """A new take of one line (``take`` 1, 2, ... varies it), stored in place of
        the cached one so later runs deliver it; ``avoid`` are lines not to repeat."""
        lines = [
            delivered.line
            async for delivered in self.stream(
                [request], backend=backend, refresh=True, take=take, avoid=avoid
            )
        ]
        return lines[0]

    async def stream(
        self,
        requests: Sequence[LineRequest],
        *,
        backend: str | None = None,
        refresh: bool = False,
        take: int = 0,
        avoid: Sequence[str] = (),
        before_writing: Callable[[int], object] | None = None,
    ) -> AsyncGenerator[Delivered, None]:
        """Yield each request's line as it is ready: cached ones first, then the rest
        as their calls finish. Closing the iterator early cancels the calls still
        running (lines other runs are waiting for are then generated by them).
        ``before_writing`` is told how many lines are not cached, after the cached
        ones and before any call starts; what it raises ends the run (a quota)."""
        started = time.perf_counter()
        guarded = self._backends.get(backend)
        report = RunReport(requests=len(requests))
        uniques = await self._uniques(guarded, requests)
        report.unique = len(uniques)
        found: dict[str, str] = {}
        if self._cache is not None and not refresh:
            keys = list(uniques)
            values = await self._cache.lookup_many(keys, validate=_cached_line)
            found = {key: _cached_line(v) for key, v in zip(keys, values, strict=True) if v}
        run = _Run(guarded, backend, report, refresh, take, avoid)
        run.said.update(line.casefold() for line in found.values())
        hits = [(uniques[key], line) for key, line in found.items()]
        for unique, line in hits:
            report.cached += 1
            self.counters.hit()
            for delivered in self._deliver(unique, _Outcome(line), cached=True):
                yield delivered
        misses = [unique for key, unique in uniques.items() if key not in found]
        if before_writing is not None and misses:
            before_writing(sum(len(unique.asked) for unique in misses))
        queue: asyncio.Queue[tuple[_Unique, _Outcome]] = asyncio.Queue()
        tasks = self._start(run, misses, hits, queue)
        try:
            for _ in misses:
                unique, outcome = await queue.get()
                if outcome.line is None:
                    report.failed += 1
                for delivered in self._deliver(unique, outcome, cached=False):
                    yield delivered
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.last_run = report
            self._log(guarded, report, time.perf_counter() - started)

    # -- generation -------------------------------------------------------------------
    def _start(
        self,
        run: _Run,
        misses: Sequence[_Unique],
        hits: Sequence[tuple[_Unique, str]],
        queue: asyncio.Queue[tuple[_Unique, _Outcome]],
    ) -> list[asyncio.Task[None]]:
        """Claim the misses no other run is generating and start their calls; wait
        for the others. Every miss ends up in ``queue`` exactly once."""
        loop = asyncio.get_running_loop()
        inflight = self._inflight.setdefault(loop, {})
        owned: list[_Unique] = []
        tasks: list[asyncio.Task[None]] = []
        for unique in misses:
            shared = None if run.refresh else inflight.get(unique.key)
            if shared is not None:
                run.report.joined += 1
                self.counters.hit()  # delivered without a call of its own
                tasks.append(loop.create_task(self._join(unique, shared, queue, run.requested)))
                continue
            # A refresh takes the key over: the line it writes is the one kept.
            unique.future = inflight[unique.key] = loop.create_future()
            owned.append(unique)
            self.counters.miss()
            tasks.append(loop.create_task(self._forward(unique, unique.future, queue)))
        gate = self._gate(run.guarded, run.requested)
        for batch in self._batches(owned, hits, run.avoid):
            tasks.append(loop.create_task(self._generate(run, gate, batch)))
        return tasks

    def _batches(
        self, owned: Sequence[_Unique], hits: Sequence[tuple[_Unique, str]], avoid: Sequence[str]
    ) -> list[list[tuple[Ask, list[_Unique]]]]:
        """Per NPC, its situations in calls of at most ``situations_per_call``; each
        situation asks for its missing variants and avoids the lines it has."""
        known: dict[tuple[str, str], list[str]] = {}
        for unique, line in hits:
            known.setdefault((unique.voice_id, unique.situation.casefold()), []).append(line)
        by_voice: dict[str, dict[str, tuple[Ask, list[_Unique]]]] = {}
        for unique in owned:
            situations = by_voice.setdefault(unique.voice_id, {})
            folded = unique.situation.casefold()
            if folded not in situations:
                have = known.get((unique.voice_id, folded), [])
                ask = Ask(str(len(situations) + 1), unique.situation, [], [*avoid, *have])
                situations[folded] = (ask, [])
            ask, members = situations[folded]
            ask.variants.append(unique.variant)
            members.append(unique)
        step = self.situations_per_call
        return [
            entries[start : start + step]
            for entries in (list(s.values()) for s in by_voice.values())
            for start in range(0, len(entries), step)
        ]

    async def _generate(
        self, run: _Run, gate: asyncio.Semaphore, batch: list[tuple[Ask, list[_Unique]]]
    ) -> None:
        """One call for the batch (and one more for the lines it left out); every
        line's future is resolved, whatever happens."""
        first = batch[0][1][0]
        pending = {ask.id: (ask, members) for ask, members in batch}
        error = "the backend's reply had no usable line for it, twice"
        try:
            for _ in range(2):
                asks = [ask for ask, _ in pending.values()]
                request = lines_request(
                    first.voice, asks, temperature=self._temperature, take=run.take
                )
                try:
                    async with gate:
                        run.report.calls += 1
                        written, _ = await complete_validated(
                            run.guarded,
                            request,
                            functools.partial(parse_lines, speaker=first.speaker, asks=asks),
                            what="set of dialogue lines",
                        )
                except NPCForgeError as exc:
                    error = " ".join(str(exc).split())  # one line, wherever it is shown
                    break
                pending = self._settle(pending, written, run.said)
                if not pending:
                    return
        except Exception as exc:  # a bug must not leave other runs waiting forever
            log.exception("unexpected error writing dialogue for %s", first.speaker)
            error = f"internal error: {type(exc).__name__}: {exc}"
        except BaseException:
            for _, members in pending.values():
                for unique in members:
                    self._resolve(unique, None)
            raise
        for _, members in pending.values():
            for unique in members:
                self._resolve(unique, _Outcome(None, error))

    def _settle(
        self,
        pending: dict[str, tuple[Ask, list[_Unique]]],
        written: Mapping[str, list[str]],
        said: set[str],
    ) -> dict[str, tuple[Ask, list[_Unique]]]:
        """Deliver what the reply wrote; what it left out, or wrote that another NPC
        of the run already says, is asked for again."""
        left: dict[str, tuple[Ask, list[_Unique]]] = {}
        for ask_id, (ask, members) in pending.items():
            lines = list(written.get(ask_id, ()))
            missing: list[_Unique] = []
            for unique in members:
                while lines and lines[0].casefold() in said:
                    ask.avoid.append(lines.pop(0))
                if not lines:
                    missing.append(unique)
                    continue
                line = lines.pop(0)
                said.add(line.casefold())
                ask.avoid.append(line)
                if self._cache is not None and self._current(unique):
                    self._cache.put_soon(unique.key, {"line": line})
                self._resolve(unique, _Outcome(line))
            if missing:
                variants = [unique.variant for unique in missing]
                left[ask_id] = (Ask(ask.id, ask.situation, variants, list(ask.avoid)), missing)
        return left

    def _current(self, unique: _Unique) -> bool:
        """False once a refresh has taken the key over: then this line is the old one."""
        inflight = self._inflight.get(asyncio.get_running_loop(), {})
        return unique.future is not None and inflight.get(unique.key) is unique.future

    def _resolve(self, unique: _Unique, outcome: _Outcome | None) -> None:
        """Finish a line's future (None = cancelled) and stop sharing it."""
        future = unique.future
        if future is None or future.done():
            return
        if self._current(unique):
            del self._inflight[asyncio.get_running_loop()][unique.key]
        if outcome is None:
            future.cancel()
        else:
            future.set_result(outcome)

    @staticmethod
    async def _forward(
        unique: _Unique,
        future: asyncio.Future[_Outcome],
        queue: asyncio.Queue[tuple[_Unique, _Outcome]],
    ) -> None:
        await queue.put((unique, await asyncio.shield(future)))

    async def _join(
        self,
        unique: _Unique,
        shared: asyncio.Future[_Outcome],
        queue: asyncio.Queue[tuple[_Unique, _Outcome]],
        requested: str | None,
    ) -> None:
        """Wait for another run's line; if that run was cancelled, write it here."""
        outcome = _Outcome(None, "cancelled")
        try:
            outcome = await asyncio.shield(shared)
        except asyncio.CancelledError:
            if not shared.cancelled():
                raise  # we were cancelled ourselves
            request = unique.asked[0][1]
            async for delivered in self.stream([request], backend=requested):
                outcome = _Outcome(delivered.line.line, delivered.line.error)
        await queue.put((unique, outcome))

    # -- results ----------------------------------------------------------------------
    @staticmethod
    def _deliver(unique: _Unique, outcome: _Outcome, *, cached: bool) -> list[Delivered]:
        return [
            Delivered(index, _line(request, unique, outcome, cached))
            for index, request in unique.asked
        ]

    def _log(self, guarded: GuardedBackend, report: RunReport, seconds: float) -> None:
        log.info(
            "dialogue from %s: %d lines (%d unique: %d cached, %d generated in %d calls, "
            "%d from a concurrent run, %d failed) at %d calls at once in %.2f s",
            guarded.name,
            report.requests,
            report.unique,
            report.cached,
            report.unique - report.cached - report.joined,
            report.calls,
            report.joined,
            report.failed,
            self._limits.get(guarded.name, 0),
            seconds,
        )


def _line(request: LineRequest, unique: _Unique, outcome: _Outcome, cached: bool) -> DialogueLine:
    return DialogueLine(
        key=localisation_key(request.npc.id, unique.situation, request.variant),
        npc_id=request.npc.id,
        npc_name=request.npc.name,
        situation=unique.situation,
        variant=request.variant,
        line=outcome.line,
        cached=cached,
        error=outcome.error,
    )
