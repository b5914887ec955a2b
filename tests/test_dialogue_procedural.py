"""The procedural backend writes dialogue offline: in the NPC's voice, deterministic,
never the same line twice across variants and NPCs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from app.backends.procedural_dialogue import DialogueTables
from app.models import World
from app.services.dialogue import LineRequest
from app.wiring import Services
from config import PROJECT_DIR
from tests import casts
from tests.conftest import MakeServices, make_settings
from tests.dialogue_fixtures import make_npc

SHIPPED = json.loads((PROJECT_DIR / "assets" / "situations.json").read_text(encoding="utf-8"))
SITUATIONS = [s for kind, group in SHIPPED.items() if kind != "_about" for s in group]
WORLD = World(name="Saltmere", era="Medieval", time_period="1340", detail="A fishing village.")


def _tables(services: Services) -> DialogueTables:
    raw = services.assets.files.read(services.assets.directory / "dialogue.json")
    return DialogueTables.from_raw(raw)


def test_every_shipped_situation_is_read_as_its_kind(services: Services) -> None:
    tables = _tables(services)
    for kind, group in SHIPPED.items():
        if kind != "_about":
            assert [tables.kind(s)[0] for s in group] == [kind] * len(group), kind


def test_a_question_is_answered_about_its_topic(services: Services) -> None:
    assert _tables(services).kind("asked about the missing ship") == (
        "question",
        "the missing ship",
    )


async def test_two_temperaments_greet_differently(services: Services) -> None:
    warm = make_npc("Maud Hobb", personality_traits=["kind", "generous", "cheerful"],
                    speech_style="Warm and rambling, full of digressions.")  # fmt: skip
    gruff = make_npc("Ned Pike", personality_traits=["rude", "grumpy", "impatient"],
                     speech_style="Short and blunt, with no wasted words.")  # fmt: skip
    requests = [
        LineRequest(n, "greets the player at dawn", v) for n in (warm, gruff) for v in (1, 2, 3)
    ]
    lines = [line.line or "" for line in await services.dialogue.get_dialogues(requests)]
    tables = _tables(services)
    leads = tables.kinds["greeting"].lead

    def lead_of(text: str, attitude: str) -> bool:
        return any(text.startswith(lead.split("{")[0]) for lead in leads[attitude])

    assert all(lead_of(text, "warm") for text in lines[:3])
    assert all(lead_of(text, "gruff") for text in lines[3:])
    assert not set(lines[:3]) & set(lines[3:])
    dawn = ("morning", "sun", "dew", "Early", "light", "cockerel")
    assert any(word in lines[0] for word in dawn) and any(word in lines[3] for word in dawn)


async def test_lines_are_deterministic(tmp_path: Path, make_services: MakeServices) -> None:
    npc = make_npc()
    requests = [LineRequest(npc, s, 1) for s in SITUATIONS]
    runs = []
    for name in ("a", "b"):
        app = make_services(make_settings(tmp_path / name))
        runs.append([line.line for line in await app.dialogue.get_dialogues(requests)])
    assert runs[0] == runs[1] and all(runs[0])


async def test_no_line_repeats_across_a_cast_and_its_variants(services: Services) -> None:
    cast = [o.npc for o in await casts.outcomes(services, WORLD, 10, seed=5)]
    requests = [
        LineRequest(npc, s, v)
        for npc in cast
        if npc is not None
        for s in [*SITUATIONS, "asked about the missing ship"]
        for v in (1, 2, 3)
    ]
    lines = await services.dialogue.get_dialogues(requests)
    texts = [line.line for line in lines]
    assert all(texts) and len(texts) == 10 * (len(SITUATIONS) + 1) * 3
    assert len(set(texts)) == len(texts)
    assert not any("{" in (t or "") for t in texts)  # every blank filled


async def test_formal_speakers_do_not_contract(services: Services) -> None:
    npc = make_npc(speech_style="Careful and formal, choosing every word.",
                   personality_traits=["wary", "nervous", "cautious"])  # fmt: skip
    lines = await services.dialogue.get_dialogues([LineRequest(npc, s, 1) for s in SITUATIONS])
    text = " ".join(line.line or "" for line in lines)
    assert not re.search(r"\b(I'm|don't|can't|won't|you're|it's)\b", text), text
    assert "do not I?" not in text


async def test_a_refused_bribe_is_refused_and_a_sly_one_taken(services: Services) -> None:
    """Every temperament's "refuses a bribe" refuses (it answered "Oh, that's
    lovely."); offered one, the honest refuse and the sly pocket it."""
    tempers = {
        "warm": ["kind", "generous", "cheerful"],
        "gruff": ["rude", "grumpy", "impatient"],
        "wary": ["nervous", "timid", "cautious"],
        "sly": ["cunning", "greedy", "manipulative"],
    }
    npcs = {name: make_npc(f"{name.title()} Hobb", personality_traits=traits)
            for name, traits in tempers.items()}  # fmt: skip
    tables = _tables(services)
    for situation, kind in (("refuses a bribe", "refusal"), ("is offered a bribe", "bribe")):
        assert tables.kind(situation)[0] == kind
        requests = [LineRequest(npc, situation, 1) for npc in npcs.values()]
        lines = [line.line or "" for line in await services.dialogue.get_dialogues(requests)]
        for attitude, text in zip(tempers, lines, strict=True):
            leads = tables.kinds[kind].lead[attitude]
            assert any(text.startswith(lead.split("{")[0]) for lead in leads), (attitude, text)
    assert not any(
        lead.startswith(("Well. That", "Into my")) for lead in tables.kinds["refusal"].lead["sly"]
    )
