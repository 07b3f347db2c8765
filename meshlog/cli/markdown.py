"""Markdown pieces every report shares: a cell escaped for a table, and a table."""

from __future__ import annotations

from typing import Any

from meshlog.escape import safe


def cell(value: Any) -> str:
    """A logged value as a table cell: control characters escaped, ``|`` kept from ending the cell."""
    return safe(value).replace("|", "\\|")


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table, then a blank line."""
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows),
        "",
    ]
