"""The dialogue-lines quota: new lines charged before they are written, cached ones free."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.services.quotas import QuotaExceededError
from app.ui.dialogue_tab import NO_WORLD, DialogueHandlers
from app.wiring import Services
from tests import casts
from tests.conftest import MakeServices, make_settings

ADDRESS = "10.0.0.5"
REQUEST: Any = SimpleNamespace(username=None, client=SimpleNamespace(host=ADDRESS))


async def _app(
    tmp_path: Path, make_services: MakeServices, **settings: Any
) -> tuple[Services, DialogueHandlers, str]:
    services = make_services(make_settings(tmp_path, library_autosave=True, **settings))
    world = services.worlds.resolve("saltmere", None).world
    [outcome] = await casts.outcomes(services, world, 1, seed=4)
    assert outcome.npc is not None
    await services.library.save([outcome.npc])
    handlers = DialogueHandlers(
        services.dialogue, services.dialogue_planner, services.library, tmp_path / "x",
        services.backends.names(), services.admission,
    )  # fmt: skip
    return services, handlers, outcome.npc.id


async def _run(handlers: DialogueHandlers, npc_id: str, situations: str, variants: int) -> Any:
    *_, last = [
        u
        async for u in handlers.generate(
            [npc_id], NO_WORLD, situations, [], variants, "procedural", request=REQUEST
        )
    ]
    return last


async def test_new_lines_are_charged_cached_ones_are_free_and_the_next_run_refused(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services, handlers, npc = await _app(tmp_path, make_services, quota_lines_per_hour=10)
    used = lambda: services.quotas.used("lines", ADDRESS)  # noqa: E731
    last = await _run(handlers, npc, "greets the player\nplayer steals", 2)
    assert len(last[1]) == 4 and "0 cached" in last[2] and used() == 4
    last = await _run(handlers, npc, "greets the player\nplayer steals", 2)
    assert "4 cached" in last[2] and used() == 4  # served from the cache: not charged
    # 6 asked, 4 of them cached: the 2 new ones are charged.
    last = await _run(handlers, npc, "greets the player\nplayer steals", 3)
    assert "4 cached" in last[2] and used() == 6
    # 10 asked, 6 of them cached: the 4 new ones fit, nothing is refused...
    await _run(handlers, npc, "greets the player\nplayer steals", 5)
    assert used() == 10
    # ...but now 3 new lines do not: refused before they are written; the page
    # keeps what the cache gave and says why the rest is missing.
    shown = []
    with pytest.raises(QuotaExceededError) as refused:
        async for outputs in handlers.generate(
            [npc], NO_WORLD, "greets the player\nasked about the ship", [], 3, "procedural",
            request=REQUEST,
        ):  # fmt: skip
            shown.append(outputs)
    assert "10 dialogue lines per hour (10 used, 0 left)" in str(refused.value)
    assert "Try again in 60 min" in str(refused.value) and used() == 10
    lines, status = shown[-1][1], shown[-1][2]
    assert status.startswith("Not written: Quota reached") and len(lines) == 3
    assert all(line["cached"] and line["situation"] == "greets the player" for line in lines)
    # A regenerated line is one more: refused too. Shown in Stats and /metrics like
    # the other kinds.
    with pytest.raises(QuotaExceededError):
        await handlers.regenerate(last[1][0]["key"], "procedural", [], last[5], request=REQUEST)
    [row] = services.observability.quota_rows()
    assert row["user"] == ADDRESS and row["lines last hour"] == "10 / 10"
    metrics = services.observability.prometheus()
    assert b'npc_forge_quota_used{kind="lines"} 10.0' in metrics
    assert b'npc_forge_quota_refusals_total{kind="lines"} 2.0' in metrics


async def test_a_stopped_run_gives_back_the_lines_it_did_not_write(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services, handlers, npc = await _app(tmp_path, make_services, quota_lines_per_hour=100)
    run = handlers.generate(
        [npc], NO_WORLD, "", ["greeting", "barter"], 3, "procedural", request=REQUEST
    )
    first = await anext(run)
    handlers.stop(first[6])
    *_, last = [u async for u in run]
    written = len(last[1])  # of 6 x 3: the 18 were charged, the unwritten given back
    assert 0 < written < 18 and services.quotas.used("lines", ADDRESS) == written
    assert services.quotas.refusals["lines"] == 0
    # A new take of one line is one more line.
    await handlers.regenerate(last[1][0]["key"], "procedural", [], last[5], request=REQUEST)
    assert services.quotas.used("lines", ADDRESS) == written + 1


async def test_zero_means_no_limit_and_locked_lines_are_not_charged(
    tmp_path: Path, make_services: MakeServices
) -> None:
    services, handlers, npc = await _app(tmp_path, make_services, quota_lines_per_hour=0)
    last = await _run(handlers, npc, "greets the player", 5)
    assert len(last[1]) == 5 and services.quotas.used("lines", ADDRESS) == 0
    services2, handlers2, npc2 = await _app(tmp_path / "b", make_services, quota_lines_per_hour=3)
    first = await _run(handlers2, npc2, "greets the player", 3)
    # The quota is spent, and a run the cache can serve whole is still served.
    again = await _run(handlers2, npc2, "greets the player", 3)
    assert "3 cached" in again[2] and services2.quotas.refusals["lines"] == 0
    keys = [line["key"] for line in first[1]]
    # All three locked: nothing to write, nothing charged, though the quota is spent.
    *_, again = [
        u
        async for u in handlers2.generate(
            [npc2], NO_WORLD, "greets the player", [], 3, "procedural", keys, first[5],
            request=REQUEST,
        )
    ]  # fmt: skip
    assert [line["line"] for line in again[1]] == [line["line"] for line in first[1]]
    assert services2.quotas.used("lines", ADDRESS) == 3
