"""JSON reading and writing with orjson."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import orjson


def read_json_bytes(data: bytes | str) -> Any:
    """Parse JSON text; raises ``orjson.JSONDecodeError`` (a ValueError)."""
    return orjson.loads(data)


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    """Serialise compactly, or indented for people who read the files."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if pretty else 0)
    return orjson.dumps(obj, option=option)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write a file so readers see the old or the new content, never a part.

    The temp file lives in the same directory so ``os.replace`` is a rename on
    one filesystem; fsync before the rename so a crash cannot leave it empty.
    ``durable=False`` skips the fsync, for files that can be rebuilt from
    others (a power cut may then leave the old content, or an empty file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
