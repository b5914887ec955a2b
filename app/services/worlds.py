"""Worlds: the shipped world files, uploaded ones, free-text settings, and the
worlds of saved casts (kept under the data directory so later edits have
their context). ``WorldService`` is the use case; the functions are its parts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from app.errors import InputError, NPCForgeError, WorldFileError
from app.models import World
from app.services.text import checked_text
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
    """A world from a free-text description."""
    text = checked_text(text, "The setting text").strip()
    if not text:
        raise InputError("The setting text is empty. Describe the world, or pick a world file.")
    if len(text) > max_chars:
        raise InputError(
            f"The setting text is {len(text):,} characters; the limit is {max_chars:,}. "
            "Shorten it, or put the detail in a world file."
        )
    first_line = text.splitlines()[0][:200]
    return World(name="Custom setting", era=first_line, time_period="as described", detail=text)


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
    return f"{stem.strip('_')[:80] or 'world'}.json"


@dataclass(frozen=True, slots=True)
class ResolvedWorld:
    """The world for a request, and a warning for the user when there is one."""

    world: World
    warning: str | None = None


class WorldService:
    """Find, read and keep worlds; every read goes through the JSON file cache."""

    def __init__(
        self, shipped_dir: Path, saved_dir: Path, files: JSONFileCache, *, max_setting_chars: int
    ) -> None:
        self.shipped_dir = shipped_dir
        self.saved_dir = saved_dir
        self.files = files
        self.max_setting_chars = max_setting_chars

    def shipped(self) -> dict[str, Path]:
        """Shipped worlds by display name (the files may change while the app runs)."""
        return list_world_files(self.shipped_dir)

    def names(self) -> list[str]:
        return list(self.shipped())

    def load(self, path: Path) -> World:
        return load_world_file(path, self.files)

    def _find(self, world: str | Path) -> Path:
        """A path as given, or a shipped world by display name or file stem."""
        shipped = self.shipped()
        if str(world) in shipped:
            return shipped[str(world)]
        by_stem = {path.stem: path for path in shipped.values()}
        if str(world) in by_stem:
            return by_stem[str(world)]
        path = Path(world)
        if path.exists():
            return path
        names = ", ".join(shipped) or "none"
        raise WorldFileError(str(world), f"does not exist. Shipped worlds: {names}.")

    def resolve(self, world: str | Path | None, setting: str | None) -> ResolvedWorld:
        """The world for a request: a file (path, or a shipped world's name or stem),
        free text, or a file with the text added as designer notes."""
        setting = setting or ""
        if world is None or world == "":
            return ResolvedWorld(world_from_setting(setting, max_chars=self.max_setting_chars))
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

    def remember(self, world: World) -> None:
        """Keep the world of a saved cast (blocking file I/O: call it in a thread)."""
        path = self.saved_dir / world_filename(world.name)
        atomic_write_bytes(path, dumps(world.model_dump(), pretty=True))

    def world_for(self, name: str) -> World:
        """The world an NPC belongs to: shipped, remembered, or just its name
        (blocking file I/O: call it in a thread)."""
        for path in (self.shipped().get(name), self.saved_dir / world_filename(name)):
            if path is not None and path.is_file():
                try:
                    return self.load(path)
                except NPCForgeError as exc:
                    log.warning("cannot use %s for %r: %s", path.name, name, exc)
        return World(name=name, era=name, time_period="unspecified")

    def warm(self) -> None:
        """Read every shipped world now (start-up warm-up, in a thread)."""
        for path in self.shipped().values():
            try:
                self.load(path)
            except NPCForgeError as exc:
                log.warning("%s", exc)
