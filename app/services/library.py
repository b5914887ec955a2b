"""The NPC library: keep, find, edit and delete NPCs (ChromaDB underneath).

The store is built on first use (importing chromadb costs a second), and its
synchronous calls run in a thread so the UI's event loop never blocks.

Each NPC records who made it (``owner``; None = the team's). A library seen
by a designer (``as_seen_by``) finds and opens only their own NPCs, the
team's and those their owners shared with the team (``shared``), and changes
only their own; another user's unshared NPC is "not found", as if it did not
exist. Admins, the CLI and an app without sign-in see everything.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app.errors import InputError
from app.models import NPC, PROFILE_FIELDS, Relationship
from app.personality import PersonalityData
from app.services.text import checked_text
from app.services.ties import merge_ties, parse_tie_rows

if TYPE_CHECKING:
    from app.store.npc_store import NPCStore, SearchHit

MAX_RESULTS = 50
MAX_QUERY_CHARS = 1000
# A world's cast as relationship tools see it, and every NPC of a world at most.
MAX_CAST_FOR_RELATIONSHIPS = 30
MAX_WORLD_NPCS = 10_000
EDITABLE_FIELDS = (*PROFILE_FIELDS, "tags")
# List fields typed into one text box: sample lines one per line, the rest
# separated by commas or new lines.
LINE_LISTS = {"sample_lines"}
COMMA_LISTS = {"personality_traits", "tags"}


def parse_field_value(field: str, text: str) -> Any:
    """What a designer typed, in the field's type (validation comes after)."""
    if field in LINE_LISTS:
        return [line.strip() for line in text.splitlines() if line.strip()]
    if field in COMMA_LISTS:
        return [item.strip() for item in re.split(r"[,\n]", text) if item.strip()]
    if field == "age":
        try:
            return int(text.strip())
        except ValueError:
            raise InputError(f"Age must be a whole number; got {text.strip()!r}.") from None
    return text


def field_text(npc: NPC, field: str) -> str:
    """A field as the edit box shows it (inverse of ``parse_field_value``)."""
    value = getattr(npc, field)
    if field in LINE_LISTS:
        return "\n".join(value)
    if field in COMMA_LISTS:
        return ", ".join(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose NPCs a view of the library shows and may change."""

    name: str
    sees_all: bool  # an admin, the CLI, or anyone when nobody signs in

    @property
    def owners(self) -> tuple[str, ...] | None:
        """The owners whose NPCs this viewer finds ("" = the team's); None = all."""
        return None if self.sees_all else (self.name, "")

    def sees(self, npc: NPC) -> bool:
        return self.sees_all or npc.shared or npc.owner in (None, "", self.name)

    def may_change(self, npc: NPC) -> bool:
        return self.sees_all or npc.owner == self.name


EVERYONE = Viewer("", sees_all=True)


class _LazyStore:
    """The store, built once on first use and shared by every view."""

    def __init__(self, factory: Callable[[], NPCStore]) -> None:
        self._factory = factory
        self._store: NPCStore | None = None
        self._lock = threading.Lock()

    def get(self) -> NPCStore:
        with self._lock:
            if self._store is None:
                self._store = self._factory()
            return self._store


def _filter_text(value: object, what: str) -> str | None:
    """A world or tag filter as the API may send it; Chroma fails on anything but
    plain text (a list, a lone surrogate: "Invalid where clause")."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"{what} must be text; got {type(value).__name__}.")
    return checked_text(value, what)


class Library:
    """Use cases over the NPC store, as one viewer sees it."""

    def __init__(
        self,
        store_factory: Callable[[], NPCStore],
        personalities: Callable[[], PersonalityData],
        viewer: Viewer = EVERYONE,
    ) -> None:
        self._lazy = _LazyStore(store_factory)
        self._personalities = personalities
        self.viewer = viewer

    def as_seen_by(self, viewer: Viewer) -> Library:
        """The same library, showing and changing what ``viewer`` may."""
        view = Library.__new__(Library)
        view._lazy, view._personalities, view.viewer = self._lazy, self._personalities, viewer
        return view

    @property
    def store(self) -> NPCStore:
        return self._lazy.get()

    def changeable(self, npc: NPC) -> NPC:
        """``npc``, when this viewer may change it; InputError saying why not."""
        if not self.viewer.may_change(npc):
            raise InputError(
                f"{npc.name} belongs to the team (or another user) and is read-only for you; "
                "export it and import the copy to make it yours."
            )
        return npc

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def save(self, npcs: Sequence[NPC]) -> None:
        """Keep NPCs (one batched write); a designer's view writes only theirs, and
        never over someone else's NPC of the same id. A new version of an NPC its
        owner shared (a cast made again with its seed) stays shared."""
        for npc in npcs:
            self.changeable(npc)
        if npcs and (not self.viewer.sees_all or any(n.owner for n in npcs)):
            stored: list[NPC] = await self._run(lambda: self.store.get_many([n.id for n in npcs]))
            for npc in stored:
                self.changeable(npc)
            shared = {npc.id for npc in stored if npc.shared}
            npcs = [n.model_copy(update={"shared": True}) if n.id in shared else n for n in npcs]
        if npcs:
            await self._run(lambda: self.store.upsert(npcs))

    async def count(self) -> int:
        result: int = await self._run(lambda: self.store.count(self.viewer.owners, shared=True))
        return result

    async def search(
        self, query: str, *, k: int = 5, world: str | None = None, tag: str | None = None
    ) -> list[SearchHit]:
        """NPCs closest in meaning to ``query``; ``k`` between 1 and 50."""
        query = checked_text(query or "", "The search text").strip()
        if not query:
            raise InputError(
                "Type what you are looking for, e.g. 'grumpy blacksmith with a secret'."
            )
        if len(query) > MAX_QUERY_CHARS:
            raise InputError(
                f"The search text is {len(query):,} characters; keep it under {MAX_QUERY_CHARS:,}."
            )
        world, tag = _filter_text(world, "The world"), _filter_text(tag, "The tag")
        if not 1 <= k <= MAX_RESULTS:
            raise InputError(f"The number of results must be between 1 and {MAX_RESULTS}; got {k}.")
        hits: list[SearchHit] = await self._run(
            lambda: self.store.search(
                query,
                k=k,
                world=world or None,
                tag=tag or None,
                owners=self.viewer.owners,
                shared=True,
            )
        )
        return hits

    async def get(self, npc_id: str) -> NPC:
        npc: NPC | None = await self._run(lambda: self.store.get(npc_id))
        if npc is None or not self.viewer.sees(npc):
            raise InputError(
                f"No NPC with id {npc_id!r} in the library; search or list to find it."
            )
        return npc

    async def get_many(self, ids: Sequence[str]) -> list[NPC]:
        found: list[NPC] = await self._run(lambda: self.store.get_many(ids))
        return [npc for npc in found if self.viewer.sees(npc)]

    async def list_npcs(
        self, *, world: str | None = None, tag: str | None = None, limit: int = 200
    ) -> list[NPC]:
        # Chroma refuses a filter holding a lone surrogate ("Invalid where clause").
        world, tag = _filter_text(world, "The world"), _filter_text(tag, "The tag")
        found: list[NPC] = await self._run(
            lambda: self.store.list_npcs(
                world=world or None,
                tag=tag or None,
                limit=limit,
                owners=self.viewer.owners,
                shared=True,
            )
        )
        return found

    async def worlds(self) -> list[str]:
        found: list[str] = await self._run(
            lambda: self.store.worlds(self.viewer.owners, shared=True)
        )
        return found

    async def used_names(self, world: str, *, except_cast_seed: int | None = None) -> set[str]:
        """Names already in the library for a world (the generator avoids them)."""
        found: set[str] = await self._run(
            lambda: self.store.names_in_world(world, except_cast_seed=except_cast_seed)
        )
        return found

    async def _linked(self, npc: NPC) -> list[NPC]:
        """NPCs of the same world with a relationship pointing at ``npc``, whoever's
        they are (a deleted or renamed NPC must not dangle in anyone's ties)."""
        others: list[NPC] = await self._run(
            lambda: self.store.list_npcs(world=npc.world, limit=MAX_WORLD_NPCS)
        )
        return [
            other
            for other in others
            if other.id != npc.id and any(r.target_id == npc.id for r in other.relationships)
        ]

    async def delete(self, npc_id: str) -> NPC:
        """Remove an NPC and every relationship pointing at it."""
        npc = self.changeable(await self.get(npc_id))
        updated = [
            other.model_copy(
                update={"relationships": [r for r in other.relationships if r.target_id != npc_id]}
            )
            for other in await self._linked(npc)
        ]
        await self._run(lambda: self.store.upsert(updated))  # ties follow, whoever's
        await self._run(lambda: self.store.delete([npc_id]))
        return npc

    async def replace(self, npc: NPC) -> NPC:
        """Store a new version of an NPC; others' relationships follow a new name."""
        old = self.changeable(await self.get(npc.id))
        # An edit never moves it, nor shares or unshares it.
        npc = npc.model_copy(update={"owner": old.owner, "shared": old.shared})
        updated = [npc]
        if old.name != npc.name:
            for other in await self._linked(old):
                relationships = [
                    r.model_copy(update={"target_name": npc.name}) if r.target_id == npc.id else r
                    for r in other.relationships
                ]
                updated.append(other.model_copy(update={"relationships": relationships}))
        await self._run(lambda: self.store.upsert(updated))  # ties follow, whoever's
        return npc

    async def share(self, npc_id: str, shared: bool) -> NPC:
        """Share one's own NPC with the team (everyone may see, chat with and export
        it; only the owner and admins change it), or take it back."""
        npc = self.changeable(await self.get(npc_id))
        if npc.owner is None:
            raise InputError(f"{npc.name} is the team's already: every user sees it.")
        if npc.shared != bool(shared):
            npc = npc.model_copy(update={"shared": bool(shared)})
            await self._run(lambda: self.store.upsert([npc]))
        return npc

    async def edit_field(self, npc_id: str, field: str, text: str) -> NPC:
        """Set one field by hand; the result must still be a valid NPC."""
        if field not in EDITABLE_FIELDS:
            raise InputError(
                f"{field!r} cannot be edited; pick one of {', '.join(EDITABLE_FIELDS)}."
            )
        npc = await self.get(npc_id)
        values = npc.model_dump()
        values[field] = parse_field_value(field, checked_text(text, f"The {field}"))
        try:
            edited = NPC.model_validate(values)
        except ValidationError as exc:
            problem = exc.errors()[0]
            raise InputError(f"{field}: {problem['msg']}.") from None
        if field == "personality_traits":  # the same rule as for a new cast
            self._personalities().check_compatible(edited.personality_traits)
        return await self.replace(edited)

    async def set_relationships(self, npc_id: str, relationships: Sequence[Relationship]) -> NPC:
        npc = await self.get(npc_id)
        return await self.replace(npc.model_copy(update={"relationships": list(relationships)}))

    async def world_cast(
        self, npc_id: str, *, limit: int = MAX_CAST_FOR_RELATIONSHIPS
    ) -> list[NPC]:
        """Up to ``limit`` NPCs of this NPC's world, this one always among them."""
        npc = await self.get(npc_id)
        cast = await self.list_npcs(world=npc.world, limit=limit)
        return cast if any(c.id == npc.id for c in cast) else [npc, *cast[: limit - 1]]

    async def world_npcs(self, npc_id: str) -> list[NPC]:
        """Every NPC of this NPC's world."""
        npc = await self.get(npc_id)
        return await self.list_npcs(world=npc.world, limit=MAX_WORLD_NPCS)

    async def save_tie_rows(
        self,
        npc_id: str,
        rows: Sequence[Sequence[Any]],
        *,
        limit: int = MAX_CAST_FOR_RELATIONSHIPS,
    ) -> list[NPC]:
        """Replace the ties among this NPC's world (the ``limit`` NPCs the table
        showed) with an edited table."""
        cast = await self.world_cast(npc_id, limit=limit)
        updated = merge_ties(cast, parse_tie_rows(rows, cast))
        await self.save(updated)
        return updated
