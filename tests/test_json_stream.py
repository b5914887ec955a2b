"""The scanner that lets a streamed reply stop at the end of the JSON object."""

import json
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from app.backends.json_stream import JSONObjectScanner

OBJECT = {"name": 'Vel "the {brace}" Anor', "lines": ["a}b", "c\\"], "nested": {"x": [1, {"y": 2}]}}


def test_complete_after_last_brace_and_ignores_trailing_text() -> None:
    text = "```json\n" + json.dumps(OBJECT) + "\n``` Hope this helps! {not json"
    scanner = JSONObjectScanner()
    assert scanner.feed(text)
    assert json.loads(scanner.object_text() or "") == OBJECT


def test_incomplete_object_is_not_complete() -> None:
    scanner = JSONObjectScanner()
    assert not scanner.feed('{"a": "}", "b": [1, 2')
    assert scanner.object_text() is None
    assert scanner.feed("]}")


def test_stops_scanning_after_completion() -> None:
    scanner = JSONObjectScanner()
    assert scanner.feed('{"a": 1}')
    assert scanner.feed("garbage {")
    assert scanner.object_text() == '{"a": 1}'


@given(st.lists(st.integers(min_value=1, max_value=len(json.dumps(OBJECT)) - 1), max_size=20))
def test_any_chunking_finds_the_same_object(cuts: list[int]) -> None:
    text = json.dumps(OBJECT) + " trailing"
    bounds = [0, *sorted(set(cuts)), len(text)]
    scanner = JSONObjectScanner()
    done_at = None
    for index, (start, end) in enumerate(pairwise(bounds)):
        if scanner.feed(text[start:end]) and done_at is None:
            done_at = index
    assert done_at is not None
    assert json.loads(scanner.object_text() or "") == OBJECT
