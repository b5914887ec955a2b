"""``python main.py library``: list, search, show, edit and delete saved NPCs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main

pytestmark = pytest.mark.usefixtures("cli_data_dir")


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def _saved_cast(tmp_path: Path, capsys: pytest.CaptureFixture[str], n: int) -> list[dict[str, Any]]:
    """A Saltmere cast generated and saved the way a user would, as written."""
    out = tmp_path / "cast.jsonl"
    argv = ["generate", "--world", "Saltmere", "-n", str(n), "--seed", "4", "--save"]
    assert main([*argv, "--out", str(out)]) == 0
    capsys.readouterr()
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_saved_cast_listed_searched_shown_edited_deleted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    made = _saved_cast(tmp_path, capsys, 3)

    assert main(["library", "list", "--world", "Saltmere", "--json"]) == 0
    listed = _json(capsys)
    assert sorted(row["id"] for row in listed) == sorted(npc["id"] for npc in made)

    second = made[1]  # whatever the generator made: found by its own story
    assert main(["library", "search", second["backstory"], "-k", "1", "--json"]) == 0
    [hit] = _json(capsys)
    assert hit["id"] == second["id"] and 0 < hit["match"] <= 1

    assert main(["library", "show", second["id"]]) == 0
    shown = capsys.readouterr().out
    assert (
        shown.startswith(f"{second['name']}, {second['occupation']}") and second["secret"] in shown
    )

    assert main(["library", "edit", second["id"], "occupation", "wrecker", "--json"]) == 0
    assert _json(capsys)["occupation"] == "wrecker"

    assert main(["library", "delete", second["id"]]) == 0
    assert capsys.readouterr().out.startswith(f"Deleted {second['name']} ({second['id']})")
    assert main(["library", "show", second["id"]]) == 2
    assert "No NPC with id" in capsys.readouterr().err


def test_bad_edit_says_what_to_do(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    [npc] = _saved_cast(tmp_path, capsys, 1)
    npc_id = npc["id"]
    assert main(["library", "edit", npc_id, "age", "old"]) == 2
    assert "Age must be a whole number; got 'old'" in capsys.readouterr().err
    assert main(["library", "search", "   "]) == 2
    assert "Type what you are looking for" in capsys.readouterr().err
