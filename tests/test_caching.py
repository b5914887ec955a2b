"""Caches wired into the app: file reads, personality data, responses, stats, watcher."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.assets import Assets
from app.cli import main
from app.models import World
from app.services.generation import NPCOutcome
from app.services.worlds import load_world_file
from app.wiring import Services
from config import Settings
from tests import casts
from tests.conftest import ASSETS_DIR, MakeServices, make_settings
from tests.fake_openai import FakeOpenAIServer
from utils.cached_json import BrokenJSONError, JSONFileCache
from utils.watching import FolderWatcher

WORLD = World(name="Saltmere", era="Medieval", time_period="1340", detail="A fishing village.")


class CountingParser:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, raw: bytes) -> Any:
        self.calls += 1
        return orjson.loads(raw)


def _bump_mtime(path: Path) -> None:
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))


# -- cached JSON reads ---------------------------------------------------------------
def test_unchanged_file_is_parsed_once(tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    path.write_text('{"era": "Bronze Age"}')
    parser = CountingParser()
    files = JSONFileCache(parse=parser)
    assert files.read(path) == {"era": "Bronze Age"}
    assert files.read(path) is files.read(path)
    assert parser.calls == 1
    assert files.counters.snapshot()[:2] == (2, 1)


def test_touched_or_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    path.write_text('{"era": "Bronze Age"}')
    parser = CountingParser()
    files = JSONFileCache(parse=parser)
    files.read(path)
    _bump_mtime(path)
    files.read(path)
    assert parser.calls == 2
    path.write_text('{"era": "Iron Age, much later"}')
    assert files.read(path) == {"era": "Iron Age, much later"}
    assert parser.calls == 3


def test_broken_edit_keeps_the_last_good_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "world.json"
    path.write_text('{"era": "Bronze Age"}')
    reported: list[tuple[Path, str]] = []
    files = JSONFileCache(on_broken=lambda p, problem: reported.append((p, problem)))
    files.read(path)
    path.write_text('{"era": "Bronze Age",')  # a half-saved edit
    _bump_mtime(path)
    assert files.read(path) == {"era": "Bronze Age"}
    assert files.read(path) == {"era": "Bronze Age"}
    assert len(reported) == 1 and reported[0][0] == path.resolve()  # reported once per version
    assert files.problem(path) is not None
    assert "keeping the last good version" in caplog.text and "world.json" in caplog.text
    path.write_text('{"era": "Fixed Age"}')
    _bump_mtime(path)
    assert files.read(path) == {"era": "Fixed Age"} and files.problem(path) is None


def test_file_that_never_parsed_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{nope")
    with pytest.raises(BrokenJSONError, match=r"broken\.json: not valid JSON"):
        JSONFileCache().read(path)
    with pytest.raises(FileNotFoundError):
        JSONFileCache().read(tmp_path / "missing.json")


def test_refresh_reads_changed_files_and_forgets_deleted_ones(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text("[1]")
    parser = CountingParser()
    files = JSONFileCache(parse=parser)
    files.read(path)
    path.write_text("[1, 2]")
    _bump_mtime(path)
    files.refresh([path])
    assert parser.calls == 2 and files.read(path) == [1, 2] and parser.calls == 2
    path.unlink()
    files.refresh([path])
    assert len(files) == 0


def test_world_files_go_through_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "saltmere.json"
    path.write_text(json.dumps({"era": "Medieval", "time_period": "1340", "detail": "Fish."}))
    parser = CountingParser()
    files = JSONFileCache(parse=parser)
    first = load_world_file(path, files)
    second = load_world_file(path, files)
    assert first == second and first.name == "Saltmere" and parser.calls == 1


def test_personality_data_and_tables_are_built_once_per_file_version() -> None:
    assets = Assets(ASSETS_DIR)
    first = assets.personalities()
    assert assets.personalities() is first
    tables = assets.tables()
    assert assets.tables() is tables and tables.personalities is first
    stats = {s.name: s for s in _stats_of(assets)}
    assert stats["personalities"].misses == 1 and stats["personalities"].hits >= 2
    assert stats["procedural_tables"].misses == 1 and stats["procedural_tables"].hits == 1


def test_two_apps_in_one_process_share_no_cache(tmp_path: Path) -> None:
    one, two = Services(make_settings(tmp_path)), Services(make_settings(tmp_path))
    assert one.assets.files is not two.assets.files
    assert one.assets.tables() is not two.assets.tables()


def _stats_of(assets: Assets):  # type: ignore[no-untyped-def]
    from app.cache.stats import StatsRegistry

    registry = StatsRegistry()
    assets.register_stats(registry)
    return registry.snapshot()


# -- the response cache in generation ------------------------------------------------
async def _generate(
    services: Services, count: int = 3, *, use_cache: bool = True
) -> list[NPCOutcome]:
    return await casts.outcomes(services, WORLD, count, seed=11, use_cache=use_cache)


async def test_second_identical_cast_does_not_reach_the_backend_or_the_disk(
    openai_services: Services, openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _generate(openai_services)
    assert len(openai_server.requests) == 3 and not any(o.npc.cached for o in first)  # type: ignore[union-attr]
    cache = openai_services.response_cache
    assert cache is not None and cache.disk is not None

    def no_disk(*args: object) -> None:
        raise AssertionError("the memory tier should have answered")

    monkeypatch.setattr(cache.disk, "get", no_disk)
    second = await _generate(openai_services)
    assert len(openai_server.requests) == 3
    assert all(o.npc.cached for o in second)  # type: ignore[union-attr]
    assert [o.npc.model_dump(exclude={"cached", "timing"}) for o in first] == [  # type: ignore[union-attr]
        o.npc.model_dump(exclude={"cached", "timing"})
        for o in second  # type: ignore[union-attr]
    ]


async def test_after_a_restart_the_disk_tier_serves(
    openai_settings: Settings, openai_server: FakeOpenAIServer, make_services: MakeServices
) -> None:
    first = make_services(openai_settings)
    await _generate(first)
    await first.aclose()  # the disk writes run in the background until then
    restarted = make_services(openai_settings)
    outcomes = await _generate(restarted)
    assert len(openai_server.requests) == 3
    assert all(o.npc.cached for o in outcomes)  # type: ignore[union-attr]
    assert restarted.response_cache is not None
    assert restarted.response_cache.disk.stats().hits == 3  # type: ignore[union-attr]


async def test_regenerate_bypasses_the_cache(
    openai_services: Services, openai_server: FakeOpenAIServer
) -> None:
    await _generate(openai_services)
    outcomes = await _generate(openai_services, use_cache=False)
    assert len(openai_server.requests) == 6
    assert not any(o.npc.cached for o in outcomes)  # type: ignore[union-attr]


async def test_models_and_servers_never_share_entries(
    tmp_path: Path, openai_server: FakeOpenAIServer, make_services: MakeServices
) -> None:
    common = {
        "backend": "openai",
        "openai_base_url": openai_server.base_url,
        "data_dir": tmp_path / "d",
    }
    await _generate(make_services(make_settings(tmp_path, openai_model="model-a", **common)))
    await _generate(make_services(make_settings(tmp_path, openai_model="model-b", **common)))
    assert len(openai_server.requests) == 6


async def test_procedural_responses_are_not_cached(services: Services) -> None:
    await _generate(services)
    assert services.response_cache is not None and len(services.response_cache.memory) == 0


async def test_cache_can_be_switched_off(
    tmp_path: Path, openai_server: FakeOpenAIServer, make_services: MakeServices
) -> None:
    settings = make_settings(
        tmp_path, backend="openai", openai_base_url=openai_server.base_url, cache_enabled=False
    )
    services = make_services(settings)
    await _generate(services)
    await _generate(services)
    assert len(openai_server.requests) == 6 and services.response_cache is None


async def test_warm_up_fills_the_memory_tier_from_disk(
    openai_settings: Settings, openai_server: FakeOpenAIServer, make_services: MakeServices
) -> None:
    first = make_services(openai_settings)
    await _generate(first)
    await first.aclose()
    restarted = make_services(openai_settings)
    await restarted.warm_up()
    cache = restarted.response_cache
    assert cache is not None and len(cache.memory) == 3


def test_stats_registry_lists_every_cache(openai_services: Services) -> None:
    assert openai_services.response_cache is not None
    names = openai_services.stats.names()
    for name in (
        "json_files",
        "personalities",
        "procedural_tables",
        "procedural.genres",
        "procedural.cast_names",
        "responses.memory",
        "responses.disk",
    ):
        assert name in names
    table = openai_services.stats.table()
    assert table.splitlines()[0].split()[:3] == ["name", "hits", "misses"]


def test_cache_command_stats_and_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NPC_FORGE_DATA_DIR", str(tmp_path / "data"))
    settings = make_settings(tmp_path)
    services = Services(settings)
    assert services.response_cache is not None and services.response_cache.disk is not None
    services.response_cache.disk.put("ab" * 32, {"profile": {}, "repaired": False})
    assert main(["cache", "stats"]) == 0
    out = capsys.readouterr().out
    assert "1 entries" in out and "responses.disk" in out
    assert main(["cache", "clear"]) == 0
    assert "Removed 1 cached responses" in capsys.readouterr().out


def test_watcher_reports_changes(tmp_path: Path) -> None:
    seen: list[set[Path]] = []
    changed = threading.Event()

    def on_change(paths: set[Path]) -> None:
        seen.append(paths)
        changed.set()

    with FolderWatcher([tmp_path], on_change, debounce_ms=50) as watcher:
        assert watcher.ready.wait(10)
        (tmp_path / "new_world.json").write_text("{}")
        assert changed.wait(10), "no change reported"
    assert any(path.name == "new_world.json" for paths in seen for path in paths)
