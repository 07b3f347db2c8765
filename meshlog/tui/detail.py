"""One request in full: every field, what its flags mean, the triage hint it matches, and every line
that shares its request id across the inputs (the ``trace`` view) with the time each hop took."""

from __future__ import annotations

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
from meshlog.reports.trace import id_column, trace
from meshlog.tui.table import cell
from meshlog.tui.text import plain, short_name

MAX_HOPS = 50  # hops drawn; a reused id can be on thousands of lines (``meshlog trace`` prints them all)


def request_details(row: dict[str, Any], requests: pl.DataFrame) -> Group:
    """The detail view as one renderable (pure: testable without a terminal)."""
    parts: list[Any] = [
        Text.assemble(
            (f"{safe(row.get('response_code'))} {safe(row.get('response_flags') or '')}".strip() + "  ", "bold"),
            f"{safe(row.get('method'))} {safe(row.get('path'))} → {safe(row.get('upstream_cluster'))}",
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
    matched = hints(one)
    parts.append(Text("\nwhat to check", style="bold underline"))
    for hint in matched:
        parts.append(Text.assemble((hint["title"], "bold"), f" — {hint['detail']}"))
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
        table = Table(box=None, padding=(0, 1))
        for name in ("+ms", "took ms", "code", "flags", "direction", "source:line", "pod", "upstream cluster"):
            # long names wrap instead of losing their end (the line number, the service)
            table.add_column(name, justify="right" if name in ("+ms", "took ms", "code") else "left", overflow="fold")
        if hops.height > MAX_HOPS:  # one id on thousands of lines is a client reusing it, not one request
            parts.append(Text(f"{hops.height:,} lines share this id; the first {MAX_HOPS} in time order:", "yellow"))
        for hop in hops.head(MAX_HOPS).to_dicts():
            table.add_row(
                *(plain(cell(hop.get(c))) for c in ("offset_ms", "duration", "response_code", "response_flags",
                                                    "cluster_direction")),
                plain(f"{safe(hop.get('source'))}:{hop.get('line_no')}"), plain(cell(hop.get("pod"))),
                short_name(cell(hop.get("upstream_cluster"))),
            )  # fmt: skip
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
        self.body = request_details(row, requests)

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "request"
            yield Static(self.body, id="detail")
        yield Footer()
