"""Worlds: the shipped world files, uploaded ones, and free-text settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from app.errors import InputError, WorldFileError
from app.models import World
from utils.cached_json import BrokenJSONError, JSONFileCache, shared_cache
from utils.jsonio import read_json_bytes

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


def load_world_file(path: Path, files: JSONFileCache | None = None) -> World:
    """Read a world file through the mtime-keyed JSON cache.

    A broken edit of a file that loaded before keeps its last good version
    (the cache logs a warning); a file that never parsed is an error.
    """
    try:
        size = path.stat().st_size
        if size > MAX_WORLD_FILE_BYTES:
            raise _too_big(size, path.name)
        raw = (files if files is not None else shared_cache()).read(path)
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
    text = text.strip()
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


def resolve_world(
    *,
    world_path: Path | None,
    setting: str | None,
    worlds_dir: Path,
    max_setting_chars: int,
) -> World:
    """The world for a request: a file (path or shipped name), free text, or both."""
    setting = setting or ""
    if world_path is None:
        return world_from_setting(setting, max_chars=max_setting_chars)
    if not world_path.exists():
        shipped = list_world_files(worlds_dir)
        by_stem = {path.stem: path for path in shipped.values()}
        match = shipped.get(str(world_path)) or by_stem.get(str(world_path))
        if match is None:
            names = ", ".join(sorted(by_stem)) or "none"
            raise WorldFileError(str(world_path), f"does not exist. Shipped worlds: {names}.")
        world_path = match
    world = load_world_file(world_path)
    return with_setting_notes(world, setting, max_chars=max_setting_chars)
