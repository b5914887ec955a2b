"""The cast pipeline: planning, dedupe, repair, failure isolation, order, cancel."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import BackendResponseError, InputError
from app.models import World
from app.personality import PersonalityData
from app.services.generation import (
    CastGenerator,
    CastRequest,
    NPCOutcome,
    collect,
    parse_name_lines,
    plan_cast,
)
from tests.conftest import FakeSleep
from tests.doubles import ScriptedBackend, guarded, invalid_reply

WORLD = World(name="Saltmere", era="Medieval", time_period="1340", detail="A fishing village.")


@pytest.fixture
def personalities(services) -> PersonalityData:  # type: ignore[no-untyped-def]
    return services.personalities  # type: ignore[no-any-return]


def _plan(personalities: PersonalityData, count: int, **kwargs: object):  # type: ignore[no-untyped-def]
    return plan_cast(CastRequest(world=WORLD, count=count, **kwargs), personalities, max_npcs=100)  # type: ignore[arg-type]


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
    with pytest.raises(InputError, match="contradict"):
        _plan(personalities, 2, traits=(trait.name, trait.opposite))


def test_temperature_out_of_range(personalities: PersonalityData) -> None:
    with pytest.raises(InputError, match="between 0 and 2"):
        _plan(personalities, 1, temperature=3.0)


def test_name_lines_with_traits() -> None:
    assert parse_name_lines("Maud\n\n  Old   Bran : Grumpy, sly \n") == [
        ("Maud", ()),
        ("Old Bran", ("grumpy", "sly")),
    ]


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
    generator = CastGenerator(guarded(backend, fake_sleep), personalities)
    specs = _plan(personalities, 6, names=("Ada", "Bran", "Ada", "Ada"), seed=1)
    outcomes = await _run(generator, specs)
    assert len(backend.history) == 4  # Ada, Bran, two unnamed
    assert [o.index for o in outcomes] == list(range(6))
    assert [o.npc.name for o in outcomes[:4]] == ["Ada", "Bran", "Ada", "Ada"]  # type: ignore[union-attr]


async def test_repair_only_when_invalid(
    personalities: PersonalityData, fake_sleep: FakeSleep
) -> None:
    backend = ScriptedBackend()
    generator = CastGenerator(guarded(backend, fake_sleep), personalities)
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
    generator = CastGenerator(guarded(backend, fake_sleep, concurrency=1), personalities)
    outcomes = await _run(generator, _plan(personalities, 3, names=("Ada", "Bran", "Cei"), seed=1))
    assert [o.ok for o in outcomes] == [True, False, True]
    assert "HTTP 400" in (outcomes[1].error or "")


async def test_a_bug_in_one_npc_is_contained(
    personalities: PersonalityData, fake_sleep: FakeSleep
) -> None:
    backend = ScriptedBackend()
    backend.enqueue(RuntimeError("boom"))
    generator = CastGenerator(guarded(backend, fake_sleep, concurrency=1), personalities)
    outcomes = await _run(generator, _plan(personalities, 2, seed=1))
    assert sorted(o.ok for o in outcomes) == [False, True]
    assert any("internal error: RuntimeError: boom" in (o.error or "") for o in outcomes)


async def test_results_stream_as_they_finish(personalities: PersonalityData) -> None:
    delays = {"Slow": 0.2, "Fast": 0.0}

    class Timed(ScriptedBackend):
        async def complete_json(self, request):  # type: ignore[no-untyped-def]
            await asyncio.sleep(delays[request.inputs["name"]])
            return self.default_reply(request)

    backend = Timed()
    generator = CastGenerator(guarded(backend, asyncio.sleep, concurrency=2), personalities)
    order = [o.index async for o in generator.run(_plan(personalities, 2, names=("Slow", "Fast")))]
    assert order == [1, 0]


async def test_cancelling_keeps_what_finished_and_stops_the_rest(
    personalities: PersonalityData,
) -> None:
    backend = ScriptedBackend(delay=0.05)
    generator = CastGenerator(guarded(backend, asyncio.sleep, concurrency=1), personalities)
    received = []
    async for outcome in generator.run(_plan(personalities, 10, seed=2)):
        received.append(outcome)
        if len(received) == 2:
            break
    await asyncio.sleep(0.1)
    assert len(received) == 2 and all(o.ok for o in received)
    assert len(backend.history) <= 3  # the rest were cancelled, not run to the end
    assert backend.in_flight == 0
