"""Character Cards in: JSON, PNG or CHARX, V1, V2 or V3, as real files have them.

``read_card`` finds the card (a PNG's ``ccv3`` chunk, falling back to ``chara``
when ``ccv3`` is broken; keywords in any case; a CHARX's ``card.json`` and
its main icon), refuses what is not a card
with a message naming the file, and mends what tools commonly get wrong
(a string where a list belongs, a null string, a lorebook without its
``extensions``), noting each repair. The card is otherwise kept exactly.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import InputError
from app.services.card_mapping import text_field
from app.services.card_schemas import (
    SPEC_V2,
    SPEC_V3,
    V2_DATA_FIELDS,
    V3_DATA_FIELDS,
    card_errors,
)
from app.services.charx import (
    CARD_JSON,
    EMBEDDED,
    is_charx,
    is_zip,
    main_icon,
    missing_assets,
    open_zip,
    read_member,
)
from app.services.png_chunks import PNG_SIGNATURE, text_chunks

MAX_CARD_BYTES = 20 * 1024 * 1024
CARD_SUFFIXES = (".json", ".png", ".charx")
MAX_DEPTH = 64
V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
# List fields and how a string in their place is read: a list of tags is often
# written "fantasy, elf"; one greeting is one greeting, commas and all.
COMMA_LISTS = {"tags", "source", "keys"}
WHOLE_LISTS = {"alternate_greetings", "group_only_greetings"}
SET_ASIDE = "npc_forge_set_aside"
MAX_SET_ASIDE = 200
KNOWN_ASSET_URIS = ("ccdefault:", "data:", "https://", "http://")
NOT_A_CARD = (
    "{filename}: neither a PNG card, a CHARX nor card JSON. Upload a Character Card V2/V3 "
    "(.png, .charx or .json), or a zip of them."
)


@dataclass(frozen=True, slots=True)
class ReadCard:
    """A card from a file: the one to use, the V2 one beside it, the PNG (a CHARX's
    main icon), the CHARX itself, notes."""

    card: dict[str, Any]
    v2: dict[str, Any] | None = None
    png: bytes | None = None
    notes: list[str] = field(default_factory=list)
    archive: bytes | None = None


def _depth_ok(value: Any) -> bool:
    """True when ``value`` nests at most MAX_DEPTH levels (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return True


def _parse_json(text: bytes | str, filename: str, what: str) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{filename}: {what} is not valid JSON ({exc}).") from None
    if value is None or not _depth_ok(value):
        raise InputError(
            f"{filename}: {what} nests more than {MAX_DEPTH} levels deep; no card does. "
            "Check the file, or export it again from the tool that made it."
        )
    return value


def _chunk_card(text: str, filename: str, keyword: str) -> Any:
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{filename}: the '{keyword}' chunk is not base64-encoded JSON.") from None
    return _parse_json(raw.decode("utf-8", "replace"), filename, f"the '{keyword}' chunk")


def _png_cards(data: bytes, filename: str, notes: list[str]) -> tuple[Any, Any]:
    """(card to use, the chara card beside a ccv3 one or None)."""
    chunks: dict[str, str] = {}
    for keyword, text in text_chunks(data, filename):
        chunks.setdefault(keyword.lower(), text)  # the first of each, in any case
    if "chara" not in chunks and "ccv3" not in chunks:
        raise InputError(
            f"{filename}: no character card found in this PNG (no 'chara' or 'ccv3' text "
            "chunk). Export it from SillyTavern as a PNG card, or upload the card's .json."
        )
    chara = chunks.get("chara")
    if "ccv3" in chunks:
        try:
            v3 = _checked_card(_chunk_card(chunks["ccv3"], filename, "ccv3"), filename, notes)
            beside = None
            if chara is not None:
                try:
                    beside = _checked_card(_chunk_card(chara, filename, "chara"), filename, [])
                except InputError:
                    beside = None  # the V3 card is the card; a broken backfill is dropped
            return v3, beside
        except InputError as exc:
            if chara is None:
                raise
            notes.append(f"{exc} Read the V2 'chara' chunk instead.")
    return _checked_card(_chunk_card(str(chara), filename, "chara"), filename, notes), None


def _as_list(key: str, value: Any, notes: list[str], filename: str) -> list[str]:
    if isinstance(value, list):
        return [text_field(item) for item in value if item is not None]
    if value is None:
        return []
    if isinstance(value, str):
        if key in COMMA_LISTS:
            items = [item.strip() for item in re.split(r"[,\n]", value) if item.strip()]
            notes.append(f"{filename}: {key} was one string; read as {len(items)} items.")
            return items
        notes.append(f"{filename}: {key} was one string; read as one item.")
        return [value] if value.strip() else []
    notes.append(f"{filename}: {key} was {type(value).__name__}; read as one item.")
    return [text_field(value)]


def _mend_book(book: Any, filename: str, notes: list[str], *, v3: bool) -> dict[str, Any] | None:
    if not isinstance(book, dict):
        notes.append(f"{filename}: character_book was not an object; left out.")
        return None
    mended = {**book, "extensions": book.get("extensions") or {}}
    entries = []
    for entry in book.get("entries") or []:
        if not isinstance(entry, dict):
            continue
        fixed = {
            **entry,
            "keys": _as_list("keys", entry.get("keys"), [], filename),
            "content": text_field(entry.get("content")),
            "extensions": entry.get("extensions") or {},
            "enabled": bool(entry.get("enabled", True)),
            "insertion_order": entry.get("insertion_order", 0),
        }
        if v3:
            fixed.setdefault("use_regex", False)
        if "secondary_keys" in entry:
            fixed["secondary_keys"] = _as_list("keys", entry["secondary_keys"], [], filename)
        entries.append(fixed)
    mended["entries"] = entries
    if mended != book:
        notes.append(f"{filename}: the lorebook lacked fields the spec requires; added them.")
    return mended


def _mend(card: dict[str, Any], filename: str, notes: list[str]) -> dict[str, Any]:
    """The card with spec fields of the wrong type or missing mended, the rest as it was."""
    data = dict(card["data"])
    fields = V3_DATA_FIELDS if card["spec"] == SPEC_V3 else V2_DATA_FIELDS
    for key, schema in fields.items():
        value = data.get(key)
        if schema.get("type") == "array":
            data[key] = _as_list(key, value, notes, filename)
        elif schema.get("type") == "object":
            if not isinstance(value, dict):
                data[key] = {} if value is None else {"npc_forge_original": value}
        elif not isinstance(value, str):
            data[key] = text_field(value)
    if card["spec"] == SPEC_V3:
        for key in ("source",):
            if key in data:
                data[key] = _as_list(key, data[key], notes, filename)
    if "character_book" in data:
        book = _mend_book(data["character_book"], filename, notes, v3=card["spec"] == SPEC_V3)
        if book is None:
            del data["character_book"]
        else:
            data["character_book"] = book
    mended = {**card, "spec_version": "3.0" if card["spec"] == SPEC_V3 else "2.0", "data": data}
    return _set_aside(mended, filename, notes)


def _set_aside(card: dict[str, Any], filename: str, notes: list[str]) -> dict[str, Any]:
    """Values the spec cannot take where they are (a V3 string lorebook id in a V2
    card, a date written as text) moved, whole, into ``extensions.npc_forge_set_aside``
    under their path, so the card is valid and nothing is destroyed."""
    for _attempt in range(MAX_SET_ASIDE):
        errors = [path for path, _message in card_errors(card) if len(path) >= 2]
        if not errors:
            break
        path = errors[0]
        parent: Any = card
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        in_list = isinstance(parent, list) and isinstance(key, int) and key < len(parent)
        if not (in_list or (isinstance(parent, dict) and key in parent)):
            break  # nothing to move (a missing field): left as it is
        value = parent.pop(key)
        aside = card["data"]["extensions"].setdefault(SET_ASIDE, {})
        aside[".".join(map(str, path[1:]))] = value
        notes.append(
            f"{filename}: {'.'.join(map(str, path))} is not what the spec allows there; "
            f"kept in extensions.{SET_ASIDE}."
        )
    return card


def _checked_card(card: Any, filename: str, notes: list[str]) -> dict[str, Any]:
    if isinstance(card, dict) and "spec" not in card and isinstance(card.get("name"), str):
        notes.append(f"{filename}: a V1 card; read as V2.")
        card = {
            "spec": SPEC_V2,
            "spec_version": "2.0",
            "data": {key: card.get(key, "") for key in V1_FIELDS},
        }
    if not isinstance(card, dict) or card.get("spec") not in (SPEC_V2, SPEC_V3):
        raise InputError(
            f'{filename}: not a Character Card V2/V3 (expected "spec": "{SPEC_V2}" or "{SPEC_V3}").'
        )
    inner = card.get("data")
    if not isinstance(inner, dict) or not text_field(inner.get("name")).strip():
        raise InputError(f"{filename}: the card has no character name (data.name).")
    version = str(card.get("spec_version", ""))
    try:
        newer = float(version) > (3.0 if card["spec"] == SPEC_V3 else 2.0)
    except ValueError:
        newer = False
    if newer:
        notes.append(
            f"{filename}: made for spec version {version}; read as the version known here."
        )
    return _mend(card, filename, notes)


def asset_notes(
    card: Mapping[str, Any], filename: str, *, png: bool, charx: bool = False
) -> list[str]:
    """The V3 assets this import cannot carry (the spec asks to say which)."""
    notes = []
    for asset in card.get("data", {}).get("assets") or []:
        uri = str(asset.get("uri", "")) if isinstance(asset, dict) else ""
        carried = (png and uri.startswith("__asset:")) or (charx and uri.startswith(EMBEDDED))
        if uri.startswith(KNOWN_ASSET_URIS) or carried:
            continue
        name = asset.get("name", "?") if isinstance(asset, dict) else "?"
        notes.append(
            f"{filename}: asset {name!r} ({uri[:60] or 'no uri'}) lives outside this file "
            "(a .charx holds embeded:// assets); its entry is kept, its data was not imported."
        )
    return notes


def _charx_card(data: bytes, filename: str) -> tuple[zipfile.ZipFile, Any]:
    """A CHARX's archive and its ``card.json`` as parsed, not yet checked."""
    archive = open_zip(data, filename)
    if not is_charx(archive):
        raise InputError(f"{filename}: a zip without {CARD_JSON}, so not a CHARX card.")
    return archive, _parse_json(read_member(archive, CARD_JSON, filename), filename, CARD_JSON)


def read_card(data: bytes, filename: str = "card") -> ReadCard:
    """The card in JSON or PNG bytes, mended where tools commonly go wrong."""
    if len(data) > MAX_CARD_BYTES:
        raise InputError(f"{filename}: {len(data):,} bytes; cards are at most {MAX_CARD_BYTES:,}.")
    notes: list[str] = []
    if data.startswith(PNG_SIGNATURE):
        card, v2 = _png_cards(data, filename, notes)
        png: bytes | None = data
    elif is_zip(data):
        archive, raw = _charx_card(data, filename)
        card = _checked_card(raw, filename, notes)
        notes += missing_assets(archive, card, filename)
        icon = main_icon(archive, card, filename)
        notes += asset_notes(card, filename, png=False, charx=True)
        return ReadCard(card, None, icon, notes, archive=data)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(NOT_A_CARD.format(filename=filename)) from None
        if not text.lstrip().startswith(("{", "[")):
            raise InputError(NOT_A_CARD.format(filename=filename))
        card = _checked_card(_parse_json(text, filename, "the file"), filename, notes)
        v2, png = None, None
    notes += asset_notes(card, filename, png=png is not None)
    return ReadCard(card, v2, png, notes)


def raw_card(data: bytes, filename: str = "card") -> Any:
    """The card exactly as the file holds it (a PNG's ``ccv3`` chunk, else its
    ``chara``), not mended: what a strict validator sees."""
    if is_zip(data):
        return _charx_card(data, filename)[1]
    if not data.startswith(PNG_SIGNATURE):
        return _parse_json(data.decode("utf-8-sig", "replace"), filename, "the file")
    chunks: dict[str, str] = {}
    for keyword, text in text_chunks(data, filename):
        chunks.setdefault(keyword.lower(), text)
    for keyword in ("ccv3", "chara"):
        if keyword in chunks:
            return _chunk_card(chunks[keyword], filename, keyword)
    raise InputError(f"{filename}: no character card found in this PNG.")


def _zipped_cards(data: bytes, filename: str) -> list[tuple[str, bytes]]:
    """The card files inside a zip of cards (a world exported as cards), each
    named ``world.zip/Maud.png``; a CHARX is one card, given back whole."""
    archive = open_zip(data, filename)
    if is_charx(archive):
        return [(filename, data)]
    names = [
        info.filename
        for info in archive.infolist()
        if not info.is_dir()
        and info.filename.lower().endswith(CARD_SUFFIXES)
        and not info.filename.startswith("__MACOSX/")  # macOS's resource forks
    ]
    if not names:
        raise InputError(
            f"{filename}: a zip with no card in it (no card.json, .png, .json or .charx)."
        )
    return [(f"{filename}/{name}", read_member(archive, name, filename)) for name in names]


def card_files(data: bytes, filename: str) -> list[tuple[str, bytes]]:
    """One (name, bytes) per card in a file: a zip of cards gives each of its
    files, and a JSON list of cards (what NPC Forge exported for a world before it
    wrote zips) one per item, ``name #2``."""
    if is_zip(data):
        return _zipped_cards(data, filename)
    if data.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] != b"[" or len(data) > MAX_CARD_BYTES:
        return [(filename, data)]
    items = _parse_json(data.decode("utf-8-sig", "replace"), filename, "the file")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return [(filename, data)]
    return [(f"{filename} #{n}", json.dumps(item).encode()) for n, item in enumerate(items, 1)]
