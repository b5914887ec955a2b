"""Files the UI offers for download, each in a folder of its own."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from utils.jsonio import atomic_write_bytes


def _write(export_dir: Path, prefix: str, filename: str, data: bytes) -> str:
    export_dir.mkdir(parents=True, exist_ok=True)
    # A folder per download: two users asking for the same file never share one.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=export_dir)) / filename
    atomic_write_bytes(path, data)
    return str(path)


async def offer(export_dir: Path, prefix: str, filename: str, data: bytes) -> str:
    """Write ``data`` as ``filename`` for download (off the event loop); its path."""
    return await asyncio.to_thread(_write, export_dir, prefix, filename, data)
