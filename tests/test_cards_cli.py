"""``python main.py cards check|import|export``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from tests.test_cards_import import CARDS


def test_check_says_which_files_are_valid_cards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = json.loads((CARDS / "odile_v2.json").read_text())
    del broken["data"]["character_book"]["extensions"]
    (tmp_path / "old.json").write_text(json.dumps(broken))
    (tmp_path / "text.json").write_text("hello")
    files = [str(CARDS / "odile_v2.json"), str(tmp_path / "old.json"), str(tmp_path / "text.json")]
    assert main(["cards", "check", *files]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "odile_v2.json: valid",
        "old.json: INVALID",
        "  data.character_book: 'extensions' is a required property",
        "text.json: INVALID",
        "  the file is not valid JSON (Expecting value: line 1 column 1 (char 0)).",
    ]


def test_import_then_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NPC_FORGE_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    files = [str(CARDS / "odile_v2.json"), str(tmp_path / "junk.png")]
    assert main(["cards", "import", *files]) == 1  # one of two refused
    captured = capsys.readouterr()
    npc_id, name = captured.out.split()[0], captured.out.strip().split("\t")[1]
    assert name == "Odile Marchetti" and "junk.png: the PNG is cut short" in captured.err
    assert captured.err.splitlines()[-1] == "Imported 1 card from 2 files; 1 refused."
    out = tmp_path / "odile.card.json"
    assert main(["cards", "export", npc_id, "-f", "v2-json", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads((CARDS / "odile_v2.json").read_text())
    assert main(["cards", "export", npc_id, "-f", "yaml"]) == 2
    assert "Unknown format 'yaml'" in capsys.readouterr().err
