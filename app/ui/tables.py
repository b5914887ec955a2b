"""What an editable table hands a handler, as plain rows."""

from __future__ import annotations

from typing import Any


def rows_of(table: Any) -> list[list[Any]]:
    """Rows from what a Dataframe hands over (a pandas frame, or lists via the API)."""
    if isinstance(table, dict):  # the API's {"headers", "data"} shape (a dict has .values too)
        return [list(row) for row in table.get("data") or []]
    if hasattr(table, "values"):
        return [list(row) for row in table.values.tolist()]
    return [list(row) for row in table or []]
