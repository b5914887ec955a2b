"""The World Builder's use cases, shared by its tab, its API and ``npc-forge worlds``.

A world is made from a form (era, time period, detail sections, guardrails),
from a shipped or uploaded file, or drafted from a pitch; it is checked as it
is typed, and saved, renamed, deleted or downloaded as a user world. Renaming
a world moves its cast in the library with it.

With sign-in a saved world is its maker's: they and admins may change it and
grant other accounts editing (see ``world_access``). A rename never changes an
NPC the renamer may not change: when other users' (or the team's) NPCs belong
to the world, a designer's rename is refused and an admin's moves them all, so
a world's cast is never split between two names.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.errors import InputError
from app.models import NPC, World
from app.services.accounts import Accounts
from app.services.library import EVERYONE, MAX_WORLD_NPCS, Library, Viewer
from app.services.text import checked_text
from app.services.world_access import WorldGrant
from app.services.world_drafts import WorldDraft, WorldDrafter
from app.services.worlds import WorldService, parse_world, world_filename
from utils.jsonio import dumps

Rows = Sequence[Sequence[Any]]


def section_key(label: str) -> str:
    """``Daily life`` -> ``daily_life``: how sections are keyed in world files."""
    return re.sub(r"[^\w]+", "_", label.strip().lower()).strip("_")


def section_label(key: str) -> str:
    """``daily_life`` -> ``Daily life``: how the form shows a section."""
    return key.replace("_", " ").strip().capitalize()


def _cell(row: Sequence[Any], index: int) -> str:
    value = row[index] if index < len(row) else ""
    return "" if value is None else str(value).strip()


def _sections(rows: Rows, what: str, problems: list[str]) -> dict[str, str]:
    """Rows of (name, text) as a mapping; empty rows are dropped, bad ones reported."""
    sections: dict[str, str] = {}
    for number, row in enumerate(rows, 1):
        label, text = _cell(row, 0), _cell(row, 1)
        if not label and not text:
            continue
        key = section_key(label)
        if not key:
            problems.append(f"{what} row {number}: give it a name.")
        elif not text:
            problems.append(f"{what} '{label}': write its text, or remove the row.")
        elif key in sections:
            problems.append(f"{what} '{label}' is there twice; merge the two rows.")
        else:
            sections[key] = text
    return sections


@dataclass(frozen=True, slots=True)
class FormCheck:
    """The form as a world, or what keeps it from being one (each with what to do)."""

    world: World | None
    problems: list[str] = field(default_factory=list)

    def required(self) -> World:
        if self.world is None:
            raise InputError(" ".join(self.problems))
        return self.world


def form_text(value: object, what: str) -> str:
    """A form field as text: None is empty; anything but text is refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{what} must be text, not {type(value).__name__}.")
    return value.strip()


def check_form(name: str, era: str, time_period: str, detail: Rows, guardrails: Rows) -> FormCheck:
    """Validate the World Builder form; every problem is reported at once."""
    problems: list[str] = []
    values = {
        "name": form_text(name, "The name"),
        "era": form_text(era, "The era"),
        "time_period": form_text(time_period, "The time period"),
    }
    for key, what in (("name", "Name"), ("era", "Era"), ("time_period", "Time period")):
        try:
            checked_text(values[key], what)
        except InputError as exc:
            problems.append(str(exc))
        if not values[key]:
            problems.append(f"{what} is empty: fill it in.")
    sections = _sections(detail or [], "Detail section", problems)
    rules = _sections(guardrails or [], "Guardrail", problems)
    if not sections:
        problems.append("Add at least one detail section (e.g. overview: what the world is like).")
    if problems:
        return FormCheck(None, problems)
    try:
        return FormCheck(World(**values, detail=sections, guardrails=rules))
    except ValidationError as exc:
        return FormCheck(
            None,
            [f"{'.'.join(map(str, e['loc']))}: {e['msg']}." for e in exc.errors()[:5]],
        )


def form_rows(world: World) -> tuple[list[list[str]], list[list[str]]]:
    """A world's detail sections and guardrails as form rows."""
    detail = world.detail if isinstance(world.detail, dict) else {"overview": world.detail}
    return (
        [[section_label(key), text] for key, text in detail.items()],
        [[section_label(key), text] for key, text in world.guardrails.items()],
    )


def world_json(world: World) -> bytes:
    """A world as its file holds it (what Download gives)."""
    return dumps(world.model_dump(), pretty=True)


@dataclass(frozen=True, slots=True)
class WorldEntry:
    name: str
    shipped: bool
    path: Path
    grant: WorldGrant | None = None  # who owns and edits a saved world


ADD_ACCOUNTS = (
    "Add accounts with --auth USER:PASS[:ROLE] (or NPC_FORGE_AUTH) or a line "
    "user:password[:role] in the --auth-file (or NPC_FORGE_AUTH_FILE), then restart the app."
)


class WorldBuilder:
    """Make, keep and change worlds; a world's cast follows a rename."""

    def __init__(
        self,
        worlds: WorldService,
        drafts: WorldDrafter,
        library: Library,
        accounts: Accounts | None = None,
    ) -> None:
        self.worlds = worlds
        self.drafts = drafts
        self.library = library
        self.accounts = accounts or Accounts()

    def entries(self) -> list[WorldEntry]:
        """Every world, shipped first (blocking file reads: call in a thread)."""
        access = self.worlds.access
        return [
            *(WorldEntry(name, True, path) for name, path in self.worlds.shipped().items()),
            *(
                WorldEntry(name, False, path, access.of(path))
                for name, path in self.worlds.user_worlds().items()
            ),
        ]

    async def list_worlds(self) -> list[WorldEntry]:
        return await asyncio.to_thread(self.entries)

    async def get(self, name: str) -> World:
        name = form_text(name, "The world's name")
        if not name:
            raise InputError("Choose a world to start from.")
        return await asyncio.to_thread(self.worlds.get, name)

    @staticmethod
    def upload(data: bytes, filename: str) -> World:
        """A world file someone uploaded, checked like every world file."""
        return parse_world(data, source=filename, default_name=Path(filename).stem.title())

    async def draft(
        self, pitch: str, *, backend: str | None = None, seed: int | None = None
    ) -> WorldDraft:
        return await self.drafts.draft(pitch, backend=backend, seed=seed)

    async def save(
        self,
        world: World,
        *,
        replace: bool = False,
        by: Viewer = EVERYONE,
        owner: str | None = None,
    ) -> Path:
        return await asyncio.to_thread(self.worlds.save, world, replace=replace, by=by, owner=owner)

    async def _cast(self, name: str) -> list[NPC]:
        # Everyone's NPCs of the world (not only the renamer's view of them).
        return await self.library.list_npcs(world=name, limit=MAX_WORLD_NPCS)

    async def rename(self, old: str, new: str, *, by: Viewer = EVERYONE) -> tuple[World, int]:
        """Rename a user world; its NPCs in the library move with it. Returns the
        renamed world and how many NPCs moved. The cast is read first, so a
        library that cannot be read leaves everything as it was; a cast holding
        NPCs ``by`` may not change refuses the rename (see the module docstring)."""
        # A shipped or unknown name, or a world ``by`` may not rename, is refused
        # before the library is opened.
        await asyncio.to_thread(self.worlds.check_may, old, "rename", by)
        cast = await self._cast(old)
        others = sum(not by.may_change(npc) for npc in cast)
        if others:
            raise InputError(
                f"{others} of the {len(cast)} NPCs of {old!r} belong to other users or the "
                "team, and renaming the world would move them too. Ask an admin to rename "
                "it (every NPC moves with it), or save your version under a new name."
            )
        renamed = await asyncio.to_thread(self.worlds.rename, old, new, by=by)
        if cast:
            moved = [npc.model_copy(update={"world": renamed.name}) for npc in cast]
            await self.library.as_seen_by(by).save(moved)  # refuses what ``by`` may not change
        return renamed, len(cast)

    async def delete(self, name: str, *, by: Viewer = EVERYONE) -> tuple[Path, int]:
        """Delete a user world; returns its file and how many NPCs of it stay in the
        library (they keep the world's name, without its detail; nobody's NPC changes)."""
        await asyncio.to_thread(self.worlds.check_may, name, "delete", by)
        cast = await self._cast(name)
        return await asyncio.to_thread(self.worlds.delete, name, by=by), len(cast)

    # -- who may edit ----------------------------------------------------------------------
    async def grant_of(self, name: str) -> WorldGrant:
        name = form_text(name, "The world's name")
        return await asyncio.to_thread(self.worlds.grant_of, name)

    @staticmethod
    def _user(user: object) -> str:
        name = checked_text(form_text(user, "The user"), "The user")
        if not name:
            raise InputError("Type the account name of the user to grant or revoke.")
        return name

    def _account(self, user: object) -> str:
        """A user to grant editing to: an account the app knows."""
        name = self._user(user)
        if not self.accounts.enabled:
            raise InputError(
                "Nobody signs in to this app, so everyone may change every world already; "
                f"grants count once there are accounts. {ADD_ACCOUNTS}"
            )
        if name not in self.accounts.names():
            known = ", ".join(self.accounts.names())
            raise InputError(
                f"There is no account called {name!r} (accounts: {known}). {ADD_ACCOUNTS}"
            )
        return name

    async def grant(self, name: str, user: str, *, by: Viewer = EVERYONE) -> WorldGrant:
        """Let ``user`` save over and rename the world ``name``."""
        name = form_text(name, "The world's name")
        # Whether ``by`` may grant is asked first: the account list is not for everyone.
        await asyncio.to_thread(self.worlds.check_may, name, "grant", by)
        return await asyncio.to_thread(self.worlds.grant, name, self._account(user), by=by)

    async def revoke(self, name: str, user: str, *, by: Viewer = EVERYONE) -> WorldGrant:
        """Take editing of the world ``name`` back from ``user``."""
        name = form_text(name, "The world's name")
        await asyncio.to_thread(self.worlds.check_may, name, "grant", by)
        # An account removed since its grant can still be revoked.
        return await asyncio.to_thread(self.worlds.revoke, name, self._user(user), by=by)

    @staticmethod
    def filename(world: World) -> str:
        return world_filename(world.name)
