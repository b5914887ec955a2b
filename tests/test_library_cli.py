"""``python main.py library``: list, search, show, edit and delete saved NPCs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NPC_FORGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NPC_FORGE_BACKEND", "procedural")
    return tmp_path / "data"


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_saved_cast_listed_searched_shown_edited_deleted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "cast.jsonl"
    assert (
        main(
            [
                "generate",
                "--world",
                "Saltmere",
                "-n",
                "3",
                "--seed",
                "4",
                "--save",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    made = [json.loads(line) for line in out.read_text().splitlines()]
    capsys.readouterr()

    assert main(["library", "list", "--world", "Saltmere", "--json"]) == 0
    listed = _json(capsys)
    assert sorted(row["id"] for row in listed) == sorted(npc["id"] for npc in made)  # type: ignore[union-attr,index]

    smuggler = next(npc for npc in made if npc["occupation"] == "smuggler")
    assert main(["library", "search", "a smuggler", "-k", "1", "--json"]) == 0
    [hit] = _json(capsys)  # type: ignore[misc]
    assert hit["id"] == smuggler["id"] and 0 < hit["match"] <= 1

    assert main(["library", "show", smuggler["id"]]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"{smuggler['name']}, smuggler") and smuggler["secret"] in shown

    assert main(["library", "edit", smuggler["id"], "occupation", "wrecker", "--json"]) == 0
    assert _json(capsys)["occupation"] == "wrecker"  # type: ignore[index]

    assert main(["library", "delete", smuggler["id"]]) == 0
    assert capsys.readouterr().out.startswith(f"Deleted {smuggler['name']} ({smuggler['id']})")
    assert main(["library", "show", smuggler["id"]]) == 2
    assert "No NPC with id" in capsys.readouterr().err


def test_bad_edit_says_what_to_do(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "cast.jsonl"
    assert (
        main(
            [
                "generate",
                "--world",
                "Saltmere",
                "-n",
                "1",
                "--seed",
                "4",
                "--save",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    npc_id = json.loads(out.read_text())["id"]
    capsys.readouterr()
    assert main(["library", "edit", npc_id, "age", "old"]) == 2
    assert "Age must be a whole number; got 'old'" in capsys.readouterr().err
    assert main(["library", "search", "   "]) == 2
    assert "Type what you are looking for" in capsys.readouterr().err
