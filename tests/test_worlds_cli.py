"""``python main.py worlds``: list, show, new (flags, file, pitch), rename, delete."""

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


def _out(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


def test_new_from_flags_then_show_list_and_delete(
    capsys: pytest.CaptureFixture[str], _data_dir: Path
) -> None:
    argv = [
        "worlds", "new", "Kelp Hollow", "--era", "Age of sail", "--time-period", "1720",
        "--detail", "overview=A fishing hamlet on a cold coast.",
        "--detail", "places=The harbour, the chapel", "--guardrail", "tone=bleak",
    ]  # fmt: skip
    assert main(argv) == 0
    assert "Saved world 'Kelp Hollow'" in _out(capsys)
    assert (_data_dir / "worlds" / "kelp_hollow.json").is_file()
    assert main(["worlds", "show", "Kelp Hollow"]) == 0
    shown = json.loads(_out(capsys))
    assert shown["detail"] == {
        "overview": "A fishing hamlet on a cold coast.",
        "places": "The harbour, the chapel",
    }
    assert shown["guardrails"] == {"tone": "bleak"}
    assert main(["worlds"]) == 0
    listing = _out(capsys).splitlines()
    assert listing[-1] == "saved    Kelp Hollow  (kelp_hollow.json)"
    assert all(line.startswith("shipped ") for line in listing[:-1])
    assert main(["worlds", "delete", "Kelp Hollow"]) == 0
    assert "Deleted world 'Kelp Hollow'" in _out(capsys)
    assert main(["worlds", "show", "Kelp Hollow"]) == 2


def test_new_from_a_pitch_and_from_a_file_with_overrides(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pitch = "a lighthouse island in the Outer Hebrides, 1890"
    assert main(["worlds", "new", "--pitch", pitch]) == 0
    assert "Saved world 'Lighthouse Island in the Outer Hebrides, 1890'" in _out(capsys)
    assert main(["worlds", "show", "Lighthouse Island in the Outer Hebrides, 1890"]) == 0
    drafted = json.loads(_out(capsys))
    assert "lighthouse keeper" in drafted["detail"]["people"]
    file = tmp_path / "bay.json"
    file.write_text(json.dumps(drafted))
    argv = ["worlds", "new", "Gull Rock", "--from", str(file), "--detail", "tensions=None at all."]
    assert main(argv) == 0
    _out(capsys)
    assert main(["worlds", "show", "Gull Rock"]) == 0
    copied = json.loads(_out(capsys))
    assert copied["detail"]["tensions"] == "None at all."
    assert copied["detail"]["people"] == drafted["detail"]["people"]


def test_shipped_worlds_and_bad_input_get_one_line_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["worlds", "delete", "Roman Empire"]) == 2
    assert "shipped world and stays read-only" in capsys.readouterr().err
    assert main(["worlds", "new", "Empty"]) == 2
    err = capsys.readouterr().err
    assert "Era is empty" in err and "at least one detail section" in err
    assert main(["worlds", "new", "X", "--era", "e", "--time-period", "t", "--detail", "oops"]) == 2
    assert "write it as name=text" in capsys.readouterr().err
