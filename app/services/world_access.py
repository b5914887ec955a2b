"""Who may change a saved world: its owner, the editors they grant, and admins.

Everyone signed in may read and use every world. Changing one is split:

=============  =====  ======  =====  ============================
action         owner  editor  admin  anyone else
=============  =====  ======  =====  ============================
save over      yes    yes     yes    no
rename         yes    yes     yes    no
delete         yes    no      yes    no
grant/revoke   yes    no      yes    no
=============  =====  ======  =====  ============================

Editors may not delete or grant: a grant lends a world, it does not give it away.
A world without an owner is the team's (the worlds saved before owners existed,
the worlds of saved casts, every world made without sign-in): only admins change
it. Shipped worlds stay read-only for everyone (``WorldService`` refuses them first).

The access record lives apart from the world file (``<data>/world_access/<file
stem>.json``), so a downloaded or exported world never carries who may edit it.
Records are written atomically; ``WorldService`` holds its cross-process file lock
around every read-modify-write, and every check reads the record from disk, so a
grant made by the CLI counts in a running app at once and survives a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.services.library import Viewer
from utils.jsonio import atomic_write_bytes, dumps, read_json_bytes

log = logging.getLogger(__name__)

Action = Literal["save over", "rename", "delete", "grant"]
ACTIONS: tuple[Action, ...] = ("save over", "rename", "delete", "grant")
EDITOR_ACTIONS: frozenset[Action] = frozenset({"save over", "rename"})
_VERB: dict[Action, str] = {
    "save over": "save over",
    "rename": "rename",
    "delete": "delete",
    "grant": "grant or revoke editing of",
}


@dataclass(frozen=True, slots=True)
class WorldGrant:
    """A saved world's owner (None: the team's) and the users who may edit it."""

    owner: str | None = None
    editors: tuple[str, ...] = ()

    def may(self, viewer: Viewer, action: Action) -> bool:
        if viewer.sees_all:  # an admin, the CLI, or anyone when nobody signs in
            return True
        if self.owner is not None and viewer.name == self.owner:
            return True
        return action in EDITOR_ACTIONS and viewer.name in self.editors

    def refusal(self, world: str, viewer: Viewer, action: Action) -> str:
        """Why ``viewer`` may not do ``action``, and what they can do instead."""
        verb = _VERB[action]
        if self.owner is None:
            return (
                f"{world!r} belongs to the team: only an admin may {verb} it. "
                "Save your version under a new name instead."
            )
        if viewer.name in self.editors:
            return (
                f"You may save over and rename {world!r}; only {self.owner} (its owner) or an "
                f"admin may {verb} it."
            )
        if action in EDITOR_ACTIONS:
            return (
                f"{world!r} is {self.owner}'s world: only {self.owner}, an editor they grant, "
                f"or an admin may {verb} it. Ask {self.owner} to grant you editing, or save "
                "your version under a new name."
            )
        return f"Only {self.owner} (its owner) or an admin may {verb} {world!r}."

    def describe(self) -> str:
        """``owner ann; editors bob, cy`` (``the team's`` without an owner)."""
        owner = f"owner {self.owner}" if self.owner else "the team's"
        return owner + (f"; editors {', '.join(self.editors)}" if self.editors else "")


TEAM = WorldGrant()


def _parsed(raw: object) -> WorldGrant | None:
    if not isinstance(raw, dict):
        return None
    owner, editors = raw.get("owner"), raw.get("editors", [])
    if owner is not None and not isinstance(owner, str):
        return None
    if not isinstance(editors, list) or not all(isinstance(e, str) for e in editors):
        return None
    return WorldGrant(owner or None, tuple(editors))


class WorldAccess:
    """The access records of saved worlds, one small JSON file per world file.

    Not locked itself: the caller (``WorldService``) holds the worlds' file lock.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _record(self, world_file: Path) -> Path:
        return self.directory / f"{world_file.stem}.json"

    def of(self, world_file: Path) -> WorldGrant:
        """The world's grant; no record (or a broken one) is the team's, which only
        admins change: a damaged record never opens a world to more people."""
        record = self._record(world_file)
        try:
            raw = read_json_bytes(record.read_bytes())
        except FileNotFoundError:
            return TEAM
        except (OSError, ValueError) as exc:
            log.warning("world access record %s is unreadable (%s): the team's", record, exc)
            return TEAM
        grant = _parsed(raw)
        if grant is None:
            log.warning("world access record %s is not a grant: the team's", record)
            return TEAM
        return grant

    def set(self, world_file: Path, grant: WorldGrant) -> None:
        if grant == TEAM:
            self.remove(world_file)
            return
        data = {"world_file": world_file.name, "owner": grant.owner, "editors": grant.editors}
        atomic_write_bytes(self._record(world_file), dumps(data, pretty=True))

    def move(self, old_file: Path, new_file: Path) -> None:
        """The record follows a renamed world file (new record first, then the old
        one goes: a crash in between leaves a stale record, never an open world)."""
        self.set(new_file, self.of(old_file))
        self.remove(old_file)

    def remove(self, world_file: Path) -> None:
        self._record(world_file).unlink(missing_ok=True)
