"""Checks for text that comes in from forms, flags and files."""

from __future__ import annotations

import re

from app.errors import InputError

# Unpaired UTF-16 surrogates: Python strings can hold them, but no file, JSON
# encoder or database can, so they must stop at the edge with a clear message.
_SURROGATE = re.compile("[\ud800-\udfff]")


def checked_text(text: str, what: str) -> str:
    """``text`` unchanged, or InputError naming the field and what to do."""
    found = _SURROGATE.search(text)
    if found is not None:
        raise InputError(
            f"{what} holds a character that is not valid text (U+{ord(found.group()):04X}, "
            f"at position {found.start() + 1}); retype it or paste it again from its source."
        )
    return text
