"""World files: the shipped ones, uploads, free text, and every way they can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import InputError, WorldFileError
from app.services.worlds import (
    list_world_files,
    load_world_file,
    parse_world,
    resolve_world,
    world_from_setting,
)
from tests.conftest import WORLDS_DIR


def test_at_least_four_shipped_worlds_all_load() -> None:
    worlds = list_world_files(WORLDS_DIR)
    assert len(worlds) >= 4
    for name, path in worlds.items():
        world = load_world_file(path)
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
        resolve_world(
            world_path=Path("atlantis"), setting="", worlds_dir=WORLDS_DIR, max_setting_chars=100
        )


def test_shipped_world_by_stem() -> None:
    stem = next(iter(list_world_files(WORLDS_DIR).values())).stem
    world = resolve_world(
        world_path=Path(stem), setting=None, worlds_dir=WORLDS_DIR, max_setting_chars=100
    )
    assert world.era


def test_setting_text_limits() -> None:
    with pytest.raises(InputError, match="empty"):
        world_from_setting("   ", max_chars=100)
    with pytest.raises(InputError, match="1,048,576 characters; the limit is 20,000"):
        world_from_setting("x" * 1_048_576, max_chars=20_000)


def test_setting_notes_join_a_world_file() -> None:
    path = next(iter(list_world_files(WORLDS_DIR).values()))
    world = resolve_world(
        world_path=path,
        setting="Everyone fears the tax man.",
        worlds_dir=WORLDS_DIR,
        max_setting_chars=1000,
    )
    assert isinstance(world.detail, dict)
    assert world.detail["designer_notes"] == "Everyone fears the tax man."
    assert "Everyone fears the tax man." in world.full_text()
