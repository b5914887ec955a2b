"""One contract for every response-cache tier, run against each of them.

What a tier promises whatever keeps its values: a miss is None, a stored JSON
value comes back equal (falsy values are hits), overwrite, clear, the same
hit/miss figures, and the ``validate`` hook: a value the caller's validator
rejects is a miss, and is gone for every later caller. Each tier's own promises
(LRU order, files, bounds) are in test_cache_tiers.py.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pydantic
import pytest

from app.cache.disk import DiskTier
from app.cache.memory import MemoryTier

Tier = MemoryTier | DiskTier

NPC: dict[str, Any] = {
    "name": "Ædwin Þórsson",
    "age": 41,
    "ratio": 0.1 + 0.2,  # a float that does not print short
    "tiny": 5e-324,
    "big": 1.7976931348623157e308,
    "negative": -12.5,
    "traits": ["stubborn", "kind", "ñoño", "日本語", "emoji 🐟"],
    "nested": {"a": {"b": {"c": [1, 2, {"d": None}]}}, "empty": {}, "list": []},
    "flags": [True, False, None],
    "escapes": 'quote " backslash \\ newline \n tab \t nul \x00',
}


def hex_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def size_of(tier: Tier) -> int:
    return len(tier) if isinstance(tier, MemoryTier) else tier.usage().entries


@pytest.fixture(params=["memory", "disk"])
def tier(request: pytest.FixtureRequest, tmp_path: Path) -> Tier:
    if request.param == "memory":
        return MemoryTier(maxsize=64)
    return DiskTier(tmp_path / "responses", max_entries=64)


def test_missing_key_is_none_and_counts_a_miss(tier: Tier) -> None:
    assert tier.get(hex_key("absent")) is None
    stats = tier.stats()
    assert (stats.hits, stats.misses, stats.size) == (0, 1, 0)
    assert stats.hit_rate == 0.0


def test_put_then_get_returns_an_equal_value_and_counts_a_hit(tier: Tier) -> None:
    tier.put(hex_key("a"), NPC)
    assert tier.get(hex_key("a")) == NPC
    stats = tier.stats()
    assert (stats.hits, stats.misses, stats.size) == (1, 0, 1)
    assert stats.hit_rate == 1.0


def test_overwrite_replaces_the_value(tier: Tier) -> None:
    assert tier.get(hex_key("a")) is None
    tier.put(hex_key("a"), {"version": 1})
    assert tier.get(hex_key("a")) == {"version": 1}
    tier.put(hex_key("a"), {"version": 2})
    assert tier.get(hex_key("a")) == {"version": 2}
    assert size_of(tier) == 1
    stats = tier.stats()
    assert (stats.hits, stats.misses, stats.size) == (2, 1, 1)
    assert stats.hit_rate == pytest.approx(2 / 3)


def test_clear_empties_the_tier(tier: Tier) -> None:
    for name in "abc":
        tier.put(hex_key(name), {"name": name})
    assert size_of(tier) == 3
    tier.clear()
    assert size_of(tier) == 0
    assert tier.stats().size == 0
    assert [tier.get(hex_key(name)) for name in "abc"] == [None, None, None]
    tier.put(hex_key("a"), {"again": True})  # still usable after clear
    assert tier.get(hex_key("a")) == {"again": True}


@pytest.mark.parametrize(
    "value",
    [
        NPC,
        [NPC, [NPC], {"list": [[], [[]], [1.5, "x"]]}],
        "just a string with ünïcödé",
        0,
        -(2**63),
        2**63 - 1,
        3.141592653589793,
        1e-300,
        False,
        "",
        [],
        {},
    ],
    ids=[
        "npc",
        "nested-lists",
        "str",
        "zero",
        "int-min",
        "int-max",
        "pi",
        "tiny-float",
        "false",
        "empty-str",
        "empty-list",
        "empty-dict",
    ],
)
def test_json_values_round_trip(tier: Tier, value: Any) -> None:
    tier.put(hex_key("v"), value)
    got = tier.get(hex_key("v"))
    assert got == value and type(got) is type(value)
    assert tier.stats().hits == 1  # falsy values are hits, not misses


def test_hit_rate_after_a_known_sequence(tier: Tier) -> None:
    keys = [hex_key(str(i)) for i in range(4)]
    for k in keys[:3]:
        assert tier.get(k) is None  # 3 misses
        tier.put(k, {"k": k})
    for k in keys[:3]:
        assert tier.get(k) == {"k": k}  # 3 hits
    assert tier.get(keys[0]) == {"k": keys[0]}  # 4 hits
    assert tier.get(keys[3]) is None  # 4 misses
    stats = tier.stats()
    assert (stats.hits, stats.misses) == (4, 4)
    assert stats.hit_rate == 0.5
    assert stats.as_dict()["hit_rate"] == 0.5
    for _ in range(4):
        tier.get(keys[1])
    assert tier.stats().hit_rate == pytest.approx(8 / 12)


def test_a_none_result_is_always_counted_as_a_miss(tier: Tier) -> None:
    """None means "miss" to every caller (ResponseCache recomputes), so the stats
    must say miss too, in both tiers alike."""
    tier.put(hex_key("null"), None)
    assert tier.get(hex_key("null")) is None
    stats = tier.stats()
    assert (stats.hits, stats.misses) == (0, 1)


# -- the validate hook --------------------------------------------------------------------
class ProfileCheck:
    """A small validator of an NPC entry's shape that records what it was shown."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, value: Any) -> object:
        self.seen.append(value)
        if not isinstance(value["profile"], dict):  # TypeError or KeyError on other shapes
            raise ValueError("profile is not an object")
        return "ignored"  # what a validator returns is not what the tier returns


GOOD = {"profile": {"name": "Ædwin"}, "repaired": False}


def test_a_value_the_validator_accepts_is_a_hit(tier: Tier) -> None:
    check = ProfileCheck()
    tier.put(hex_key("a"), GOOD)
    assert tier.get(hex_key("a"), check) == GOOD
    assert check.seen == [GOOD]
    stats = tier.stats()
    assert (stats.hits, stats.misses) == (1, 0)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["a", "list"], "TypeError"),
        ({"name": "no profile"}, "KeyError"),
        ({"profile": "a string"}, "ValueError"),
        ("text", "TypeError"),
    ],
    ids=["list", "missing-key", "wrong-type", "str"],
)
def test_a_value_the_validator_rejects_is_a_dropped_miss(
    tier: Tier, value: Any, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    k = hex_key("a")
    tier.put(k, value)
    tier.put(hex_key("b"), GOOD)
    with caplog.at_level(logging.WARNING):
        assert tier.get(k, ProfileCheck()) is None  # no exception
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert k[:12] in warnings[0] and "wrong shape" in warnings[0] and problem in warnings[0]
    stats = tier.stats()
    assert (stats.hits, stats.misses) == (0, 1)
    assert tier.get(k) is None  # dropped, not only hidden from this caller
    assert size_of(tier) == 1
    assert tier.get(hex_key("b"), ProfileCheck()) == GOOD  # the neighbour is untouched
    tier.put(k, GOOD)  # the recomputed value is stored and served
    assert tier.get(k, ProfileCheck()) == GOOD


@pytest.mark.parametrize("error", [ValueError, TypeError, KeyError, IndexError])
def test_every_rejection_error_is_a_miss(tier: Tier, error: type[Exception]) -> None:
    def reject(value: Any) -> None:
        raise error("no")

    tier.put(hex_key("a"), GOOD)
    assert tier.get(hex_key("a"), reject) is None
    assert tier.get(hex_key("a")) is None


def test_a_pydantic_validation_error_is_a_miss(tier: Tier) -> None:
    class Profile(pydantic.BaseModel):
        name: str

    def check(value: Any) -> object:
        return Profile.model_validate(value["profile"])

    tier.put(hex_key("a"), {"profile": {"name": ["not", "a", "string"]}})
    assert tier.get(hex_key("a"), check) is None
    tier.put(hex_key("a"), GOOD)
    assert tier.get(hex_key("a"), check) == GOOD


def test_a_validator_bug_propagates_and_keeps_the_value(tier: Tier) -> None:
    def broken(value: Any) -> None:
        raise RuntimeError("a bug in the validator, not a bad record")

    tier.put(hex_key("a"), GOOD)
    with pytest.raises(RuntimeError, match="bug"):
        tier.get(hex_key("a"), broken)
    assert tier.get(hex_key("a")) == GOOD


def test_no_validator_serves_any_shape(tier: Tier) -> None:
    tier.put(hex_key("a"), ["not", "a", "profile"])
    assert tier.get(hex_key("a")) == ["not", "a", "profile"]
