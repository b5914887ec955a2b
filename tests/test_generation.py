"""The cast pipeline: planning, dedupe, repair, failure isolation, order, cancel."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from app.cache.disk import DiskTier
from app.cache.memory import MemoryTier
from app.cache.response import ResponseCache
from app.errors import BackendResponseError, InputError
from app.models import World
from app.personality import PersonalityData
from app.services.generation import CastGenerator, NPCOutcome, collect
from app.services.planning import NamedNPC, parse_name_lines, parse_whole_number, plan_cast
from app.services.prompts import npc_request
from tests.casts import request
from tests.conftest import FakeSleep
from tests.doubles import ScriptedBackend, guarded, invalid_reply

WORLD = World(name="Saltmere", era="Medieval", time_period="1340", detail="A fishing village.")


@pytest.fixture
def personalities(services) -> PersonalityData:  # type: ignore[no-untyped-def]
    return services.assets.personalities()  # type: ignore[no-any-return]


def _plan(personalities: PersonalityData, count: int, **kwargs: object):  # type: ignore[no-untyped-def]
    kwargs.setdefault("seed", None)
    return plan_cast(request(WORLD, count, **kwargs), personalities, max_npcs=100)


@pytest.mark.parametrize(
    ("count", "message"),
    [(0, "between 1 and 100; got 0"), (10_000, "between 1 and 100; got 10000"), (-1, "got -1")],
)
def test_count_out_of_range(personalities: PersonalityData, count: int, message: str) -> None:
    with pytest.raises(InputError, match=message):
        _plan(personalities, count)


def test_more_names_than_npcs(personalities: PersonalityData) -> None:
    with pytest.raises(InputError, match="3 names for 2 NPCs"):
        _plan(personalities, 2, names=("A", "B", "C"))


def test_contradicting_traits_are_refused(personalities: PersonalityData) -> None:
    trait = next(t for t in personalities.traits.values() if t.opposite)
    with pytest.raises(InputError) as refused:
        _plan(personalities, 2, traits=(trait.name, trait.opposite))
    assert str(refused.value) == (
        f"The chosen traits: '{trait.name}' and '{trait.opposite}' contradict each other; "
        "keep one of them."
    )


@pytest.mark.parametrize("name", ["🐉🔥", "42", "--"])
def test_a_name_without_letters_is_refused(personalities: PersonalityData, name: str) -> None:
    with pytest.raises(InputError, match="has no letters; give each NPC a name"):
        _plan(personalities, 1, names=(name,))


def test_temperature_out_of_range(personalities: PersonalityData) -> None:
    with pytest.raises(InputError, match="between 0 and 2"):
        _plan(personalities, 1, temperature=3.0)


def test_name_lines_with_traits() -> None:
    assert parse_name_lines("Maud\n\n  Old   Bran : Grumpy, sly \n") == (
        NamedNPC("Maud"),
        NamedNPC("Old Bran", ("grumpy", "sly")),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None), ("", None), ("  ", None), (7, 7), ("12", 12), (3.0, 3), ("7.0", 7),
        ("99999999999999999999", 99999999999999999999),  # exact, so a refusal quotes it right
    ],
)  # fmt: skip
def test_whole_numbers_from_forms(value: object, expected: int | None) -> None:
    assert parse_whole_number(value, "The seed") == expected


@pytest.mark.parametrize("value", ["1.5", 1.5, "seven", True, "9" * 5000, "inf"])
def test_not_whole_numbers_say_so(value: object) -> None:
    with pytest.raises(InputError, match="The seed must be a whole number"):
        parse_whole_number(value, "The seed")


@pytest.mark.parametrize("seed", [-1, 2**63, 10**30])
def test_seed_out_of_range_is_refused(personalities: PersonalityData, seed: int) -> None:
    with pytest.raises(InputError, match="between 0 and 9223372036854775807"):
        _plan(personalities, 1, seed=seed)


def test_huge_custom_trait_is_refused(personalities: PersonalityData) -> None:
    with pytest.raises(InputError, match="longer than 40 characters"):
        _plan(personalities, 1, traits=("x" * 100_000,))


def test_specs_are_stable_and_duplicates_are_equal(personalities: PersonalityData) -> None:
    first = _plan(personalities, 4, names=("Ada", "Ada"), seed=3)
    second = _plan(personalities, 4, names=("Ada", "Ada"), seed=3)
    assert first == second
    assert first[0] == first[1]
    assert first[2] != first[3]  # two unnamed NPCs are two different requests
    assert first[0].seed == second[0].seed


def test_no_seed_draws_one_for_the_whole_cast(personalities: PersonalityData) -> None:
    specs = _plan(personalities, 3)
    assert len({spec.cast_seed for spec in specs}) == 1


async def _run(generator: CastGenerator, specs) -> list[NPCOutcome]:  # type: ignore[no-untyped-def]
    return await collect(generator.run(specs), len(specs))


async def test_dedupe_calls_backend_once_per_unique_request(
    personalities: PersonalityData, fake_sleep: FakeSleep
) -> None:
    backend = ScriptedBackend()
    generator = CastGenerator(guarded(backend, fake_sleep))
    specs = _plan(personalities, 6, names=("Ada", "Bran", "Ada", "Ada"), seed=1)
    outcomes = await _run(generator, specs)
    assert len(backend.history) == 4  # Ada, Bran, two unnamed
    assert [o.index for o in outcomes] == list(range(6))
    assert [o.npc.name for o in outcomes[:4]] == ["Ada", "Bran", "Ada", "Ada"]  # type: ignore[union-attr]


async def test_repair_only_when_invalid(
    personalities: PersonalityData, fake_sleep: FakeSleep
) -> None:
    backend = ScriptedBackend()
    generator = CastGenerator(guarded(backend, fake_sleep))
    await _run(generator, _plan(personalities, 3, seed=1))
    assert len(backend.history) == 3 and generator.repairs == 0

    backend.enqueue(invalid_reply())
    outcomes = await _run(generator, _plan(personalities, 1, names=("Ada",), seed=1))
    assert outcomes[0].ok and outcomes[0].npc.repaired  # type: ignore[union-attr]
    assert len(backend.history) == 5 and generator.repairs == 1
    repair = backend.history[-1]
    assert repair.inputs.get("repair") is True
    assert "secret" in repair.messages[-1]["content"]  # the validation errors are shown


async def test_one_failure_never_loses_the_others(
    personalities: PersonalityData, fake_sleep: FakeSleep
) -> None:
    backend = ScriptedBackend()

    def fail_for_bran(request):  # type: ignore[no-untyped-def]
        if request.inputs.get("name") == "Bran":
            raise BackendResponseError("scripted", "HTTP 400: bad request", status=400)
        return backend.default_reply(request)

    backend.enqueue(*(fail_for_bran for _ in range(3)))
    generator = CastGenerator(guarded(backend, fake_sleep, concurrency=1))
    outcomes = await _run(generator, _plan(personalities, 3, names=("Ada", "Bran", "Cei"), seed=1))
    assert [o.ok for o in outcomes] == [True, False, True]
    assert "HTTP 400" in (outcomes[1].error or "")


async def test_a_bug_in_one_npc_is_contained(
    personalities: PersonalityData, fake_sleep: FakeSleep
) -> None:
    backend = ScriptedBackend()
    backend.enqueue(RuntimeError("boom"))
    generator = CastGenerator(guarded(backend, fake_sleep, concurrency=1))
    outcomes = await _run(generator, _plan(personalities, 2, seed=1))
    assert sorted(o.ok for o in outcomes) == [False, True]
    assert any("internal error: RuntimeError: boom" in (o.error or "") for o in outcomes)


class Gated(ScriptedBackend):
    """Calls for the names in ``held`` wait until the test opens the gate;
    cancelled calls are counted."""

    def __init__(self, *held: str) -> None:
        super().__init__()
        self.held = set(held)
        self.gate = asyncio.Event()
        self.cancelled = 0

    async def complete_json(self, request):  # type: ignore[no-untyped-def]
        self.history.append(request)
        self.in_flight += 1
        try:
            if request.inputs.get("name") in self.held or "*" in self.held:
                await self.gate.wait()
            return self.default_reply(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


async def test_results_stream_as_they_finish(personalities: PersonalityData) -> None:
    backend = Gated("Slow")
    generator = CastGenerator(guarded(backend, asyncio.sleep, concurrency=2))
    order = []
    async for outcome in generator.run(_plan(personalities, 2, names=("Slow", "Fast"))):
        order.append(outcome.index)
        backend.gate.set()  # Slow may finish only once Fast has been delivered
    assert order == [1, 0]


async def test_closing_the_run_cancels_the_rest_and_keeps_what_finished(
    personalities: PersonalityData,
) -> None:
    backend = Gated("Cei", "Dai")
    generator = CastGenerator(guarded(backend, asyncio.sleep, concurrency=1))
    specs = _plan(personalities, 4, names=("Ada", "Bran", "Cei", "Dai"), seed=2)
    received = []
    async with contextlib.aclosing(generator.run(specs)) as stream:
        async for outcome in stream:
            received.append(outcome)
            if len(received) == 2:
                break
    # Closed deterministically: Cei was cancelled mid-call, Dai never started.
    assert [o.npc.name for o in received] == ["Ada", "Bran"]  # type: ignore[union-attr]
    assert [r.inputs["name"] for r in backend.history] == ["Ada", "Bran", "Cei"]
    assert backend.cancelled == 1 and backend.in_flight == 0


async def test_backend_calls_start_in_request_order_after_cache_lookups(
    personalities: PersonalityData, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    """Cached NPCs are read first; the misses then reach the backend in request order."""
    backend = ScriptedBackend()
    cache = ResponseCache(MemoryTier(64), DiskTier(tmp_path / "cache"))
    names = tuple(f"N{i}" for i in range(12))
    specs = _plan(personalities, 12, names=names, seed=4)
    warm = CastGenerator(guarded(backend, fake_sleep, concurrency=1), cache)
    await _run(warm, specs)
    await cache.flush()
    cache.memory.clear()  # only the disk has them, as after a restart
    for spec in specs[1::2]:  # every other one is not cached any more
        cache.disk.path_for(warm._key(npc_request(spec))).unlink()  # type: ignore[union-attr]
    backend.history.clear()
    generator = CastGenerator(guarded(backend, fake_sleep, concurrency=1), cache)
    outcomes = await _run(generator, specs)
    assert all(o.ok for o in outcomes)
    assert [o.npc.cached for o in outcomes] == [True, False] * 6  # type: ignore[union-attr]
    assert [r.inputs["name"] for r in backend.history] == list(names[1::2])


async def test_an_instant_backend_still_delivers_npcs_one_at_a_time(services) -> None:  # type: ignore[no-untyped-def]
    """The procedural backend never waits; its NPCs must still reach the reader one
    by one, not all at once after the whole cast is drafted."""
    world = services.worlds.resolve("saltmere", None).world
    plan = await services.cast.plan(request(world, 10, seed=5), save=False)
    drafted_before = []
    backend = services.backends.get(plan.requested_backend)
    async with services.cast.run(plan) as run:
        async for _ in run.outcomes():
            drafted_before.append(backend.calls)
    assert drafted_before[0] < 10 and drafted_before == sorted(drafted_before)
    assert len(set(drafted_before)) > 1
