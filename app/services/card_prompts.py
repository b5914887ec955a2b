"""The prompts an imported card brings to a chat: its ``system_prompt`` and its
``post_history_instructions`` (Character Card V2; kept by V3 cards too).

SillyTavern's way, which card authors write for: the card's system prompt
stands in for the app's, and ``{{original}}`` inside it is where the app's
goes. Here the app's prompt also says who the NPC is and what it remembers,
so a card prompt without ``{{original}}`` comes first and the NPC's own
prompt follows it: nothing the NPC knows is lost. The post-history
instructions go after the conversation, where the card author put them.
``{{char}}`` and ``{{user}}`` (and the old ``<BOT>``, ``<USER>``) are filled in.
Cards NPC Forge made carry its own generic text there, not an author's: they
bring nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.services.card_mapping import text_field
from app.services.card_store import KeptCard
from app.services.cards import made_here

ORIGINAL = "{{original}}"
_CHAR = re.compile(r"\{\{char\}\}|<BOT>", re.IGNORECASE)
_USER = re.compile(r"\{\{user\}\}|<USER>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CardPrompts:
    system: str
    post_history: str

    def around(self, persona: str) -> str:
        """The system prompt: the card's, with the NPC's own where it says."""
        if not self.system:
            return persona
        if ORIGINAL in self.system:
            return self.system.replace(ORIGINAL, persona)
        return f"{self.system}\n\n{persona}"


def fill_macros(text: str, name: str, player: str | None) -> str:
    """``{{char}}`` and ``{{user}}`` filled in (an imported NPC's own fields keep
    the card's macros, as its author wrote them)."""
    return _USER.sub(player or "the player", _CHAR.sub(name, text))


def card_prompts(kept: KeptCard | None, name: str, player: str | None) -> CardPrompts | None:
    """The author's prompts of an imported card, filled in; None when it has none."""
    if kept is None:
        return None
    if made_here(kept.card):
        return None
    data = kept.card.get("data") or {}

    def filled(field: str) -> str:
        return fill_macros(text_field(data.get(field)).strip(), name, player)

    prompts = CardPrompts(filled("system_prompt"), filled("post_history_instructions"))
    return prompts if prompts.system or prompts.post_history else None
