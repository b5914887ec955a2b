"""Imported cards kept whole beside their NPCs, under ``<data_dir>/cards``.

Per NPC: ``<id>.json`` holds the card as it was read (the ``ccv3`` card and,
beside it, the ``chara`` one when a PNG had both) and the NPC as it was
mapped at import, so an export can tell what was edited since; ``<id>.png``
holds the original PNG, whose image and other chunks go back out unchanged;
``<id>.charx`` the original CHARX, whose assets go back out unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.models import NPC
from utils.jsonio import atomic_write_bytes, dumps, read_json_bytes

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")


@dataclass(frozen=True, slots=True)
class KeptCard:
    """A card as imported, and the NPC it was mapped to then."""

    card: dict[str, Any]
    imported: NPC
    v2: dict[str, Any] | None = None
    png: bytes | None = None
    archive: bytes | None = None  # the CHARX it came in

    def unedited(self, npc: NPC) -> bool:
        """True when the NPC is still what the card was mapped to."""
        skip = {"timing", "cached"}
        return npc.model_dump(exclude=skip) == self.imported.model_dump(exclude=skip)


class CardStore:
    """Kept cards by NPC id (files written atomically; a broken file reads as none)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, npc_id: str, suffix: str) -> Path:
        if not _SAFE_ID.fullmatch(npc_id):
            raise ValueError(f"not an NPC id: {npc_id!r}")
        return self.directory / f"{npc_id}{suffix}"

    def put(self, kept: KeptCard) -> None:
        npc_id = kept.imported.id
        record = {
            "card": kept.card,
            "v2": kept.v2,
            "imported": kept.imported.model_dump(mode="json"),
        }
        for suffix, data in ((".png", kept.png), (".charx", kept.archive)):
            path = self._path(npc_id, suffix)
            if data is not None:
                atomic_write_bytes(path, data)
            else:
                path.unlink(missing_ok=True)
        atomic_write_bytes(self._path(npc_id, ".json"), dumps(record))

    def _blob(self, npc_id: str, suffix: str) -> bytes | None:
        path = self._path(npc_id, suffix)
        return path.read_bytes() if path.exists() else None

    def get(self, npc_id: str) -> KeptCard | None:
        try:
            record = read_json_bytes(self._path(npc_id, ".json").read_bytes())
            return KeptCard(
                record["card"],
                NPC.model_validate(record["imported"]),
                record["v2"],
                self._blob(npc_id, ".png"),
                self._blob(npc_id, ".charx"),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None  # a damaged record: the NPC exports as one made here

    def delete(self, npc_id: str) -> None:
        for suffix in (".json", ".png", ".charx"):
            self._path(npc_id, suffix).unlink(missing_ok=True)
