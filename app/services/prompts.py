"""Prompts for NPC generation and for the one repair call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from app.backends.base import JSONRequest, Message
from app.models import NPC_TASK, profile_json_schema

if TYPE_CHECKING:
    from app.services.generation import NPCSpec

# Prompts carry at most this much world detail; the rest costs tokens for little.
MAX_PROMPT_DETAIL_CHARS = 6000

SYSTEM_PROMPT = (
    "You are NPC Forge, a game writer who creates memorable non-player characters. "
    "Every character fits the world's era, technology, culture and tone, has concrete details "
    "rather than generic ones, and has a secret that could lead to a quest. "
    "Write sample lines in the character's own voice. Reply with a single JSON object."
)


def _world_block(spec: NPCSpec) -> str:
    world = spec.world
    detail = world.detail_text()
    if len(detail) > MAX_PROMPT_DETAIL_CHARS:
        detail = detail[:MAX_PROMPT_DETAIL_CHARS].rsplit(" ", 1)[0] + " ..."
    lines = [f"World: {world.name}", f"Era: {world.era}", f"Time period: {world.time_period}"]
    if detail:
        lines.append(f"Detail:\n{detail}")
    if world.guardrails:
        rules = "\n".join(f"- {name}: {rule}" for name, rule in world.guardrails.items())
        lines.append(f"Guardrails (always follow):\n{rules}")
    return "\n".join(lines)


def npc_messages(spec: NPCSpec) -> list[Message]:
    asks = []
    if spec.name:
        asks.append(f"The character's name is {spec.name}.")
    else:
        asks.append("Invent a name that fits the world.")
    if spec.traits:
        asks.append(f"Their personality traits must include: {', '.join(spec.traits)}.")
    if spec.avoid_names:
        asks.append(f"Do not reuse these names: {', '.join(spec.avoid_names)}.")
    asks.append(
        "Give 3-5 personality traits that do not contradict each other and 2-4 sample lines."
    )
    user = (
        f"{_world_block(spec)}\n\nCreate one non-player character for this world. {' '.join(asks)}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def npc_inputs(spec: NPCSpec) -> dict[str, Any]:
    """The structured form of the request, which the procedural backend reads."""
    return {
        "world": spec.world.model_dump(),
        "name": spec.name,
        "traits": list(spec.traits),
        "slot": spec.slot,
        "cast_seed": spec.cast_seed,
        "avoid_names": list(spec.avoid_names),
    }


def npc_request(spec: NPCSpec, *, max_tokens: int | None = None) -> JSONRequest:
    return JSONRequest(
        task=NPC_TASK,
        messages=npc_messages(spec),
        schema=profile_json_schema(),
        inputs=npc_inputs(spec),
        temperature=spec.temperature,
        seed=spec.seed,
        max_tokens=max_tokens,
    )


def repair_request(original: JSONRequest, raw_output: str, problems: Sequence[str]) -> JSONRequest:
    """Show the model its own output and what is wrong with it; ask for the fix."""
    listed = "\n".join(f"- {problem}" for problem in problems)
    messages: list[Message] = [
        *original.messages,
        {"role": "assistant", "content": raw_output[:8000]},
        {
            "role": "user",
            "content": (
                f"That reply is not a valid character:\n{listed}\n"
                "Reply with the corrected JSON object only, with every field filled in."
            ),
        },
    ]
    return JSONRequest(
        task=original.task,
        messages=messages,
        schema=original.schema,
        inputs={**original.inputs, "repair": True},
        temperature=min(original.temperature, 0.5),
        seed=original.seed,
        max_tokens=original.max_tokens,
    )
