"""The command line: generate to JSON Lines, clear one-line errors, light imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from config import PROJECT_DIR
from tests.conftest import WORLDS_DIR
from tests.fake_openai import Action, FakeOpenAIServer


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _first_world() -> Path:
    return next(iter(sorted(WORLDS_DIR.glob("*.json"))))


def test_help_and_generate_do_not_import_heavy_libraries(tmp_path: Path) -> None:
    out = tmp_path / "cast.jsonl"
    code = (
        "import sys; from app.cli import main;"
        "main(['--help']) if False else None;"
        f"rc = main(['generate', '--world', {str(_first_world())!r}, '-n', '3', '--seed', '1',"
        f" '--backend', 'procedural', '--out', {str(out)!r}]);"
        "heavy = sorted(m for m in ('gradio', 'chromadb', 'openai') if m in sys.modules);"
        "print(rc, heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "0 []"
    help_run = run_cli("--help")
    assert help_run.returncode == 0 and "generate" in help_run.stdout


def test_generate_writes_json_lines_in_request_order(tmp_path: Path) -> None:
    out = tmp_path / "cast.jsonl"
    result = run_cli(
        "generate", "--world", str(_first_world()), "-n", "12", "--seed", "4",
        "--name", "Maud: curious", "--backend", "procedural", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 12
    npcs = [json.loads(line) for line in lines]
    assert npcs[0]["name"] == "Maud" and "curious" in npcs[0]["personality_traits"]
    assert len({npc["id"] for npc in npcs}) == 12
    assert "12/12 NPCs from procedural:v1" in result.stderr and "seed 4" in result.stderr


def test_generate_to_stdout_by_shipped_name(capsys: pytest.CaptureFixture[str]) -> None:
    stem = _first_world().stem
    assert (
        main(["generate", "--world", stem, "-n", "2", "--seed", "8", "--backend", "procedural"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(json.loads(line)["backend"] == "procedural:v1" for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--world", "WORLD", "-n", "0"], "between 1 and 100; got 0"),
        (["--world", "WORLD", "-n", "10000"], "between 1 and 100; got 10000"),
        (["--world", "WORLD", "--backend", "skynet"], "Unknown backend 'skynet'"),
        (["--world", "atlantis"], "World file atlantis: does not exist"),
        (["--setting", "   "], "setting text is empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(_first_world()) if arg == "WORLD" else arg for arg in args]
    assert main(["generate", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err


def test_malformed_world_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"era": "Bronze Age",')
    assert main(["generate", "--world", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "World file broken.json: is not valid JSON" in err


def test_huge_setting_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--setting", "x" * 1_048_576]) == 2
    assert "the limit is 20,000" in capsys.readouterr().err


def test_generate_against_an_openai_compatible_server(
    tmp_path: Path, openai_server: FakeOpenAIServer
) -> None:
    out = tmp_path / "cast.jsonl"
    result = run_cli(
        "generate", "--world", str(_first_world()), "-n", "4", "--backend", "openai",
        "--base-url", openai_server.base_url, "--model", "fake-model", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == 4
    assert len(openai_server.requests) == 4


def test_failed_npcs_give_exit_code_1_and_keep_the_rest(
    tmp_path: Path, openai_server: FakeOpenAIServer
) -> None:
    out = tmp_path / "cast.jsonl"
    openai_server.fail(403)
    result = run_cli(
        "generate", "--setting", "A lighthouse at the end of the world", "-n", "3",
        "--concurrency", "1", "--backend", "openai", "--base-url", openai_server.base_url,
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 1
    assert "NPC 1 failed" in result.stderr and "HTTP 403" in result.stderr
    assert len(out.read_text().splitlines()) == 2


def test_backends_and_worlds_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    assert "procedural  <- auto" in capsys.readouterr().out
    assert main(["worlds"]) == 0
    assert _first_world().stem in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], {"host": None, "port": None, "share": False, "no_auth": False}),
        (
            ["ui", "--host", "0.0.0.0", "--port", "8001", "--share", "--no-auth"],
            {"host": "0.0.0.0", "port": 8001, "share": True, "no_auth": True},
        ),
    ],
)
def test_ui_command_and_the_default(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: dict[str, object]
) -> None:
    import app.ui

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(app.ui, "launch", lambda services, **kwargs: calls.append(kwargs))
    assert main(argv) == 0
    assert calls == [expected]


def test_resume_keeps_finished_npcs_and_makes_the_rest(
    tmp_path: Path, openai_server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cast.jsonl"
    args = [
        "generate", "--setting", "A lighthouse at the end of the world", "-n", "4",
        "--concurrency", "1", "--backend", "openai",
        "--base-url", openai_server.base_url, "--out", str(out),
    ]  # fmt: skip
    openai_server.fail(403)  # the first NPC fails; the other three are written
    assert main([*args, "--seed", "5"]) == 1
    assert len(out.read_text().splitlines()) == 3
    with out.open("a") as handle:
        handle.write('{"name": "half a li')  # a crash in the middle of a line
    openai_server.reset()
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0  # the seed comes from the file
    assert len(openai_server.requests) == 1
    npcs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(npcs) == 4 and len({npc["id"] for npc in npcs}) == 4
    assert {npc["cast_seed"] for npc in npcs} == {5}
    assert "3 kept from the file" in capsys.readouterr().err
    assert main([*args, "--resume", "--seed", "6"]) == 2  # another cast's seed is refused


def test_an_echoed_api_key_reaches_neither_stderr_nor_the_file(
    tmp_path: Path, openai_server: FakeOpenAIServer
) -> None:
    """A server that echoes the request headers in its errors (Authorization too)."""
    key = "sk-cli-secret-0123456789"
    out = tmp_path / "cast.jsonl"
    openai_server.enqueue(Action(status=400, echo_headers=True))
    env = {**os.environ, "NPC_FORGE_OPENAI_API_KEY": key, "NPC_FORGE_DATA_DIR": str(tmp_path)}
    result = run_cli(
        "generate", "--setting", "A salt marsh, 1720", "-n", "2", "--concurrency", "1",
        "--backend", "openai", "--base-url", openai_server.base_url, "--out", str(out),
        env=env,
    )  # fmt: skip
    assert result.returncode == 1 and "NPC 1 failed" in result.stderr
    assert "Bearer ***" in result.stderr  # the echo arrived, redacted
    assert key not in result.stderr and key not in result.stdout
    assert key not in out.read_text()


def test_a_missing_api_key_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "NPC_FORGE_"))
    }
    env["NPC_FORGE_DATA_DIR"] = str(tmp_path)
    result = run_cli(
        "generate", "--setting", "A salt marsh", "-n", "5", "--backend", "openai", env=env
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "OPENAI_API_KEY" in lines[0]


@pytest.mark.slow
def test_chat_on_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "NPC_FORGE_DATA_DIR": str(tmp_path / "data")}
    out = tmp_path / "cast.jsonl"
    made = run_cli(
        "generate", "--world", "saltmere", "-n", "1", "--name", "Maud Flour", "--seed", "4",
        "--backend", "procedural", "--save", "--out", str(out), env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    npc_id = json.loads(out.read_text().splitlines()[0])["id"]
    talk = subprocess.run(
        [sys.executable, "main.py", "chat", npc_id, "--player", "Ada"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120, env=env,
        input="Who are you?\n/new\nWhere are you from?\n",
    )  # fmt: skip
    assert talk.returncode == 0, talk.stderr
    replies = talk.stdout.strip().splitlines()
    assert len(replies) == 2 and all(line.startswith("Maud Flour: ") for line in replies)
    assert not any(line.startswith("Maud Flour: Maud Flour: ") for line in replies)  # once
    assert "Maud Flour, Ada" in replies[0] or "Maud Flour." in replies[0]
    assert "saved)" in talk.stderr
    missing = run_cli("chat", "npc-nobody", env=env)
    assert missing.returncode == 2 and "No NPC with id 'npc-nobody'" in missing.stderr


@pytest.mark.slow
def test_memory_import_search_and_clear(tmp_path: Path) -> None:
    env = {**os.environ, "NPC_FORGE_DATA_DIR": str(tmp_path / "data")}
    lines = [
        {"text": "The player's sister lives in Harrow Bay", "created_at": "2026-01-01T10:00:00Z",
         "importance": 8, "message_id": "m-17"},
        {"text": "The player likes apples", "created_at": "2026-11-30T10:00:00Z"},
        "not json",
    ]  # fmt: skip
    file = tmp_path / "memories.jsonl"
    file.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    loaded = run_cli("memory", "import", "--npc", "npc-maud", str(file), env=env)
    assert loaded.returncode == 1 and "Imported 2 memories; 1 lines refused" in loaded.stdout
    assert "line 3" in loaded.stderr
    found = run_cli(
        "memory", "search", "--npc", "npc-maud", "--query", "where does my sister live?",
        "-k", "1", "--at", "2026-12-01T10:00:00Z", "--json", env=env,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    [top] = json.loads(found.stdout)
    assert top["text"] == "The player's sister lives in Harrow Bay"
    assert top["metadata"] == {"message_id": "m-17"} and 0 <= top["relevance"] <= 1
    queries = tmp_path / "queries.txt"
    queries.write_text("apples\nsister\n")
    many = run_cli("memory", "search", "--npc", "npc-maud", "--queries", str(queries), env=env)
    assert [json.loads(line)["query"] for line in many.stdout.splitlines()] == ["apples", "sister"]
    cleared = run_cli("memory", "clear", "--npc", "npc-maud", env=env)
    assert "Forgot 2 memories" in cleared.stdout
    again = run_cli("memory", "search", "--npc", "npc-maud", "--query", "sister", env=env)
    assert "No memories yet." in again.stdout


def test_ui_refuses_to_be_shared_without_sign_in_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "NPC_FORGE_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    env.pop("NPC_FORGE_AUTH", None)
    result = run_cli("ui", "--share", env=env)
    err = result.stderr.strip()
    assert result.returncode != 0 and err.count("\n") == 0
    assert "Refusing to start" in err and "--auth USER:PASS" in err and "--no-auth" in err
