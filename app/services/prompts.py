"""Prompts for NPC generation and for the one repair call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from app.backends.base import JSONRequest, Message
from app.models import (
    FIELD_TASK,
    NPC,
    NPC_TASK,
    RELATIONSHIP_TYPES,
    RELATIONSHIPS_TASK,
    World,
    profile_grammar_schema,
    profile_json_schema,
)

if TYPE_CHECKING:
    from app.services.generation import NPCSpec

# Prompts carry at most this much world detail; the rest costs tokens for little.
MAX_PROMPT_DETAIL_CHARS = 6000
# A repair shows this much of the invalid reply: enough for a whole NPC, while a
# reply that rambled on cannot push the repair past a small server's context.
MAX_REPAIR_ECHO_CHARS = 2500

SYSTEM_PROMPT = (
    "You are NPC Forge, a game writer who creates memorable non-player characters. "
    "Every character fits the world's era, technology, culture and tone, has concrete details "
    "rather than generic ones, and has a secret that could lead to a quest. "
    "Write sample lines in the character's own voice. Reply with a single JSON object."
)


def _world_block(spec: NPCSpec) -> str:
    return world_block(spec.world)


def world_block(world: World) -> str:
    """The world as prompt text: era, period, detail (bounded) and guardrails."""
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
        # With its bounds: servers that enforce a schema by grammar keep them; the
        # openai backend drops them where strict json_schema would refuse them.
        schema=profile_grammar_schema(),
        inputs=npc_inputs(spec),
        temperature=spec.temperature,
        seed=spec.seed,
        max_tokens=max_tokens,
    )


def _echo(raw_output: str) -> str:
    """The invalid reply as the repair shows it, cut at a word if it is long."""
    if len(raw_output) <= MAX_REPAIR_ECHO_CHARS:
        return raw_output
    return raw_output[:MAX_REPAIR_ECHO_CHARS].rsplit(" ", 1)[0] + " ..."


def repair_request(original: JSONRequest, raw_output: str, problems: Sequence[str]) -> JSONRequest:
    """Show the model its own output and what is wrong with it; ask for the fix."""
    listed = "\n".join(f"- {problem}" for problem in problems)
    messages: list[Message] = [
        *original.messages,
        {"role": "assistant", "content": _echo(raw_output)},
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


PROFILE_FIELDS = tuple(profile_json_schema()["properties"])


def _character_json(npc: NPC, fields: tuple[str, ...]) -> str:
    import json

    return json.dumps({field: getattr(npc, field) for field in fields}, ensure_ascii=False)


def _regen_inputs(npc: NPC, world: World, seed: int, locked: dict[str, object]) -> dict[str, Any]:
    return {
        "world": world.model_dump(),
        "name": npc.name,
        "traits": list(npc.personality_traits),
        "slot": 0,
        "cast_seed": seed,
        "avoid_names": [],
        "locked": locked,
    }


def field_request(
    npc: NPC, field: str, world: World, *, seed: int, temperature: float
) -> JSONRequest:
    """Rewrite one field of an NPC; the other fields are context that must hold."""
    if field not in PROFILE_FIELDS:
        raise ValueError(f"{field!r} is not an NPC field")
    others = tuple(name for name in PROFILE_FIELDS if name != field)
    user = (
        f"{world_block(world)}\n\nThis character is fixed, except for one field:\n"
        f"{_character_json(npc, others)}\n\n"
        f"Write a new '{field}' for this character: different from the current one "
        f"({_character_json(npc, (field,))}), and consistent with everything above. "
        f'Reply with a JSON object {{"{field}": ...}}.'
    )
    schema = {
        "type": "object",
        "properties": {field: profile_grammar_schema()["properties"][field]},
        "required": [field],
        "additionalProperties": False,
    }
    locked = {name: getattr(npc, name) for name in others}
    return JSONRequest(
        task=FIELD_TASK,
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
        schema=schema,
        inputs={**_regen_inputs(npc, world, seed, locked), "field": field},
        temperature=temperature,
        seed=seed,
    )


def regenerate_request(
    npc: NPC, locked_fields: tuple[str, ...], world: World, *, seed: int, temperature: float
) -> JSONRequest:
    """A new version of an NPC that keeps the locked fields exactly."""
    locked = {name: getattr(npc, name) for name in locked_fields}
    keep = (
        f"Keep these fields exactly as given: {_character_json(npc, locked_fields)}. "
        if locked_fields
        else ""
    )
    user = (
        f"{world_block(world)}\n\nRewrite this character as a new take on the same role. {keep}"
        "Everything else new, and consistent with the kept fields. Give 3-5 personality traits "
        "that do not contradict each other and 2-4 sample lines."
    )
    return JSONRequest(
        task=NPC_TASK,
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
        schema=profile_grammar_schema(),
        inputs=_regen_inputs(npc, world, seed, locked),
        temperature=temperature,
        seed=seed,
    )


RELATIONSHIPS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "relationships": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "source": {"type": "string", "description": "name of one character"},
                    "target": {"type": "string", "description": "name of another character"},
                    "type": {"type": "string", "enum": list(RELATIONSHIP_TYPES)},
                    "weight": {"type": "number", "description": "-1 hostile .. 1 devoted"},
                    "secret": {"type": "boolean"},
                    "description": {"type": "string", "description": "one line"},
                },
                "required": ["source", "target", "type", "weight", "secret", "description"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["relationships"],
    "additionalProperties": False,
}


def relationships_request(
    npcs: list[NPC],
    polarities: Mapping[str, Sequence[str]],
    world: World,
    *,
    seed: int,
    temperature: float,
) -> JSONRequest:
    """Ties among a cast; ``polarities`` maps NPC id to its traits' polarities."""
    roster = "\n".join(
        f"- {npc.name}: {npc.occupation}; {', '.join(npc.personality_traits)}; "
        f"wants {npc.motivation}"
        for npc in npcs
    )
    user = (
        f"{world_block(world)}\n\nThese characters live in this world:\n{roster}\n\n"
        "Connect them: give each character one or two relationships with others in the list "
        f"(types: {', '.join(RELATIONSHIP_TYPES)}), with a weight from -1 (hostile) to 1 "
        "(devoted), whether it is secret, and a one-line description. Use the names exactly."
    )
    cast = [
        {
            "id": npc.id,
            "name": npc.name,
            "gender": npc.gender,  # the procedural backend's pronouns
            "polarities": polarities.get(npc.id, []),
        }
        for npc in npcs
    ]
    return JSONRequest(
        task=RELATIONSHIPS_TASK,
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
        schema=RELATIONSHIPS_SCHEMA,
        inputs={"cast": cast, "world": world.model_dump()},
        temperature=temperature,
        seed=seed,
    )
