"""Dialogue exports parse with their own formats' rules: CSV through the csv module,
JSON through json, Yarn Spinner and Ink through a small grammar check each."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from app.errors import InputError
from app.services.dialogue import DialogueLine, localisation_key
from app.services.dialogue_exports import (
    CSV_COLUMNS,
    export_format,
    export_lines,
    to_csv,
    to_ink,
    to_json,
    to_yarn,
)

NASTY = [
    '=HYPERLINK("http://x")',  # a formula
    "-> divert? {not an expression} [b]bold[/b] <<command>> #tag // comment | ~ \\",
    "+1 for the guild, @everyone",
    "Well met, traveller. You're new here, aren't you?",
]


def _line(npc: str, situation: str, variant: int, text: str | None) -> DialogueLine:
    npc_id = f"npc-{npc.lower().replace(' ', '-')}"
    return DialogueLine(
        key=localisation_key(npc_id, situation, variant),
        npc_id=npc_id,
        npc_name=npc,
        situation=situation,
        variant=variant,
        line=text,
        error=None if text else "the server said no",
    )


@pytest.fixture
def lines() -> list[DialogueLine]:
    made = [_line("Maud Hobb", "greets the player at dawn", n + 1, t) for n, t in enumerate(NASTY)]
    made.append(_line("Ida: the Red", "=SUM(A1) steals", 1, "Thief! Drop it!"))
    made.append(_line("Ida: the Red", "asked about the ship", 1, None))  # failed: not exported
    return made


def test_csv_is_a_localisation_table_safe_from_formulas(lines: list[DialogueLine]) -> None:
    rows = list(csv.reader(io.StringIO(to_csv(lines).decode("utf-8"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1 + 5
    cells = [cell for row in rows[1:] for cell in row]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)
    by_key = {row[0]: row for row in rows[1:]}
    assert by_key[lines[0].key][5] == "'" + NASTY[0]
    assert by_key[lines[3].key][5] == NASTY[3]  # ordinary text untouched
    assert by_key[lines[4].key][3] == "'=SUM(A1) steals"
    assert len(by_key) == 5  # keys are unique


def test_csv_keys_are_the_same_in_every_run(lines: list[DialogueLine]) -> None:
    again = [_line(l.npc_name, l.situation, l.variant, l.line) for l in lines]  # noqa: E741
    assert to_csv(again) == to_csv(lines)


def test_json_holds_the_delivered_lines(lines: list[DialogueLine]) -> None:
    rows = json.loads(to_json(lines))
    assert [row["line"] for row in rows] == [*NASTY, "Thief! Drop it!"]
    assert set(rows[0]) == set(CSV_COLUMNS)


_YARN_LINE = re.compile(r"^=> (?:[^\\:#{}\[\]<>/]|\\.)+: (?:[^\\#{}\[\]<>/]|\\.)+ #line:[\w.\-]+$")


def _check_yarn(text: str) -> list[tuple[str, list[str]]]:
    """Yarn Spinner 2: header lines, ---, body lines (here: line-group options), ===."""
    nodes = []
    for block in text.strip().split("\n\n"):
        rows = block.splitlines()
        split = rows.index("---")
        headers = dict(row.split(": ", 1) for row in rows[:split])
        assert re.fullmatch(r"[A-Za-z_]\w*", headers["title"]), headers
        assert rows[-1] == "==="
        body = rows[split + 1 : -1]
        assert body and all(_YARN_LINE.match(row) for row in body), body
        nodes.append((headers["title"], body))
    return nodes


def test_yarn_nodes_per_npc_and_situation(lines: list[DialogueLine]) -> None:
    nodes = _check_yarn(to_yarn(lines).decode("utf-8"))
    assert [len(body) for _, body in nodes] == [4, 1]
    assert len({title for title, _ in nodes}) == 2
    tags = re.findall(r"#line:(\S+)", to_yarn(lines).decode())
    assert len(tags) == len(set(tags)) == 5


_INK_TEXT = r"(?:[^\\{}\[\]<>#/|~]|\\.)+"


def _check_ink(text: str) -> dict[str, dict[str, int]]:
    """Ink: knots of stitches, each a multi-line shuffle of escaped lines, then a divert."""
    rows = [row for row in text.splitlines() if row and not row.startswith("//")]
    assert rows[0] == "-> DONE"
    knots: dict[str, dict[str, int]] = {}
    knot = stitch = ""
    depth = 0
    for row in rows[1:]:
        if m := re.fullmatch(r"=== ([A-Za-z_]\w*) ===", row):
            knot = m.group(1)
            assert knot not in knots
            knots[knot] = {}
        elif m := re.fullmatch(r"= ([A-Za-z_]\w*)", row):
            stitch = m.group(1)
            knots[knot][stitch] = 0
        elif row == "{shuffle:":
            depth += 1
        elif row == "}":
            depth -= 1
        elif row.startswith("- "):
            assert depth == 1 and re.fullmatch(rf"- (?![*+\-=]){_INK_TEXT} #[\w.\-]+", row), row
            assert "->" not in row.split(" #")[0]
            knots[knot][stitch] += 1
        else:
            assert row == "-> DONE", row
    assert depth == 0
    return knots


def test_ink_knots_per_npc_stitches_per_situation(lines: list[DialogueLine]) -> None:
    knots = _check_ink(to_ink(lines).decode("utf-8"))
    assert list(knots) == ["Maud_Hobb", "Ida_the_Red"]
    assert knots["Maud_Hobb"] == {"greets_the_player_at_dawn": 4}
    assert knots["Ida_the_Red"] == {"SUM_A1_steals": 1}


def test_formats_by_name_suffix_or_label() -> None:
    assert export_format(".CSV") == "csv" and export_format("Yarn Spinner") == "yarn"
    with pytest.raises(InputError, match="json, csv, yarn, ink"):
        export_format("xlsx")
    name, data = export_lines([], "ink")
    assert name == "dialogue.ink" and data.startswith(b"//")
