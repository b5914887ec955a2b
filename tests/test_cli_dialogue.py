"""``python main.py dialogue``: lines to stdout or a file, cached on the second run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from config import PROJECT_DIR


@pytest.fixture
def cast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NPC_FORGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NPC_FORGE_LIBRARY_AUTOSAVE", "false")
    out = tmp_path / "cast.jsonl"
    args = ["generate", "--world", "saltmere", "-n", "3", "--seed", "2", "--out", str(out)]
    assert main([*args, "--backend", "procedural", "--no-progress"]) == 0
    return out


@pytest.fixture
def situations(tmp_path: Path) -> Path:
    path = tmp_path / "situations.txt"
    path.write_text(
        "greets the player at dawn\n# not a situation\n\nplayer steals\nPlayer  steals\n"
    )
    return path


def test_lines_to_a_csv_then_from_the_cache(
    tmp_path: Path, cast: Path, situations: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lines.csv"
    args = ["dialogue", "--cast", str(cast), "--situations", str(situations), "--variants", "2"]
    assert main([*args, "--out", str(out)]) == 0
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2 * 2 and len({row["key"] for row in rows}) == 12
    assert [row["situation"] for row in rows[:4]] == ["greets the player at dawn"] * 2 + [
        "player steals"
    ] * 2
    assert "12/12 lines from procedural:v1: 0 cached, 12 new in 3 calls" in capsys.readouterr().err
    first = out.read_bytes()
    assert main([*args, "--out", str(out)]) == 0
    assert "12 cached, 0 new in 0 calls" in capsys.readouterr().err
    assert out.read_bytes() == first  # same keys, same lines


def test_lines_to_stdout_as_json_lines(cast: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dialogue", "--cast", str(cast), "--shipped", "barter", "rumour"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # 3 NPCs x (2 barter + 2 rumour situations)
    assert len(lines) == 3 * 4 and all(line["line"] and not line["error"] for line in lines)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--variants", "0", "--shipped"], "Variants per situation must be between 1 and 5"),
        (["--shipped", "sonnets"], "No shipped situations of kind sonnets"),
        (["--out", "lines.xlsx", "--shipped"], "Unknown dialogue export format"),
        ([], "Give at least one situation"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    cast: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["dialogue", "--cast", str(cast), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


@pytest.mark.slow
def test_dialogue_for_library_npcs_by_id(tmp_path: Path) -> None:
    env = {**os.environ, "NPC_FORGE_DATA_DIR": str(tmp_path / "data")}
    cast = tmp_path / "cast.jsonl"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "main.py", *args], cwd=PROJECT_DIR, capture_output=True,
            text=True, timeout=120, env=env,
        )  # fmt: skip

    made = run("generate", "--world", "saltmere", "-n", "2", "--seed", "3", "--backend",
               "procedural", "--save", "--out", str(cast))  # fmt: skip
    assert made.returncode == 0, made.stderr
    ids = [json.loads(line)["id"] for line in cast.read_text().splitlines()]
    out = tmp_path / "barks.ink"
    result = run("dialogue", "--npc", ids[1], "--npc", ids[0], "--shipped", "greeting",
                 "--variants", "3", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_text().count("{shuffle:") == 2 * 3
    missing = run("dialogue", "--npc", "npc-nobody", "--shipped")
    assert missing.returncode == 2 and "No NPC with id 'npc-nobody'" in missing.stderr
