"""Issue 9's rate-limit scenarios end to end: casts over HTTP against a server
that answers 429 a lot. Every NPC arrives; the circuit stays closed."""

from __future__ import annotations

import random
from pathlib import Path

from app.models import World
from app.wiring import Services
from tests import casts
from tests.conftest import FakeSleep, make_settings
from tests.fake_openai import Action, FakeOpenAIServer

WORLD = World(name="Saltmere", era="Medieval", time_period="1340", detail="A fishing village.")


def _services(
    tmp_path: Path, server: FakeOpenAIServer, sleep: FakeSleep, **settings: object
) -> Services:
    values: dict[str, object] = {
        "backend": "openai",
        "openai_base_url": server.base_url,
        "openai_model": "fake-model",
        "max_concurrency": 8,
        "cache_enabled": False,
    }
    values.update(settings)
    return Services(make_settings(tmp_path, **values), sleep=sleep)


async def test_sixty_percent_429s_at_concurrency_8_lose_no_npc(
    tmp_path: Path, openai_server: FakeOpenAIServer, fake_sleep: FakeSleep
) -> None:
    rng = random.Random(3)
    # 60% of answers are 429 (Retry-After: 1) until the script runs out.
    openai_server.enqueue(
        *(Action(status=429, retry_after=1) if rng.random() < 0.6 else Action() for _ in range(80))
    )
    services = _services(tmp_path, openai_server, fake_sleep)
    try:
        outcomes = await casts.outcomes(services, WORLD, 30)
        guard = services.backends.get()
    finally:
        await services.aclose()
    assert [o.error for o in outcomes if not o.ok] == []
    assert guard.breaker.state == "closed" and guard.breaker.failures == 0
    assert guard.rate_limits > 0 and set(fake_sleep.delays) == {1.0}


async def test_a_burst_of_429s_with_retries_off_loses_no_npc(
    tmp_path: Path, openai_server: FakeOpenAIServer, fake_sleep: FakeSleep
) -> None:
    openai_server.enqueue(*(Action(status=429, retry_after=1) for _ in range(8)))
    services = _services(tmp_path, openai_server, fake_sleep, max_retries=0)
    try:
        outcomes = await casts.outcomes(services, WORLD, 20)
    finally:
        await services.aclose()
    assert [o.error for o in outcomes if not o.ok] == []
    assert len(openai_server.requests) == 28
