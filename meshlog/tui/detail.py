"""One request in full: every field, what its flags mean, the triage hint it matches, and every line
that shares its request id across the inputs (the ``trace`` view) with the time each hop took."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import polars as pl
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from meshlog.escape import safe
from meshlog.flags import describe
from meshlog.reports.hints import hints
from meshlog.reports.state import state_of
from meshlog.reports.trace import id_column, trace
from meshlog.tui.table import cell
from meshlog.tui.text import plain, short_name

MAX_HOPS = 50  # hops drawn; a reused id can be on thousands of lines (``meshlog trace`` prints them all)


HOP_COLUMNS = (  # (heading, how a hop shows it); the first ones stay when the screen is narrow
    ("+ms", lambda h: plain(cell(h.get("offset_ms")))),
    ("code", lambda h: plain(cell(h.get("response_code")))),
    ("flags", lambda h: plain(cell(h.get("response_flags")))),
    ("source:line", lambda h: plain(f"{Path(str(h.get('source'))).name}:{h.get('line_no')}")),
    ("upstream cluster", lambda h: short_name(cell(h.get("upstream_cluster")))),
    ("took ms", lambda h: plain(cell(h.get("duration")))),
    ("direction", lambda h: plain(cell(h.get("cluster_direction")))),
    ("pod", lambda h: plain(cell(h.get("pod")))),
)
NARROW = 100  # below this width the hop table keeps its first five columns


def request_details(row: dict[str, Any], requests: pl.DataFrame, *, width: int | None = None) -> Group:
    """The detail view as one renderable (pure: testable without a terminal); ``width`` of the screen."""
    parts: list[Any] = [
        Text.assemble(
            (f"{safe(row.get('response_code'))} {safe(row.get('response_flags') or '')}".strip() + "  ", "bold"),
            f"{safe(row.get('method'))} {safe(row.get('path'))} → ",
            short_name(row.get("upstream_cluster")),
            f"  ({safe(row.get('duration'))} ms)",
        )
    ]
    flags = [f for f in (row.get("response_flags") or "").split(",") if f]
    if flags:
        parts.append(Text("\nresponse flags", style="bold underline"))
        for code in flags:
            flag = describe(code)
            parts.append(Text.assemble((f"{flag.code} ", "bold"), f"{flag.name}: {flag.meaning}"))

    one = pl.DataFrame([row], schema=requests.schema) if requests.width else pl.DataFrame([row])
    matched = hints(state_of(one))
    parts.append(Text("\nwhat to check", style="bold underline"))
    parts.extend(Text.assemble((hint["title"], "bold"), f" — {hint['detail']}") for hint in matched)
    if not matched:
        parts.append(Text("no triage rule matches this request", style="green"))

    column = id_column(list(row))
    request_id = row.get(column) if column else None
    parts.append(Text(f"\nevery line with request id {safe(request_id)}", style="bold underline"))
    if column is None:
        parts.append(Text("this format has no request id (%REQ(X-REQUEST-ID)%)", style="dim"))
    elif request_id is None:
        parts.append(Text("this line has no request id (Envoy logged -: a TCP connection, or no header)", style="dim"))
    else:
        hops = trace(requests, request_id)
        shown = hops.head(MAX_HOPS).to_dicts()
        columns = [c for c in HOP_COLUMNS if c[0] != "pod" or any(h.get("pod") for h in shown)]
        if width is not None and width < NARROW:
            columns = columns[:5]
        table = Table(box=None, padding=(0, 1))
        for name, _ in columns:
            # long names wrap instead of losing their end (the line number, the service)
            table.add_column(name, justify="right" if name in ("+ms", "took ms", "code") else "left", overflow="fold")
        if hops.height > MAX_HOPS:  # one id on thousands of lines is a client reusing it, not one request
            parts.append(Text(f"{hops.height:,} lines share this id; the first {MAX_HOPS} in time order:", "yellow"))
        for hop in shown:
            table.add_row(*(show(hop) for _, show in columns))
        parts.append(table)
    fields = Table(show_header=False, box=None, padding=(0, 1))
    fields.add_column(style="bold cyan", no_wrap=True)
    fields.add_column(overflow="fold")
    for key, value in row.items():
        shown = value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else value
        fields.add_row(key, plain(shown))
    parts += [Text("\nevery field", style="bold underline"), fields]

    return Group(*parts)


class DetailScreen(ModalScreen[None]):
    """Esc or q goes back to the table."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss", "back")]
    DEFAULT_CSS = """
    DetailScreen { align: center middle; }
    DetailScreen VerticalScroll { width: 90%; height: 90%; border: thick $primary; background: $surface; padding: 0 1; }
    """

    def __init__(self, row: dict[str, Any], requests: pl.DataFrame) -> None:
        super().__init__()
        self.row = row
        self.requests = requests
        self.body: Group | None = None

    def compose(self) -> ComposeResult:
        self.body = request_details(self.row, self.requests, width=self.app.size.width)
        with VerticalScroll() as scroll:
            scroll.border_title = "request"
            yield Static(self.body, id="detail")
        yield Footer()
