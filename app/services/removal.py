"""Deleting an NPC, and everything that hangs on it.

An NPC's id comes from its seed and request (per owner), so the same Generate
run again makes the same id. Whatever outlived a deleted NPC would come back
with the new one: its memories ("you told me last week..."), its
conversations, the card it was imported from (an export would send the old
card). A removal takes all of it; the NPC goes last, so a removal that fails
half-way leaves the NPC there to delete again, never orphans behind.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from app.models import NPC
from app.services.card_store import CardStore
from app.services.conversations import ConversationStore
from app.services.library import Library


class Forgets(Protocol):
    """What a removal needs of the memory service."""

    async def clear(self, npc_id: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Removed:
    npc: NPC
    memories: int
    conversations: int

    def summary(self) -> str:
        gone = [
            "every relationship pointing at them",
            f"{self.memories:,} memor{'y' if self.memories == 1 else 'ies'}",
            f"{self.conversations:,} conversation{'' if self.conversations == 1 else 's'}",
        ]
        return (
            f"Deleted {self.npc.name} ({self.npc.id}) with {', '.join(gone[:-1])} and {gone[-1]}."
        )


class NPCRemoval:
    """Delete NPCs whole, as one viewer of the library may."""

    def __init__(
        self,
        library: Library,
        memory: Forgets,
        conversations: ConversationStore,
        cards: CardStore,
    ) -> None:
        self.library = library
        self.memory = memory
        self.conversations = conversations
        self.cards = cards

    def seen_by(self, library: Library) -> NPCRemoval:
        """The same removal, allowed what ``library``'s viewer may change."""
        return NPCRemoval(library, self.memory, self.conversations, self.cards)

    async def remove(self, npc_id: str) -> Removed:
        """Delete the NPC, its ties, memories, conversations and kept card; refused
        (InputError) when this viewer may not change it or it does not exist."""
        npc = self.library.changeable(await self.library.get(npc_id))
        memories = await self.memory.clear(npc.id)
        conversations = await asyncio.to_thread(self.conversations.delete_all, npc.id)
        await asyncio.to_thread(self.cards.delete, npc.id)
        await self.library.delete(npc.id)
        return Removed(npc, memories, conversations)
