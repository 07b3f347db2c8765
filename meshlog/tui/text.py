"""Logged values as widget text: escaped (``meshlog.escape.safe``) and never read as markup.

A ``str`` handed to a Textual ``DataTable`` cell or a ``Static`` is parsed as console markup, so a
path holding ``[link=…]`` or ``[/]`` would become a hyperlink or an error. A ``rich.text.Text`` is
shown as it is.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from meshlog.escape import safe
from meshlog.names import IN_MESH, short

__all__ = ["IN_MESH", "plain", "short_name", "width"]



def plain(value: Any, style: str = "") -> Text:
    """A logged value as literal text (``None`` as ``-``)."""
    return Text(safe(value), style=style)


def width(cell: Any) -> int:
    """Columns a cell takes on one line (the widest line of a multi-line text)."""
    if isinstance(cell, Text):
        return max((line.cell_len for line in cell.split()), default=0)
    return len(str(cell))


def short_name(value: Any) -> Text:
    """A cluster or service name without the ``.svc.cluster.local`` every in-mesh name ends in (a port
    after it stays): 18 columns back, nothing lost."""
    return plain(short(safe(value)))
