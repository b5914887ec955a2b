"""Valid and broken NPC replies for the fake OpenAI server."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

_counter = itertools.count(1)
_NAME = re.compile(r"The character's name is (.+?)\.")


def valid_profile(name: str = "Brother Aldric") -> dict[str, Any]:
    return {
        "name": name,
        "age": 47,
        "gender": "male",
        "occupation": "abbey cellarer",
        "appearance": "A stooped man with ink-stained fingers and a fisherman's tan.",
        "personality_traits": ["patient", "secretive", "generous"],
        "backstory": "He came to the abbey after the storm that drowned his brothers.",
        "motivation": "To keep the abbey fed through the winter.",
        "secret": "He sells the abbey's wine to smugglers.",
        "speech_style": "Soft, slow, quotes scripture when nervous.",
        "sample_lines": [
            "Peace be with you, traveller.",
            "The cellar? Nothing down there but turnips.",
        ],
    }


def requested_name(body: dict[str, Any]) -> str | None:
    user = next((m["content"] for m in body["messages"] if m["role"] == "user"), "")
    match = _NAME.search(user)
    return match.group(1) if match else None


def npc_responder(body: dict[str, Any]) -> str:
    """A valid profile, named as the prompt asks, or with a fresh name."""
    name = requested_name(body) or f"Villager {next(_counter)}"
    return json.dumps(valid_profile(name))
