"""PNG text chunks read and written without decoding the image.

Card tools keep the card in ``tEXt`` chunks (``chara``, ``ccv3``, and V3's
``chara-ext-asset_:*``). Working on the chunks, not the pixels, lets an
imported card's art go back out byte for byte, and a huge image costs no
decoding. Keywords compare case-insensitively, as SillyTavern's reader does.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping

from app.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CARD_KEYWORDS = frozenset({"chara", "ccv3"})
# A zTXt/iTXt chunk inflated past this is refused (a card is at most a few MB).
MAX_INFLATED = 32 * 1024 * 1024


def _chunks(data: bytes, filename: str) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(type, body, raw chunk bytes) of each chunk up to IEND."""
    if not data.startswith(PNG_SIGNATURE):
        raise InputError(f"{filename}: not a PNG file.")
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            raise InputError(f"{filename}: the PNG is cut short (a {kind!r} chunk is incomplete).")
        yield kind, data[position + 8 : position + 8 + length], data[position:end]
        position = end
        if kind == b"IEND":
            return
    raise InputError(f"{filename}: the PNG is cut short (no IEND chunk).")


def _inflate(body: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(body, MAX_INFLATED)
    if inflater.unconsumed_tail:
        raise ValueError("compressed text too large")
    return out


def _text(kind: bytes, body: bytes) -> tuple[str, str] | None:
    """(keyword, text) of a text chunk; None for other chunks and broken ones."""
    try:
        if kind == b"tEXt":
            keyword, _, text = body.partition(b"\0")
            return keyword.decode("latin-1"), text.decode("latin-1")
        if kind == b"zTXt":
            keyword, _, rest = body.partition(b"\0")
            return keyword.decode("latin-1"), _inflate(rest[1:]).decode("latin-1")
        if kind == b"iTXt":
            keyword, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _language, _, rest = rest.partition(b"\0")
            _translated, _, text = rest.partition(b"\0")
            return keyword.decode("latin-1"), (_inflate(text) if compressed else text).decode()
    except (ValueError, IndexError, zlib.error):
        return None
    return None


def text_chunks(data: bytes, filename: str = "card.png") -> list[tuple[str, str]]:
    """Every text chunk as (keyword, text), in file order."""
    found = []
    for kind, body, _raw in _chunks(data, filename):
        text = _text(kind, body)
        if text is not None:
            found.append(text)
    return found


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_text_chunks(png: bytes, texts: Mapping[str, str], filename: str = "card.png") -> bytes:
    """``png`` with its card chunks (any case) replaced by ``texts`` as tEXt chunks,
    placed before IEND; every other chunk (the art, asset chunks) is kept as it was."""
    replaced = {keyword.lower() for keyword in texts} | CARD_KEYWORDS
    out = [PNG_SIGNATURE]
    for kind, body, raw in _chunks(png, filename):
        if kind == b"IEND":
            out += [_chunk(b"tEXt", f"{k}\0{v}".encode("latin-1")) for k, v in texts.items()]
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            text = _text(kind, body)
            if text is not None and text[0].lower() in replaced:
                continue
        out.append(raw)
    return b"".join(out)
