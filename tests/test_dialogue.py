"""DialogueManager: cache first, only unique misses sent, one call per NPC, order kept,
work shared between concurrent runs, limits by backend kind, failures isolated."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from app.backends.registry import BackendRegistry, default_registry
from app.errors import BackendError, RateLimitedError
from app.services.dialogue import LineRequest, localisation_key
from app.wiring import Services
from tests.conftest import MakeServices, make_settings
from tests.dialogue_fixtures import LinesBackend, make_npc, written_line

SITUATIONS = [f"situation {n}" for n in range(1, 11)]


def _registry(*backends: LinesBackend) -> BackendRegistry:
    registry = BackendRegistry()
    for backend in backends:
        registry.register(backend.name.split(":")[0], lambda s, c, b=backend: b)
    procedural = default_registry()
    registry.register("procedural", lambda s, c: procedural.create("procedural", s, c))
    return registry


@pytest.fixture
def backend() -> LinesBackend:
    return LinesBackend()


@pytest.fixture
def app(tmp_path: Path, make_services: MakeServices, backend: LinesBackend) -> Services:
    return make_services(make_settings(tmp_path, backend="scripted"), _registry(backend))


def _requests(npcs: list[Any], situations: list[str], variants: int = 1) -> list[LineRequest]:
    return [LineRequest(n, s, v) for n in npcs for s in situations for v in range(1, variants + 1)]


async def test_ten_situations_of_one_npc_cost_one_call(
    app: Services, backend: LinesBackend
) -> None:
    npc = make_npc()
    lines = await app.dialogue.get_dialogues(_requests([npc], SITUATIONS))
    assert len(backend.history) == 1
    assert [line.line for line in lines] == [written_line(npc.name, s, 1) for s in SITUATIONS]
    assert not any(line.cached for line in lines)


async def test_more_situations_than_a_call_holds_are_split(
    app: Services, backend: LinesBackend
) -> None:
    await app.dialogue.get_dialogues(_requests([make_npc()], [f"s{n}" for n in range(23)]))
    assert [len(call) for call in backend.situations()] == [10, 10, 3]


async def test_cache_hits_make_no_backend_call(app: Services, backend: LinesBackend) -> None:
    requests = _requests([make_npc("Maud Hobb"), make_npc("Ida Crane")], SITUATIONS[:3], 2)
    first = await app.dialogue.get_dialogues(requests)
    calls = len(backend.history)
    second = await app.dialogue.get_dialogues(requests)
    assert len(backend.history) == calls == 2
    assert all(line.cached for line in second)
    assert [line.line for line in second] == [line.line for line in first]
    assert app.dialogue.stats().hits == len(requests)


async def test_only_unique_misses_reach_the_backend_and_order_is_kept(
    app: Services, backend: LinesBackend
) -> None:
    maud, ida = make_npc("Maud Hobb"), make_npc("Ida Crane")
    await app.dialogue.get_dialogues([LineRequest(maud, "greets the player")])  # one cached
    requests = [
        LineRequest(ida, "asked about the ship", 2),
        LineRequest(maud, "greets the player"),
        LineRequest(ida, "asked about the ship", 2),
        LineRequest(maud, "Greets  the player"),  # the same situation, spelt differently
        LineRequest(maud, "player steals", 1),
        LineRequest(ida, "asked about the ship", 1),
        LineRequest(maud, "player steals", 1),
    ]
    backend.history.clear()
    lines = await app.dialogue.get_dialogues(requests)
    sent = sorted(pair for call in backend.situations() for pair in call)
    assert sent == [("asked about the ship", 1), ("asked about the ship", 2), ("player steals", 1)]
    assert len(backend.history) == 2  # one call per NPC
    assert [(line.npc_id, line.variant) for line in lines] == [
        (r.npc.id, r.variant) for r in requests
    ]
    assert [line.line for line in lines] == [
        written_line(r.npc.name, " ".join(r.situation.split()) if r.npc is ida else
                     ("greets the player" if "reets" in r.situation else r.situation), r.variant)
        for r in requests
    ]  # fmt: skip
    assert [line.cached for line in lines] == [False, True, False, True, False, False, False]


async def test_keys_differ_by_backend_and_after_a_voice_edit(
    tmp_path: Path, make_services: MakeServices
) -> None:
    one, two = LinesBackend("one:model-a"), LinesBackend("two:model-b")
    app = make_services(make_settings(tmp_path, backend="one"), _registry(one, two))
    npc = make_npc()
    requests = _requests([npc], SITUATIONS[:2])
    await app.dialogue.get_dialogues(requests)
    lines = await app.dialogue.get_dialogues(requests, backend="two")
    assert len(one.history) == len(two.history) == 1  # no line crossed backends
    assert not any(line.cached for line in lines)
    # Appearance is not part of the voice: same lines. Speech style is: new lines.
    looks = npc.model_copy(update={"appearance": "Tall, with a scar."})
    assert all(
        line.cached for line in await app.dialogue.get_dialogues(_requests([looks], SITUATIONS[:2]))
    )
    edited = npc.model_copy(update={"speech_style": "Whispers, always."})
    fresh = await app.dialogue.get_dialogues(_requests([edited], SITUATIONS[:2]))
    assert len(one.history) == 2 and not any(line.cached for line in fresh)
    assert [line.key for line in fresh] == [line.key for line in lines]  # same slots


def test_localisation_keys_are_stable_and_distinct() -> None:
    key = localisation_key("npc-1", "Greets the player at dawn!", 2)
    assert key == localisation_key("npc-1", "  greets the player   at dawn! ", 2)
    assert key.startswith("npc-1.greets_the_player_at_dawn_") and key.endswith(".2")
    assert key != localisation_key("npc-1", "greets the player at dawn?", 2)
    assert key != localisation_key("npc-1", "Greets the player at dawn!", 3)


async def test_concurrency_by_backend_kind_and_overrides(
    tmp_path: Path, make_services: MakeServices
) -> None:
    remote, local = LinesBackend("remote:m"), LinesBackend("local:m", kind="local")
    app = make_services(make_settings(tmp_path, backend="remote"), _registry(remote, local))
    limit_remote = app.dialogue.concurrency_for(app.backends.get("remote"), "remote")
    limit_local = app.dialogue.concurrency_for(app.backends.get("local"), "local")
    limit_procedural = app.dialogue.concurrency_for(app.backends.get("procedural"), "procedural")
    assert limit_remote < limit_local == limit_procedural
    settings = make_settings(tmp_path, backend="remote", dialogue_concurrency={"remote": 2})
    overridden = make_services(settings, _registry(remote, local))
    assert overridden.dialogue.concurrency_for(overridden.backends.get("remote"), "remote") == 2
    assert (
        overridden.dialogue.concurrency_for(overridden.backends.get("local"), "local")
        == limit_local
    )


async def test_calls_in_flight_stay_within_the_limit(
    tmp_path: Path, make_services: MakeServices, backend: LinesBackend
) -> None:
    settings = make_settings(
        tmp_path, backend="scripted", dialogue_concurrency={"scripted": 3}, max_concurrency=50
    )
    app = make_services(settings, _registry(backend))
    backend.hold = asyncio.Event()
    npcs = [make_npc(f"Villager {n}") for n in range(12)]
    task = asyncio.create_task(app.dialogue.get_dialogues(_requests(npcs, SITUATIONS[:2])))
    await backend.wait_for_calls(3)
    for _ in range(20):  # the other nine are queued for a slot and stay there
        await asyncio.sleep(0)
    assert backend.in_flight == 3 and len(backend.history) == 3
    backend.hold.set()
    lines = await task
    assert len(lines) == 24 and all(line.ok for line in lines)
    assert backend.max_in_flight == 3 and len(backend.history) == 12
    row = next(r for r in app.observability.concurrency_rows() if r["backend"] == backend.name)
    assert row["dialogue_limit"] == 3


async def test_two_overlapping_runs_generate_each_line_once(
    app: Services, backend: LinesBackend
) -> None:
    maud, ida, ned = make_npc("Maud Hobb"), make_npc("Ida Crane"), make_npc("Ned Pike")
    backend.hold = asyncio.Event()
    first = asyncio.create_task(app.dialogue.get_dialogues(_requests([maud, ida], SITUATIONS[:3])))
    await backend.wait_for_calls(2)  # Maud's and Ida's calls are in flight
    second = asyncio.create_task(app.dialogue.get_dialogues(_requests([ida, ned], SITUATIONS[:4])))
    await backend.wait_for_calls(3)  # only Ida's fourth situation and Ned's: one call
    backend.hold.set()
    one, two = await asyncio.gather(first, second)
    asked = [
        (request.inputs["npc"]["name"], pair)
        for request, call in zip(backend.history, backend.situations(), strict=True)
        for pair in call
    ]
    assert len(asked) == len(set(asked)) == 3 + 3 + 4 + 4 - 3  # Ida's first three shared
    assert all(line.ok for line in [*one, *two])
    assert [line.line for line in two[:3]] == [line.line for line in one[3:6]]


async def test_a_failed_npc_is_reported_and_the_others_delivered(
    app: Services, backend: LinesBackend
) -> None:
    backend.fail_for = {"Ida Crane"}
    backend.error = BackendError(backend.name, "the server said no\n  {'loc': ('body',)}")
    lines = await app.dialogue.get_dialogues(
        _requests([make_npc("Maud Hobb"), make_npc("Ida Crane")], SITUATIONS[:2])
    )
    assert [line.ok for line in lines] == [True, True, False, False]
    assert all("the server said no {'loc'" in (line.error or "") for line in lines[2:])
    assert not any("\n" in (line.error or "") for line in lines)  # one line in a table
    backend.fail_for.clear()  # failures are not cached: a rerun writes them
    again = await app.dialogue.get_dialogues(_requests([make_npc("Ida Crane")], SITUATIONS[:2]))
    assert all(line.ok and not line.cached for line in again)


async def test_a_situation_left_out_is_asked_for_once_more_then_reported(
    app: Services, backend: LinesBackend
) -> None:
    backend.omit = {"situation 2"}
    lines = await app.dialogue.get_dialogues(_requests([make_npc()], SITUATIONS[:3]))
    assert [len(call) for call in backend.situations()] == [3, 1, 1]  # first, then only it
    assert [line.ok for line in lines] == [True, False, True]
    assert "no usable line" in (lines[1].error or "")


async def test_rate_limits_back_off_through_the_guard(
    app: Services, backend: LinesBackend, fake_sleep: Any
) -> None:
    backend.fail_for, backend.failures_left = {"Maud Hobb"}, 1
    backend.error = RateLimitedError(backend.name, "rate limited (HTTP 429)", retry_after=2.0)
    guard = app.backends.get()
    limit = guard.concurrency
    lines = await app.dialogue.get_dialogues(_requests([make_npc()], SITUATIONS[:2]))
    assert all(line.ok for line in lines)
    assert fake_sleep.delays == [2.0]  # waited as the server asked, then retried
    assert guard.rate_limits == 1 and guard.concurrency == max(1, limit // 2)


async def test_regenerate_replaces_the_cached_line(app: Services, backend: LinesBackend) -> None:
    npc = make_npc()
    request = LineRequest(npc, "greets the player", 1)
    old = await app.dialogue.get_dialogue(npc, "greets the player")
    new = await app.dialogue.regenerate(request, take=1, avoid=[old.line or ""])
    assert new.line == written_line(npc.name, "greets the player", 1, take=1) != old.line
    again = await app.dialogue.get_dialogue(npc, "greets the player")
    assert again.cached and again.line == new.line and again.key == old.key


async def test_cache_files_are_compact_by_default(app: Services) -> None:
    await app.dialogue.get_dialogues(_requests([make_npc()], SITUATIONS[:2]))
    assert app.response_cache is not None
    await app.response_cache.flush()
    files = [p for p in Path(app.settings.data_dir, "cache").rglob("*.json")]
    assert len(files) == 2
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "\n" not in text.strip() and ": " not in text


async def test_stats_show_dialogue_hits(app: Services) -> None:
    requests = _requests([make_npc()], SITUATIONS[:4])
    await app.dialogue.get_dialogues(requests)
    await app.dialogue.get_dialogues(requests)
    row = next(r for r in app.observability.cache_rows() if r["name"] == "dialogue.lines")
    assert (row["hits"], row["misses"]) == (4, 4)
