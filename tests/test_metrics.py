"""Observability: Prometheus metrics, percentiles, the stats API, /metrics, logging."""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from app.cli import main
from app.logs import RedactingFilter, redact
from app.metrics import Metrics, percentile
from app.models import World
from app.wiring import Services
from tests import casts
from tests.conftest import MakeServices, make_settings
from tests.fake_openai import Action, FakeOpenAIServer
from tests.npc_fixtures import valid_profile
from tests.threaded_server import free_port

WORLD = World(name="Saltmere", era="Medieval", time_period="1340", detail="A fishing village.")
BACKEND = "openai:fake-model"


def test_percentiles_on_a_known_sample() -> None:
    sample = [float(value) for value in range(1, 101)]
    assert percentile(sample, 50) == pytest.approx(50.5)
    assert percentile(sample, 95) == pytest.approx(95.05)
    assert percentile(sample, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert percentile(list(reversed(sample)), 0) == 1.0
    assert math.isnan(percentile([], 50))


def test_metrics_use_their_own_registry() -> None:
    first, second = Metrics(), Metrics(CollectorRegistry())
    first.npcs.labels("x", "ok").inc()
    assert (
        first.registry.get_sample_value("npc_forge_npcs_total", {"backend": "x", "status": "ok"})
        == 1
    )
    assert (
        second.registry.get_sample_value("npc_forge_npcs_total", {"backend": "x", "status": "ok"})
        is None
    )


async def _cast(services: Services, count: int, seed: int = 5) -> None:
    outcomes = await casts.outcomes(services, WORLD, count, seed=seed)
    assert all(o.ok for o in outcomes)


async def test_known_workload_gives_known_counts(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    # 5 generations, 2 of them cache hits: the first 2 NPCs of the cast again.
    await _cast(openai_services, 3)
    await _cast(openai_services, 2)
    value = openai_services.metrics.registry.get_sample_value
    assert (
        value("npc_forge_cache_requests_total", {"cache": "responses.memory", "result": "hit"}) == 2
    )
    assert (
        value("npc_forge_cache_requests_total", {"cache": "responses.memory", "result": "miss"})
        == 3
    )
    assert (
        value(
            "npc_forge_backend_latency_seconds_count",
            {"backend": BACKEND, "operation": "npc_profile"},
        )
        == 3
    )
    assert (
        value(
            "npc_forge_time_to_first_token_seconds_count",
            {"backend": BACKEND, "operation": "npc_profile"},
        )
        == 3
    )
    assert value("npc_forge_npcs_total", {"backend": BACKEND, "status": "ok"}) == 5
    assert value("npc_forge_batch_seconds_count", {"backend": BACKEND}) == 2
    assert value("npc_forge_npc_stage_seconds_count", {"backend": BACKEND, "stage": "queue"}) == 3
    assert value("npc_forge_backend_concurrency_limit", {"backend": BACKEND}) == 8
    assert value("npc_forge_backend_in_flight", {"backend": BACKEND}) == 0
    assert len(openai_server.requests) == 3


async def test_retries_failures_and_repairs_are_counted(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    broken = valid_profile()
    del broken["secret"]
    openai_server.fail(503)
    openai_server.enqueue(Action(content=json.dumps(broken)))
    await _cast(openai_services, 1)
    value = openai_services.metrics.registry.get_sample_value
    labels = {"backend": BACKEND, "operation": "npc_profile"}
    assert value("npc_forge_backend_requests_total", {**labels, "status": "retried"}) == 1
    assert value("npc_forge_backend_requests_total", {**labels, "status": "ok"}) == 1
    assert value("npc_forge_backend_requests_total", {**labels, "status": "repaired"}) == 1
    repair = {"backend": BACKEND, "operation": "repair", "status": "ok"}
    assert value("npc_forge_backend_requests_total", repair) == 1
    assert value("npc_forge_circuit_state", {"backend": BACKEND}) == 0


async def test_stats_snapshot_matches_the_registry(openai_services: Services) -> None:
    await _cast(openai_services, 4)
    await openai_services.aclose()  # let the background cache writes land first
    snapshot = openai_services.observability.snapshot()
    assert snapshot["caches"] == [s.as_dict() for s in openai_services.stats.snapshot()]
    [latency] = snapshot["latency"]
    assert latency["backend"] == BACKEND and latency["count"] == 4
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert latency["ttft_p50_ms"] is not None
    [concurrency] = snapshot["concurrency"]
    assert (
        concurrency["limit"] == 8
        and concurrency["in_flight"] == 0
        and concurrency["circuit"] == "closed"
    )
    assert len(snapshot["last_batch"]) == 4
    assert set(snapshot["last_batch"][0]) == {"npc", "queue", "backend", "parse", "repair", "total"}


async def test_one_log_line_per_batch(
    openai_services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.services.generation"):
        await _cast(openai_services, 3)
    lines = [r.getMessage() for r in caplog.records if r.name == "app.services.generation"]
    assert lines == [lines[0]] and f"cast from {BACKEND}: 3 ok, 0 failed" in lines[0]


def test_secrets_are_redacted() -> None:
    assert redact("key sk-abcdefghijklmnop used") == "key *** used"
    assert redact("Authorization: Bearer abc.def.ghijkl") == "Authorization: Bearer ***"
    assert redact('{"api_key": "hunter22"}') == '{"api_key": "***"}'
    assert redact("my-own-token-value here", ["my-own-token-value"]) == "*** here"
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "calling with %s", ("sk-secretsecret123",), None
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == "calling with ***"


def test_stats_command_without_a_running_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--url", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Is the app running?" in err


@pytest.mark.server
@pytest.mark.slow
def test_metrics_endpoint_and_stats_api_on_the_running_app(
    openai_services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradio_client import Client

    from app.ui.app import serve, shutdown

    demo = serve(openai_services, host="127.0.0.1", port=free_port())
    try:
        client = Client(demo.local_url, verbose=False)
        world = openai_services.worlds.names()[0]
        client.predict(
            world, None, "", 3, "", [], "openai", 0.9, 1, True, api_name="/generate_npcs"
        )
        with urllib.request.urlopen(demo.local_url + "metrics") as response:
            assert response.headers["content-type"].startswith("text/plain; version=")
            body = response.read().decode()
        for name in (
            "npc_forge_npcs_total",
            "npc_forge_backend_latency_seconds_bucket",
            "npc_forge_cache_requests_total",
            "npc_forge_time_to_first_token_seconds_count",
            "npc_forge_circuit_state",
        ):
            assert name in body
        assert f'npc_forge_npcs_total{{backend="{BACKEND}",status="ok"}} 3.0' in body
        api = client.predict(api_name="/stats")
        assert api["caches"] == openai_services.observability.snapshot()["caches"]
        assert api["latency"][0]["count"] == 3
        assert main(["stats", "--url", demo.local_url]) == 0
        out = capsys.readouterr().out
        assert "Caches" in out and "responses.memory" in out and BACKEND in out
    finally:
        shutdown(openai_services, demo)


@pytest.mark.server
@pytest.mark.slow
def test_with_sign_in_the_figures_answer_only_an_account(
    tmp_path: Path, make_services: MakeServices, capsys: pytest.CaptureFixture[str]
) -> None:
    """/metrics and /stats.json name users (their quotas): on a shared link they
    are not for the internet; a scraper or the stats command signs in with Basic."""
    from app.ui.app import serve, shutdown

    services = make_services(make_settings(tmp_path, auth=("ann:pw-ann",)))
    demo = serve(services, host="127.0.0.1", port=free_port())
    url = demo.local_url
    try:
        for path in ("metrics", "stats.json"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url + path)
            with refused.value:  # an HTTPError holds the response (and its socket) open
                assert refused.value.code == 401
                assert refused.value.headers["WWW-Authenticate"] == 'Basic realm="NPC Forge"'
        with urllib.request.urlopen(url + "healthz") as health:  # a load balancer's check
            assert health.status == 200
        assert main(["stats", "--url", url]) == 1
        assert "asks to sign in: give an account with --login" in capsys.readouterr().err
        assert main(["stats", "--url", url, "--login", "ann:wrong"]) == 1
        assert "refused that account" in capsys.readouterr().err
        assert main(["stats", "--url", url, "--login", "ann:pw-ann", "--json"]) == 0
        assert [row["user"] for row in json.loads(capsys.readouterr().out)["quotas"]] == []
    finally:
        shutdown(services, demo)
