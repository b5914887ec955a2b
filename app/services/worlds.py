"""Worlds: the shipped world files, uploaded ones, free-text settings, and the
worlds of saved casts (kept under the data directory so later edits have
their context). ``WorldService`` is the use case; the functions are its parts.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from pydantic import ValidationError

from app.errors import InputError, NPCForgeError, WorldFileError
from app.models import World
from app.services.library import EVERYONE, Viewer
from app.services.text import checked_text
from app.services.world_access import TEAM, Action, WorldAccess, WorldGrant
from app.services.world_names import numbered, setting_name, time_period_in
from utils.cached_json import BrokenJSONError, JSONFileCache
from utils.jsonio import atomic_write_bytes, dumps, read_json_bytes

log = logging.getLogger(__name__)

MAX_WORLD_FILE_BYTES = 1_000_000
WORLD_FORMAT_HINT = (
    'Expected {"era": text, "time_period": text, "detail": text or {section: text}, '
    '"guardrails": {name: text} (optional)}.'
)


def world_name_from_path(path: Path) -> str:
    """``roman_empire.json`` -> ``Roman Empire``."""
    return path.stem.replace("_", " ").replace("-", " ").strip().title() or "World"


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item["loc"]) or "the file"
        if item["type"] == "missing":
            problems.append(f"'{where}' is missing")
        elif item["type"] == "extra_forbidden":
            problems.append(f"'{where}' is not a world field")
        else:
            problems.append(f"'{where}': {item['msg']}")
    return "; ".join(problems)


def _validate(raw: object, *, source: str, default_name: str) -> World:
    if not isinstance(raw, dict):
        raise WorldFileError(
            source, f"must hold a JSON object, not {type(raw).__name__}. {WORLD_FORMAT_HINT}"
        )
    values = {"name": default_name, **raw}  # a copy: cached data is shared
    try:
        return World.model_validate(values)
    except ValidationError as exc:
        raise WorldFileError(source, f"{_describe(exc)}. {WORLD_FORMAT_HINT}") from None


def _too_big(size: int, source: str) -> WorldFileError:
    return WorldFileError(
        source, f"is {size:,} bytes; the limit is {MAX_WORLD_FILE_BYTES:,}. Shorten the detail."
    )


def parse_world(data: bytes | str, *, source: str, default_name: str) -> World:
    """Parse and validate world JSON; every problem becomes a WorldFileError."""
    if len(data) > MAX_WORLD_FILE_BYTES:
        raise _too_big(len(data), source)
    try:
        raw = read_json_bytes(data)
    except ValueError as exc:
        raise WorldFileError(source, f"is not valid JSON ({exc}). {WORLD_FORMAT_HINT}") from None
    return _validate(raw, source=source, default_name=default_name)


def load_world_file(path: Path, files: JSONFileCache) -> World:
    """Read a world file through the mtime-keyed JSON cache.

    A broken edit of a file that loaded before keeps its last good version
    (the cache logs a warning); a file that never parsed is an error.
    """
    try:
        size = path.stat().st_size
        if size > MAX_WORLD_FILE_BYTES:
            raise _too_big(size, path.name)
        raw = files.read(path)
    except FileNotFoundError:
        raise WorldFileError(str(path), "does not exist. Check the path.") from None
    except BrokenJSONError as exc:
        raise WorldFileError(
            path.name, f"is not valid JSON ({exc.problem}). {WORLD_FORMAT_HINT}"
        ) from None
    except OSError as exc:
        raise WorldFileError(str(path), f"cannot be read ({exc.strerror}).") from None
    return _validate(raw, source=path.name, default_name=world_name_from_path(path))


def list_world_files(worlds_dir: Path) -> dict[str, Path]:
    """Shipped worlds by display name, sorted."""
    files = sorted(worlds_dir.glob("*.json")) if worlds_dir.is_dir() else []
    return {world_name_from_path(path): path for path in files}


def world_from_setting(text: str, *, max_chars: int) -> World:
    """A world from a free-text description, named after its first clause; its
    time period is the first year or century the text names."""
    text = checked_text(text, "The setting text").strip()
    if not text:
        raise InputError("The setting text is empty. Describe the world, or pick a world file.")
    if len(text) > max_chars:
        raise InputError(
            f"The setting text is {len(text):,} characters; the limit is {max_chars:,}. "
            "Shorten it, or put the detail in a world file."
        )
    first_line = text.splitlines()[0][:200]
    return World(
        name=setting_name(text),
        era=first_line,
        time_period=time_period_in(text) or "as described",
        detail=text,
    )


def with_setting_notes(world: World, text: str, *, max_chars: int) -> World:
    """Add a designer's free-text notes to a world as an extra detail section."""
    text = text.strip()
    if not text:
        return world
    notes = world_from_setting(text, max_chars=max_chars).detail_text()
    detail = dict(world.detail) if isinstance(world.detail, dict) else {"overview": world.detail}
    detail["designer_notes"] = notes
    return world.model_copy(update={"detail": detail})


def world_filename(name: str) -> str:
    """A file name for a world: ``Harrow Bay`` -> ``harrow_bay.json``."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip().lower())
    stem = re.sub(r"_{2,}", "_", stem)  # "Rome, my way" -> rome_my_way, not rome__my_way
    return f"{stem.strip('_')[:80] or 'world'}.json"


@dataclass(frozen=True, slots=True)
class ResolvedWorld:
    """The world for a request, and a warning for the user when there is one."""

    world: World
    warning: str | None = None


class WorldService:
    """Find, read and keep worlds; every read goes through the JSON file cache.

    Shipped worlds (``assets/worlds``) are read-only. User worlds are the files
    under ``saved_dir``: the ones made in the World Builder or the worlds CLI,
    and the worlds of saved casts (a free-text setting among them). A user
    world is known by the name inside its file; a shipped name always wins.
    Who may change a user world is its access record (``world_access``); every
    change takes ``by``, the viewer asking (everyone's by default: direct calls).
    """

    def __init__(
        self,
        shipped_dir: Path,
        saved_dir: Path,
        files: JSONFileCache,
        *,
        max_setting_chars: int,
        access_dir: Path | None = None,
    ) -> None:
        self.shipped_dir = shipped_dir
        self.saved_dir = saved_dir
        self.files = files
        self.max_setting_chars = max_setting_chars
        self.access = WorldAccess(access_dir or saved_dir.parent / "world_access")

    # -- reading -----------------------------------------------------------------------
    def shipped(self) -> dict[str, Path]:
        """Shipped worlds by display name (the files may change while the app runs)."""
        return list_world_files(self.shipped_dir)

    def user_worlds(self) -> dict[str, Path]:
        """User worlds by name, sorted; unreadable files are logged and skipped."""
        shipped = self.shipped()
        found: dict[str, Path] = {}
        paths = sorted(self.saved_dir.glob("*.json")) if self.saved_dir.is_dir() else []
        for path in paths:
            try:
                name = self.load(path).name
            except NPCForgeError as exc:
                log.warning("skipping user world %s: %s", path.name, exc)
                continue
            if name not in shipped:  # a saved cast's copy of a shipped world
                found.setdefault(name, path)
        return dict(sorted(found.items(), key=lambda item: item[0].lower()))

    def names(self) -> list[str]:
        """Shipped worlds, then user worlds."""
        return [*self.shipped(), *self.user_worlds()]

    def is_shipped(self, name: str) -> bool:
        return name in self.shipped()

    def load(self, path: Path) -> World:
        return load_world_file(path, self.files)

    def get(self, name: str) -> World:
        """A shipped or user world by name or file stem, never a path (what the
        World Builder and its API may read; blocking file I/O: call it in a thread)."""
        return self.load(self._find(name, paths=False))

    def _find(self, world: str | Path, *, paths: bool = True) -> Path:
        """A shipped or user world by name or file stem, or (``paths``) a file path."""
        shipped = self.shipped()
        users = self.user_worlds()
        for known in (shipped, users):
            if str(world) in known:
                return known[str(world)]
            by_stem = {path.stem: path for path in known.values()}
            if str(world) in by_stem:
                return by_stem[str(world)]
        if not isinstance(world, str | Path):  # the API may send anything (a list)
            raise InputError(f"The world must be a name or a file; got {type(world).__name__}.")
        path = Path(world)
        if paths and path.is_file():
            return path
        names = ", ".join(shipped) or "none"
        listed = ", ".join(list(users)[:10]) + (", ..." if len(users) > 10 else "")
        mine = f" Your worlds: {listed}." if users else ""
        raise WorldFileError(str(world), f"does not exist. Shipped worlds: {names}.{mine}")

    def resolve(self, world: str | Path | None, setting: str | None) -> ResolvedWorld:
        """The world for a request: a file (path, or a world's name or stem),
        free text, or a file with the text added as designer notes."""
        setting = setting or ""
        if world is None or world == "":
            return ResolvedWorld(self.setting_world(setting))
        path = self._find(world)
        loaded = with_setting_notes(self.load(path), setting, max_chars=self.max_setting_chars)
        problem = self.files.problem(path)
        warning = (
            f"{path.name} has a broken edit ({problem}); using its last good version. "
            "Fix the file and it is picked up at once."
            if problem
            else None
        )
        return ResolvedWorld(loaded, warning)

    def setting_world(self, text: str) -> World:
        """A free-text setting as its own named world: the same text always gets
        the same name; a name another world holds moves on to ``Name (2)``."""
        world = world_from_setting(text, max_chars=self.max_setting_chars)
        shipped, users = self.shipped(), self.user_worlds()
        for number in range(1, len(shipped) + len(users) + 2):
            name = numbered(world.name, number)
            if name in shipped:
                continue
            if name in users and self._detail_of(users[name]) != world.detail:
                continue
            return world.model_copy(update={"name": name})
        raise AssertionError("a free name exists among len(taken) + 1 candidates")

    def _detail_of(self, path: Path) -> str | dict[str, str] | None:
        try:
            return self.load(path).detail
        except NPCForgeError:
            return None

    def world_for(self, name: str) -> World:
        """The world an NPC belongs to: shipped, remembered, or just its name
        (blocking file I/O: call it in a thread)."""
        for path in (self.shipped().get(name), self.user_worlds().get(name)):
            if path is not None and path.is_file():
                try:
                    return self.load(path)
                except NPCForgeError as exc:
                    log.warning("cannot use %s for %r: %s", path.name, name, exc)
        return World(name=name, era=name, time_period="unspecified")

    def warm(self) -> None:
        """Read every shipped and user world now (start-up warm-up, in a thread)."""
        for path in self.shipped().values():
            try:
                self.load(path)
            except NPCForgeError as exc:
                log.warning("%s", exc)
        self.user_worlds()

    # -- writing (blocking file I/O: call these in a thread) -----------------------------
    def _lock(self) -> FileLock:
        """One writer at a time across processes (the UI and the CLI may both write)."""
        self.saved_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(self.saved_dir / ".worlds.lock")

    def check_writable(self, name: str) -> None:
        """InputError when ``name`` is a shipped world (those stay read-only)."""
        if self.is_shipped(name):
            raise InputError(
                f"{name!r} is a shipped world and stays read-only; save your version "
                "under another name."
            )

    def user_world(self, name: str) -> Path:
        """The file of a user world; InputError for a shipped or unknown name."""
        self.check_writable(name)
        path = self.user_worlds().get(name)
        if path is None:
            raise InputError(f"There is no saved world called {name!r}.")
        return path

    def grant_of(self, name: str) -> WorldGrant:
        """Who owns and may edit a user world (InputError for a shipped or unknown one)."""
        return self.access.of(self.user_world(name))

    def check_may(self, name: str, action: Action, by: Viewer = EVERYONE) -> Path:
        """The user world's file when ``by`` may do ``action`` to it; InputError
        saying who may otherwise."""
        path = self.user_world(name)
        grant = self.access.of(path)
        if not grant.may(by, action):
            raise InputError(grant.refusal(name, by, action))
        return path

    def _new_path(self, name: str) -> Path:
        """A file for a new user world; two names that make one file name get ``_2``."""
        stem = Path(world_filename(name)).stem
        for number in range(1, 1000):
            path = self.saved_dir / f"{stem if number == 1 else f'{stem}_{number}'}.json"
            if not path.exists():
                return path
        raise InputError(f"Too many worlds are called like {name!r}; choose another name.")

    def _write(self, path: Path, world: World) -> None:
        atomic_write_bytes(path, dumps(world.model_dump(), pretty=True))
        self.files.refresh([path])

    def save(
        self,
        world: World,
        *,
        replace: bool = False,
        by: Viewer = EVERYONE,
        owner: str | None = None,
    ) -> Path:
        """Keep a user world. A name already taken is refused unless ``replace``
        and ``by`` may save over it (then that world's file is rewritten, its
        access kept); shipped names always are. A new world is ``owner``'s
        (None: the team's)."""
        self.check_writable(world.name)
        with self._lock():
            existing = self.user_worlds().get(world.name)
            if existing is not None and not replace:
                may = self.access.of(existing).may(by, "save over")
                raise InputError(
                    f"A world called {world.name!r} already exists; choose another name"
                    + (", or save over it." if may else " (it is not yours to save over).")
                )
            if existing is not None:
                path = self.check_may(world.name, "save over", by)
            else:
                path = self._new_path(world.name)
                # The record first: a crash before the world is written leaves a
                # record without a world, which the next save here replaces.
                self.access.set(path, WorldGrant(owner or None))
            self._write(path, world)
        return path

    def rename(self, old: str, new: str, *, by: Viewer = EVERYONE) -> World:
        """Give a user world a new name (and a new file); its access moves with it."""
        new = checked_text(new or "", "The new name").strip()
        if not new:
            raise InputError("Type the new name of the world.")
        self.check_writable(new)
        with self._lock():
            old_path = self.check_may(old, "rename", by)
            if new in self.user_worlds() and new != old:
                raise InputError(f"A world called {new!r} already exists; choose another name.")
            try:
                renamed = self.load(old_path).model_copy(update={"name": new})
                renamed = World.model_validate(renamed.model_dump())
            except ValidationError as exc:
                raise InputError(f"The new name cannot be used: {_describe(exc)}.") from None
            path = self._new_path(new)
            self.access.set(path, self.access.of(old_path))
            self._write(path, renamed)
            if path != old_path:
                old_path.unlink(missing_ok=True)
                self.access.remove(old_path)
                self.files.refresh([old_path])
        return renamed

    def delete(self, name: str, *, by: Viewer = EVERYONE) -> Path:
        """Remove a user world's file and its access record; returns where it was."""
        with self._lock():
            path = self.check_may(name, "delete", by)
            path.unlink(missing_ok=True)
            self.access.remove(path)
            self.files.refresh([path])
        return path

    def grant(self, name: str, user: str, *, by: Viewer = EVERYONE) -> WorldGrant:
        """Let ``user`` save over and rename a user world (``by`` must own it or be
        an admin). Granting twice changes nothing."""
        with self._lock():
            path = self.check_may(name, "grant", by)
            grant = self.access.of(path)
            if user == grant.owner:
                raise InputError(f"{user} owns {name!r} already.")
            if user not in grant.editors:
                grant = WorldGrant(grant.owner, (*grant.editors, user))
                self.access.set(path, grant)
        return grant

    def revoke(self, name: str, user: str, *, by: Viewer = EVERYONE) -> WorldGrant:
        """Take editing of a user world back from ``user``."""
        with self._lock():
            path = self.check_may(name, "grant", by)
            grant = self.access.of(path)
            if user not in grant.editors:
                editors = ", ".join(grant.editors) or "nobody"
                raise InputError(f"{user} is not an editor of {name!r} (editors: {editors}).")
            grant = WorldGrant(grant.owner, tuple(e for e in grant.editors if e != user))
            self.access.set(path, grant)
        return grant

    def remember(self, world: World, owner: str | None = None) -> None:
        """Keep the world of a saved cast, so later edits have its context; it is
        ``owner``'s (the cast's maker; None: the team's). An existing user world of
        that name is left as it is (a cast with designer notes must not overwrite
        the world it came from)."""
        with self._lock():
            if world.name in self.user_worlds():
                return
            path = self.saved_dir / world_filename(world.name)
            if path.exists() and self._name_of(path) not in (None, world.name):
                path = self._new_path(world.name)  # "Kelp-Haven" must not replace "Kelp Haven"
            self._write(path, world)
            # Always written: no stale record of an older world there gives it an owner.
            self.access.set(path, WorldGrant(owner) if owner else TEAM)

    def _name_of(self, path: Path) -> str | None:
        try:
            return self.load(path).name
        except NPCForgeError:
            return None
