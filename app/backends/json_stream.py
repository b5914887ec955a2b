"""Find where the first complete JSON object ends in streamed text.

Models often keep talking after the object (a closing code fence, an
explanation). Scanning the deltas as they arrive lets the backend stop
reading, and stop paying for tokens, the moment the object is complete.
"""

from __future__ import annotations


class JSONObjectScanner:
    """Feed text chunks; ``complete`` turns True when the first top-level
    ``{...}`` has closed. Braces inside strings and escapes are ignored."""

    __slots__ = ("_buffer", "_depth", "_end", "_escaped", "_in_string", "_length", "_start")

    def __init__(self) -> None:
        self._buffer: list[str] = []
        self._length = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._start: int | None = None
        self._end: int | None = None

    @property
    def complete(self) -> bool:
        return self._end is not None

    @property
    def text(self) -> str:
        """Everything fed so far."""
        return "".join(self._buffer)

    def object_text(self) -> str | None:
        """The first complete object, or None while it is still open."""
        if self._start is None or self._end is None:
            return None
        return self.text[self._start : self._end]

    def feed(self, chunk: str) -> bool:
        """Scan one chunk; returns ``complete``."""
        if self._end is not None:
            return True
        offset = self._length
        self._buffer.append(chunk)
        self._length += len(chunk)
        for index, char in enumerate(chunk):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
                continue
            if self._start is None:
                if char == "{":
                    self._start = offset + index
                    self._depth = 1
                continue
            if char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._end = offset + index + 1
                    return True
        return False
