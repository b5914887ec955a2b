"""Reading a model's dialogue reply: what counts as a usable line."""

from __future__ import annotations

import json

import pytest

from app.backends.base import JSONReply
from app.services.dialogue_prompts import Ask, parse_lines


def _reply(lines: object) -> JSONReply:
    data = {"lines": lines}
    return JSONReply(raw=json.dumps(data), data=data)


def test_lines_are_cleaned_and_repeats_dropped() -> None:
    asks = [Ask("1", "greets", [1, 2, 3], avoid=["Already said."])]
    reply = _reply([{"id": "1", "variants": [
        'Maud Hobb: "Morning,   traveller."', "“Already said.”", "morning, traveller.", "Well met.",
    ]}])  # fmt: skip
    assert parse_lines(reply, "Maud Hobb", asks) == {"1": ["Morning, traveller.", "Well met."]}


def test_garbled_ids_are_matched_by_position_and_garbage_is_no_line() -> None:
    asks = [Ask("1", "greets", [1]), Ask("2", "steals", [1]), Ask("3", "asks", [1])]
    reply = _reply([
        {"id": "2", "variants": ["Thief!"]},
        {"id": "", "variants": ["Hello there."]},  # the first situation no entry named
        {"id": "x", "variants": [".{2.1}"]},  # the third: nothing usable in it
    ])  # fmt: skip
    assert parse_lines(reply, "Maud", asks) == {"2": ["Thief!"], "1": ["Hello there."], "3": []}


@pytest.mark.parametrize("data", [{"lines": "nope"}, {"text": "hi"}, [1, 2]])
def test_a_reply_of_another_shape_is_invalid(data: object) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_lines(JSONReply(raw="", data=data), "Maud", [Ask("1", "greets", [1])])


def test_a_reply_without_a_usable_line_is_invalid() -> None:
    with pytest.raises(ValueError, match="no usable line"):
        parse_lines(
            _reply([{"id": "", "variants": [".{2.1}", "  "]}]), "Maud", [Ask("1", "g", [1])]
        )
