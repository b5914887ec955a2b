"""World files: the shipped ones, uploads, free text, and every way they can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import InputError, WorldFileError
from app.models import World
from app.services.worlds import (
    WorldService,
    list_world_files,
    load_world_file,
    parse_world,
    world_from_setting,
)
from tests.conftest import WORLDS_DIR
from utils.cached_json import JSONFileCache


def _service(tmp_path: Path, max_chars: int = 1000) -> WorldService:
    return WorldService(
        WORLDS_DIR, tmp_path / "saved", JSONFileCache(), max_setting_chars=max_chars
    )


def test_at_least_four_shipped_worlds_all_load() -> None:
    worlds = list_world_files(WORLDS_DIR)
    assert len(worlds) >= 4
    for name, path in worlds.items():
        world = load_world_file(path, JSONFileCache())
        assert world.name == name
        assert world.era and world.time_period and world.detail_text()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object, not list"),
        ('{"time_period": "1340"}', "'era' is missing"),
        ('{"era": "x", "time_period": "y", "detail": 5}', "'detail"),
        ('{"era": "x", "time_period": "y", "colour": "red"}', "'colour' is not a world field"),
        ('{"era": "x", "time_period": "y", "guardrails": ["a"]}', "'guardrails'"),
    ],
)
def test_malformed_world_names_the_problem(content: str, problem: str) -> None:
    with pytest.raises(WorldFileError) as caught:
        parse_world(content, source="bad.json", default_name="Bad")
    message = str(caught.value)
    assert message.startswith("World file bad.json:")
    assert problem in message
    assert "Traceback" not in message


def test_huge_world_file_is_refused() -> None:
    content = '{"era": "x", "time_period": "y", "detail": "' + "a" * 1_100_000 + '"}'
    with pytest.raises(WorldFileError, match="the limit is 1,000,000"):
        parse_world(content, source="big.json", default_name="Big")


def test_missing_file_lists_shipped_worlds(tmp_path: Path) -> None:
    with pytest.raises(WorldFileError, match=r"does not exist\. Shipped worlds:"):
        _service(tmp_path).resolve("atlantis", "")


def test_shipped_world_by_stem_or_display_name(tmp_path: Path) -> None:
    name, path = next(iter(list_world_files(WORLDS_DIR).items()))
    by_stem = _service(tmp_path).resolve(path.stem, None).world
    by_name = _service(tmp_path).resolve(name, None).world
    assert by_stem == by_name and by_stem.era


def test_setting_text_limits() -> None:
    with pytest.raises(InputError, match="empty"):
        world_from_setting("   ", max_chars=100)
    with pytest.raises(InputError, match="1,048,576 characters; the limit is 20,000"):
        world_from_setting("x" * 1_048_576, max_chars=20_000)


def test_setting_notes_join_a_world_file(tmp_path: Path) -> None:
    path = next(iter(list_world_files(WORLDS_DIR).values()))
    world = _service(tmp_path).resolve(path, "Everyone fears the tax man.").world
    assert isinstance(world.detail, dict)
    assert world.detail["designer_notes"] == "Everyone fears the tax man."
    assert "Everyone fears the tax man." in world.full_text()


def test_broken_edit_warns_and_keeps_the_last_good_version(tmp_path: Path) -> None:
    shipped = tmp_path / "worlds"
    shipped.mkdir()
    path = shipped / "bay.json"
    path.write_text('{"era": "Age of sail", "time_period": "1720"}')
    service = WorldService(shipped, tmp_path / "saved", JSONFileCache(), max_setting_chars=100)
    assert service.resolve("Bay", None).warning is None
    path.write_text('{"era": "Age of sail", "time_period": ')  # a half-saved edit
    resolved = service.resolve("Bay", None)
    assert resolved.world.time_period == "1720"
    assert resolved.warning is not None and "bay.json has a broken edit" in resolved.warning


def test_remembered_worlds_give_saved_npcs_their_context(tmp_path: Path) -> None:
    service = _service(tmp_path)
    world = World(name="Harrow Bay Notes", era="Victorian", time_period="1890", detail="Fog.")
    service.remember(world)
    assert service.world_for("Harrow Bay Notes") == world
    unknown = service.world_for("Nowhere")
    assert unknown.name == "Nowhere" and unknown.time_period == "unspecified"
