"""Response keys: one stable digest of everything that shapes a response."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.backends.base import JSONRequest
from app.cache.disk import DiskTier
from app.cache.keys import response_key

NPC = {"name": "Ædwin", "traits": ["dour"]}
BACKEND = "openai:gpt-4o-mini@http://127.0.0.1:11434/v1"


def make_request(**changes: Any) -> JSONRequest:
    values: dict[str, Any] = {
        "task": "npc_profile",
        "messages": [
            {"role": "system", "content": "You write NPCs."},
            {"role": "user", "content": "A fisher of Saltmere."},
        ],
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
        "inputs": {"world": "Saltmere", "occupation": "fisher", "traits": ["dour", "kind"]},
        "temperature": 0.9,
        "seed": 7,
        "max_tokens": 800,
    }
    values.update(changes)
    return JSONRequest(**values)


def test_response_key_is_a_hex_digest_usable_by_the_disk_tier(tmp_path: Path) -> None:
    k = response_key(BACKEND, make_request(), 1)
    assert len(k) == 64 and all(c in "0123456789abcdef" for c in k)
    DiskTier(tmp_path).put(k, NPC)


def test_response_key_is_equal_for_equal_inputs() -> None:
    assert response_key(BACKEND, make_request(), 1) == response_key(BACKEND, make_request(), 1)


def test_response_key_ignores_dict_key_order() -> None:
    base = response_key(BACKEND, make_request(), 1)
    reordered_inputs = {"traits": ["dour", "kind"], "occupation": "fisher", "world": "Saltmere"}
    reordered_schema = {"properties": {"name": {"type": "string"}}, "type": "object"}
    reordered_messages = [
        {"content": "You write NPCs.", "role": "system"},
        {"content": "A fisher of Saltmere.", "role": "user"},
    ]
    assert response_key(BACKEND, make_request(inputs=reordered_inputs), 1) == base
    assert response_key(BACKEND, make_request(schema=reordered_schema), 1) == base
    assert response_key(BACKEND, make_request(messages=reordered_messages), 1) == base
    nested = {"world": {"name": "Saltmere", "era": "late"}, "n": 1}
    nested_reordered = {"n": 1, "world": {"era": "late", "name": "Saltmere"}}
    assert response_key(BACKEND, make_request(inputs=nested), 1) == response_key(
        BACKEND, make_request(inputs=nested_reordered), 1
    )


@pytest.mark.parametrize(
    ("backend", "changes", "schema_version"),
    [
        ("procedural:v1", {}, 1),  # another backend
        ("openai:gpt-4o@http://127.0.0.1:11434/v1", {}, 1),  # another model
        ("openai:gpt-4o-mini@https://api.openai.com/v1", {}, 1),  # another server
        (BACKEND, {"seed": 8}, 1),
        (BACKEND, {"temperature": 0.5}, 1),
        (BACKEND, {"temperature": 0.85}, 1),
        (BACKEND, {"messages": [{"role": "user", "content": "A baker."}]}, 1),
        (BACKEND, {"inputs": {"world": "Saltmere", "occupation": "baker"}}, 1),
        (BACKEND, {"task": "npc_refine"}, 1),
        (BACKEND, {"max_tokens": 400}, 1),
        (BACKEND, {"schema": {"type": "object"}}, 1),
        (BACKEND, {}, 2),  # another schema version
    ],
    ids=[
        "backend",
        "model",
        "server",
        "seed",
        "temperature",
        "temperature-close",
        "messages",
        "inputs",
        "task",
        "max_tokens",
        "schema",
        "schema_version",
    ],
)
def test_response_key_differs_when_anything_that_shapes_the_response_differs(
    backend: str, changes: dict[str, Any], schema_version: int
) -> None:
    assert response_key(backend, make_request(**changes), schema_version) != response_key(
        BACKEND, make_request(), 1
    )
