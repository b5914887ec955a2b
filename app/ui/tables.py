"""What an editable table hands a handler, as plain rows."""

from __future__ import annotations

from typing import Any

from app.errors import InputError


def rows_of(table: Any) -> list[list[Any]]:
    """Rows from what a Dataframe hands over (a pandas frame, or lists via the API)."""
    if isinstance(table, dict):  # the API's {"headers", "data"} shape (a dict has .values too)
        return [list(row) for row in table.get("data") or []]
    if hasattr(table, "values"):
        return [list(row) for row in table.values.tolist()]
    if table is None:
        return []
    if not isinstance(table, (list, tuple)) or not all(
        isinstance(row, (list, tuple)) for row in table
    ):
        raise InputError("A table must be a list of rows, each a list of cells.")
    return [list(row) for row in table]
