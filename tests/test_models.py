"""The NPC model and the schema backends receive."""

import pytest
from pydantic import ValidationError

from app.models import NPC_SCHEMA_VERSION, NPCProfile, profile_json_schema
from tests.npc_fixtures import valid_profile


def test_schema_is_strict_output_compatible() -> None:
    schema = profile_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(NPCProfile.model_fields)
    text = str(schema)
    for unsupported in ("minLength", "maxItems", "title"):
        assert unsupported not in text


def test_profile_validation() -> None:
    profile = NPCProfile.model_validate(
        {**valid_profile(), "personality_traits": ["Brave", " Sly "]}
    )
    assert profile.personality_traits == ["brave", "sly"]
    with pytest.raises(ValidationError):
        NPCProfile.model_validate({**valid_profile(), "sample_lines": ["only one"]})
    with pytest.raises(ValidationError):
        NPCProfile.model_validate({**valid_profile(), "age": -3})
    # Keys a model adds on its own are dropped, not fatal.
    assert NPCProfile.model_validate({**valid_profile(), "mood": "grim"}).name == "Brother Aldric"


def test_schema_version_is_part_of_every_cache_key() -> None:
    """Bumping NPC_SCHEMA_VERSION must retire every cached NPC."""
    from app.backends.base import JSONRequest
    from app.cache.keys import response_key

    request = JSONRequest(task="npc_profile", messages=[], schema={}, inputs={})
    now = response_key("b", request, NPC_SCHEMA_VERSION)
    assert now != response_key("b", request, NPC_SCHEMA_VERSION + 1)
    assert now == response_key("b", request, NPC_SCHEMA_VERSION)
