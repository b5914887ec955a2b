"""Files the UI offers for download, each in a folder of its own.

Gradio copies a file it serves into its own cache (cleaned by the Blocks'
``delete_cache``), so ours need not outlive that: each new download removes
the download folders older than ``keep_s``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from pathlib import Path

from config import setting_default
from utils.jsonio import atomic_write_bytes

log = logging.getLogger(__name__)


def _prune(export_dir: Path, keep_s: float, now: float) -> int:
    removed = 0
    for folder in export_dir.iterdir():
        try:
            if folder.is_dir() and now - folder.stat().st_mtime > keep_s:
                shutil.rmtree(folder)
                removed += 1
        except OSError as exc:  # another process removed it first, or it is in use
            log.debug("downloads: cannot remove %s (%s)", folder, exc)
    return removed


def _write(export_dir: Path, prefix: str, filename: str, data: bytes, keep_s: float) -> str:
    export_dir.mkdir(parents=True, exist_ok=True)
    _prune(export_dir, keep_s, time.time())
    # A folder per download: two users asking for the same file never share one.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=export_dir)) / filename
    atomic_write_bytes(path, data)
    return str(path)


async def offer(
    export_dir: Path,
    prefix: str,
    filename: str,
    data: bytes,
    keep_s: float = setting_default("download_keep_s"),
) -> str:
    """Write ``data`` as ``filename`` for download (off the event loop); its path."""
    return await asyncio.to_thread(_write, export_dir, prefix, filename, data, keep_s)
