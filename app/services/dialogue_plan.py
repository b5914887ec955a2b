"""What a dialogue request means, the same for the tab, the API and the CLI.

``DialoguePlanner`` turns a form (NPC ids or a whole world's cast, situations
typed one per line or picked from the shipped list, variants per situation)
into ``LineRequest``s, refusing bad input with a message saying what to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import InputError
from app.models import NPC
from app.services.dialogue import LineRequest, situation_text
from app.services.library import MAX_WORLD_NPCS, Library
from app.services.text import checked_text
from config import Settings
from utils.cached_json import JSONFileCache

SITUATIONS_FILE = "situations.json"


@dataclass(frozen=True, slots=True)
class DialogueLimits:
    max_variants: int
    max_lines: int
    max_situation_chars: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DialogueLimits:
        return cls(
            settings.dialogue_max_variants,
            settings.dialogue_max_lines,
            settings.dialogue_max_situation_chars,
        )


def parse_situations(text: str, *, max_chars: int) -> list[str]:
    """One situation per line; blank lines and ``#`` comments skipped, repeats
    (ignoring case and spacing) kept once."""
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        situation = situation_text(raw)
        if not situation or situation.startswith("#"):
            continue
        if len(situation) > max_chars:
            raise InputError(
                f"Situation on line {number} is {len(situation)} characters long; keep each "
                f"under {max_chars} (one situation per line)."
            )
        found.setdefault(situation.casefold(), situation)
    return list(found.values())


class DialoguePlanner:
    """Situations and NPCs for a dialogue run, validated."""

    def __init__(
        self, library: Library, files: JSONFileCache, assets_dir: Path, limits: DialogueLimits
    ) -> None:
        self._library = library
        self._files = files
        self._path = assets_dir / SITUATIONS_FILE
        self.limits = limits

    def shipped(self) -> dict[str, list[str]]:
        """The shipped situations by kind (read through the file cache)."""
        raw: dict[str, Any] = self._files.read(self._path)
        return {kind: list(group) for kind, group in raw.items() if not kind.startswith("_")}

    def shipped_choices(self) -> list[str]:
        """Every shipped situation as ``kind: situation``, for a picker."""
        return [f"{kind}: {s}" for kind, group in self.shipped().items() for s in group]

    def situations(self, text: str, picked: Iterable[str] = ()) -> list[str]:
        """Typed situations, then picked ones (``kind: situation`` or a kind's name
        for all of it); InputError when there are none."""
        shipped = self.shipped()
        lines = [text]
        for choice in picked:
            kind, _, situation = str(choice).partition(": ")
            if not situation and kind in shipped:
                lines.extend(shipped[kind])
            else:
                lines.append(situation or kind)
        text = checked_text("\n".join(lines), "The situations")
        found = parse_situations(text, max_chars=self.limits.max_situation_chars)
        if not found:
            raise InputError(
                "Give at least one situation: type them one per line "
                "(e.g. 'greets the player at dawn') or pick from the shipped list."
            )
        return found

    async def npcs(
        self, npc_ids: Sequence[str], world: str | None = None, library: Library | None = None
    ) -> list[NPC]:
        """The NPCs by id (in that order), then the rest of a world's cast, as
        ``library`` (a viewer's view; default: the whole library) shows them."""
        library = library or self._library
        ids = list(dict.fromkeys(str(i).strip() for i in npc_ids if str(i).strip()))
        for npc_id in ids:
            checked_text(npc_id, "An NPC id")
        if world:
            checked_text(world, "The world")
        found = {npc.id: npc for npc in await library.get_many(ids)} if ids else {}
        missing = [i for i in ids if i not in found]
        if missing:
            raise InputError(
                f"No NPC with id {', '.join(repr(m) for m in missing[:5])} in the library; "
                "search or list the library to find the ids."
            )
        npcs = [found[i] for i in ids]
        if world:
            cast = await library.list_npcs(world=world, limit=MAX_WORLD_NPCS)
            if not cast:
                raise InputError(f"The library has no NPCs in the world {world!r}.")
            npcs += [npc for npc in cast if npc.id not in found]
        if not npcs:
            raise InputError("Choose at least one NPC (or a world, for its whole cast).")
        return npcs

    def requests(
        self, npcs: Sequence[NPC], situations: Sequence[str], variants: int
    ) -> list[LineRequest]:
        """NPC by NPC, situation by situation, variant by variant."""
        limits = self.limits
        if not 1 <= variants <= limits.max_variants:
            raise InputError(
                f"Variants per situation must be between 1 and {limits.max_variants}; "
                f"got {variants}."
            )
        total = len(npcs) * len(situations) * variants
        if total > limits.max_lines:
            raise InputError(
                f"That is {total:,} lines ({len(npcs)} NPCs x {len(situations)} situations x "
                f"{variants} variants); at most {limits.max_lines:,} at once "
                "(NPC_FORGE_DIALOGUE_MAX_LINES). Pick fewer."
            )
        return [
            LineRequest(npc, situation, variant)
            for npc in npcs
            for situation in situations
            for variant in range(1, variants + 1)
        ]
