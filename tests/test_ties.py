"""An edited relationship table: each problem names the row, the column and what is allowed."""

from __future__ import annotations

import pytest

from app.errors import InputError
from app.models import NPC
from app.services.ties import merge_ties, parse_tie_rows, tie_rows
from tests.npc_fixtures import valid_profile


def _npc(name: str, npc_id: str) -> NPC:
    return NPC(
        **{**valid_profile(name), "id": npc_id, "world": "Saltmere", "backend": "t", "seed": 1}
    )


CAST = [_npc("Maud Flour", "m"), _npc("Bran Hollow", "b")]


def test_rows_round_trip() -> None:
    rows = [["Maud Flour", "bran hollow", "Rival", "-0.5", "yes", "Both want the mill."]]
    ties = parse_tie_rows(rows, CAST)
    [tie] = ties["m"]
    assert (tie.target_id, tie.type, tie.weight, tie.secret) == ("b", "rival", -0.5, True)
    merged = merge_ties(CAST, ties)
    assert tie_rows(merged) == [
        ["Maud Flour", "Bran Hollow", "rival", -0.5, True, "Both want the mill."]
    ]


def test_empty_rows_are_skipped_and_outside_ties_kept() -> None:
    outside = _npc("Old Tam", "t")
    maud = CAST[0].model_copy(
        update={
            "relationships": parse_tie_rows(
                [["Maud Flour", "Old Tam", "friend", 0.5, False, ""]], [CAST[0], outside]
            )["m"]
        }
    )
    merged = merge_ties(
        [maud, CAST[1]], parse_tie_rows([["", "", "", "", "", ""], []], [maud, CAST[1]])
    )
    assert [t.target_id for t in merged[0].relationships] == ["t"]  # not part of this cast's table


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            ["Nobody", "Bran Hollow", "rival", 0, False, ""],
            r"Row 1, from: 'Nobody' is not an NPC of this world; "
            "use one of: Maud Flour, Bran Hollow",
        ),
        (["Maud Flour", "Nobody", "rival", 0, False, ""], r"Row 1, to: 'Nobody'"),
        (
            ["Maud Flour", "Maud Flour", "rival", 0, False, ""],
            "cannot have a relationship with themselves",
        ),
        (
            ["Maud Flour", "Bran Hollow", "nemesis", 0, False, ""],
            r"Row 1, type: 'nemesis' is not a relationship type; use one of: ally, rival",
        ),
        (
            ["Maud Flour", "Bran Hollow", "rival", "very", False, ""],
            r"Row 1, weight: use a number from -1 \(hostile\) to 1 \(devoted\); got 'very'",
        ),
        (["Maud Flour", "Bran Hollow", "rival", 3, False, ""], r"Row 1, weight: .* got '3'"),
        (["Maud Flour", "Bran Hollow", "rival", "nan", False, ""], r"Row 1, weight"),
        (
            ["Maud Flour", "Bran Hollow", "rival", 0, "maybe", ""],
            r"Row 1, secret: use true or false; got 'maybe'",
        ),
        (
            ["Maud Flour", "Bran Hollow", "rival", 0, False, "x" * 401],
            r"Row 1, description: 401 characters",
        ),
    ],
)
def test_each_problem_says_where_and_what_is_allowed(row: list[object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_tie_rows([row], CAST)
