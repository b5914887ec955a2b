"""CHARX: a Character Card V3 as a zip (``card.json`` at the root, its assets
beside it, reached by ``embeded://path`` URIs; the spec spells it so).

Reading refuses what would hurt: a broken or encrypted zip, a member larger
than it claims or than a card can be, too many members (a zip bomb is refused
from its directory, before anything is inflated). Writing either builds a
new archive (``card.json`` and the portrait at the spec's icon path) or
replaces only ``card.json`` inside the one imported, so every other asset of
someone else's card goes back out byte for byte.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

from app.errors import InputError
from utils.jsonio import dumps

CARD_JSON = "card.json"
EMBEDDED = "embeded://"  # sic: the V3 spec's spelling
ICON_PATH = "assets/icon/images/main.png"
MAX_MEMBERS = 1000
MAX_MEMBER_BYTES = 20 * 1024 * 1024
MAX_TOTAL_BYTES = 200 * 1024 * 1024
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


def is_zip(data: bytes) -> bool:
    return data.startswith(ZIP_SIGNATURES)


def open_zip(data: bytes, filename: str) -> zipfile.ZipFile:
    """The archive, its directory checked: readable, not encrypted, not a bomb."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise InputError(f"{filename}: a damaged zip ({exc}); export it again.") from None
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise InputError(f"{filename}: {len(members):,} files in the zip; at most {MAX_MEMBERS:,}.")
    if any(info.flag_bits & 0x1 for info in members):
        raise InputError(f"{filename}: an encrypted zip; export it again without a password.")
    total = sum(info.file_size for info in members)
    if total > MAX_TOTAL_BYTES:
        raise InputError(
            f"{filename}: {total:,} bytes unpacked; at most {MAX_TOTAL_BYTES:,} are read."
        )
    return archive


def read_member(archive: zipfile.ZipFile, name: str, filename: str) -> bytes:
    """One member's bytes, never more than a card may be (whatever the directory says)."""
    info = archive.getinfo(name)
    if info.file_size > MAX_MEMBER_BYTES:
        raise InputError(
            f"{filename}: {name} is {info.file_size:,} bytes; at most {MAX_MEMBER_BYTES:,}."
        )
    try:
        with archive.open(info) as member:
            data = member.read(MAX_MEMBER_BYTES + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"{filename}: {name} cannot be read ({exc}); export it again.") from None
    if len(data) > MAX_MEMBER_BYTES:
        raise InputError(f"{filename}: {name} unpacks larger than it claims; refused.")
    return data


def is_charx(archive: zipfile.ZipFile) -> bool:
    return CARD_JSON in archive.namelist()


def embedded_path(uri: object) -> str | None:
    """``assets/x.png`` for ``embeded://assets/x.png``; None for any other URI."""
    text = str(uri or "")
    return text.removeprefix(EMBEDDED) if text.startswith(EMBEDDED) else None


def _icons(card: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The icon assets, the main one first (the spec: ``name`` "main" is the main icon)."""
    assets = [a for a in card.get("data", {}).get("assets") or [] if isinstance(a, dict)]
    icons = [a for a in assets if a.get("type") == "icon"]
    yield from sorted(icons, key=lambda a: a.get("name") != "main")


def main_icon(archive: zipfile.ZipFile, card: Mapping[str, Any], filename: str) -> bytes | None:
    """The PNG of the card's main icon when the archive holds it."""
    names = set(archive.namelist())
    for icon in _icons(card):
        path = embedded_path(icon.get("uri"))
        if path in names:
            data = read_member(archive, path, filename)
            if data.startswith(b"\x89PNG\r\n\x1a\n"):
                return data
    return None


def missing_assets(archive: zipfile.ZipFile, card: Mapping[str, Any], filename: str) -> list[str]:
    """Notes for ``embeded://`` assets the archive does not hold."""
    names = set(archive.namelist())
    notes = []
    for asset in card.get("data", {}).get("assets") or []:
        path = embedded_path(asset.get("uri")) if isinstance(asset, dict) else None
        if path is not None and path not in names:
            notes.append(
                f"{filename}: asset {asset.get('name', '?')!r} ({path}) is not in the zip."
            )
    return notes


def with_embedded_icon(card: dict[str, Any]) -> dict[str, Any]:
    """The V3 card with its main icon at the spec's path in the archive."""
    data = card["data"]
    assets = [a for a in data.get("assets") or [] if isinstance(a, dict)]
    kept = [a for a in assets if not (a.get("type") == "icon" and a.get("name") == "main")]
    icon = {"type": "icon", "uri": EMBEDDED + ICON_PATH, "name": "main", "ext": "png"}
    return {**card, "data": {**data, "assets": [icon, *kept]}}


def new_charx(card: dict[str, Any], icon: bytes) -> bytes:
    """A CHARX of ``card`` with ``icon`` as its main icon."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(CARD_JSON, dumps(with_embedded_icon(card), pretty=True))
        archive.writestr(ICON_PATH, icon, compress_type=zipfile.ZIP_STORED)  # PNG is packed
    return buffer.getvalue()


def replaced_card(original: bytes, card: dict[str, Any]) -> bytes:
    """The imported archive with ``card.json`` replaced, every other member as it was."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(original)) as source,
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as target,
    ):
        target.writestr(CARD_JSON, dumps(card, pretty=True))
        for info in source.infolist():
            if info.filename != CARD_JSON:
                target.writestr(info, source.read(info))
    return buffer.getvalue()
