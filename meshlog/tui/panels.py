"""The dashboard: the ``summarize`` report as panels. Selecting a row filters the request table.

Panels are filled from ``summary_dict`` (the same function the CLI prints), so the TUI and
``meshlog summarize`` never disagree. What to check comes first; long texts (a flag's meaning,
what to look at) wrap inside their panel instead of running off its edge.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Grid, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from meshlog.figures import connections_headline as headline
from meshlog.figures import count, percent, span, sparkline, timeline_lines
from meshlog.filters import flag_filter, quote
from meshlog.reports.contract import Hint, Retries, Summary
from meshlog.reports.latency import HISTOGRAM_BOUNDS
from meshlog.tui.text import short_name, width

_SEVERITY = {"critical": ("●", "bold red"), "warning": ("●", "yellow"), "info": ("●", "cyan")}
NARROW = 120  # below this many columns the panels stack and the dashboard scrolls


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _share(count: int, total: int) -> str:
    return percent(count / max(total, 1))


class Panel(DataTable[Any]):
    """A small table whose rows carry the filter they stand for.

    ``wrap`` names the column that takes the width the others leave and wraps its text (rows grow
    to fit); the panel refills itself when its size changes.
    """

    DEFAULT_CSS = "Panel { height: 1fr; scrollbar-size-vertical: 1; }"

    def __init__(self, title: str, columns: list[str], *, wrap: int | None = None, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.border_title = title
        self._headers = columns
        self._wrap = wrap
        self._rows: list[tuple[str, list[Any]]] = []
        self._filled_width = -1
        self.filters: dict[str, str] = {}

    def on_mount(self) -> None:
        self.add_columns(*self._headers)

    def on_click(self, event: Any) -> None:
        """One click on a row filters by it (a DataTable alone wants a second click to select). The row
        is the one the click names, whether or not DataTable's own handler has moved the cursor yet."""
        row = event.style.meta.get("row", -1)
        if self.row_count and 0 <= row < self.row_count:  # a row, not the heading or border
            self.move_cursor(row=row)
            self.call_later(self.action_select_cursor)

    def on_resize(self, event: events.Resize) -> None:
        if self._wrap is not None and self._rows and self.size.width != self._filled_width:
            self.fill(self._rows)

    def fill(self, rows: list[tuple[str, list[Any]]]) -> None:
        """``rows``: (filter expression, cells); keeps the cursor where it was when it can."""
        cursor = self.cursor_row
        self._rows = rows
        self.filters = {}
        if self._wrap is None:
            self.clear()
        else:
            self.clear(columns=True)
            widths = self._wrap_widths(rows)
            for header, width in zip(self._headers, widths, strict=True):
                self.add_column(header, width=width)
            self._filled_width = self.size.width
        for i, (where, cells) in enumerate(rows):
            key = f"r{i}"
            self.filters[key] = where
            self.add_row(*cells, key=key, height=None if self._wrap is not None else 1)
        if rows:
            self.move_cursor(row=min(cursor, len(rows) - 1))

    def _wrap_widths(self, rows: list[tuple[str, list[Any]]]) -> list[int | None]:
        """Every column as wide as its widest cell, but the wrapping one: what is left of the panel."""
        assert self._wrap is not None
        columns = list(zip(*(cells for _, cells in rows), strict=True)) or [()] * len(self._headers)
        fixed = [max([len(h), *(width(c) for c in col)]) for h, col in zip(self._headers, columns, strict=True)]
        pad = 2 * self.cell_padding
        inner = self.size.width - 1 if self.size.width else 78  # room for the scrollbar when rows overflow
        rest = inner - sum(w + pad for i, w in enumerate(fixed) if i != self._wrap) - pad
        widths: list[int | None] = [w for w in fixed]
        widths[self._wrap] = max(rest, 16)
        return widths


class Dashboard(VerticalScroll):
    """What to check, flags, latency per cluster, status codes with retries, and requests/errors over time."""

    class FilterRequested(Message):
        def __init__(self, where: str) -> None:
            super().__init__()
            self.where = where

    DEFAULT_CSS = """
    Dashboard #panels { grid-size: 2 2; grid-columns: 3fr 2fr; grid-rows: 1fr 1fr; height: 1fr; min-height: 20; }
    Dashboard.narrow #panels { grid-size: 1; grid-rows: 14; height: auto; }
    Dashboard Panel, Dashboard #codes-and-retries { border: round $primary; }
    Dashboard #codes-and-retries Panel { border: none; height: 1fr; }
    Dashboard #retries { height: auto; padding: 0 1; }
    Dashboard #over-time { height: auto; border: round $primary; padding: 0 1; }
    Dashboard #l4 { height: auto; border: round $primary; padding: 0 1; display: none; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last: tuple[str, Any] = ("", None)
        self._last_at = 0.0

    def compose(self) -> ComposeResult:
        yield Static(id="l4")  # Istio ambient: shown when ztunnel's connections came
        with Grid(id="panels"):
            yield Panel("what to check — Enter lists the lines", ["", "lines", "what · where · look at"], id="hints",
                        wrap=2)  # fmt: skip
            yield Panel("response flags — Enter filters", ["flag", "requests", "share", "meaning"], id="flags", wrap=3)
            yield Panel(
                "latency by upstream cluster (ms)",
                ["cluster", "reqs", "p50", "p90", "p99",
                 f"≤{HISTOGRAM_BOUNDS[0]}ms … >{HISTOGRAM_BOUNDS[-1] // 1000}s"],
                id="clusters",
                wrap=0,
            )  # fmt: skip
            with Vertical(id="codes-and-retries"):
                yield Panel("status codes", ["code", "requests", "share", ""], id="codes")
                yield Static(id="retries")
        yield Static(id="over-time")

    def on_mount(self) -> None:
        self.query_one("#codes-and-retries").border_title = "status codes · retries"

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW, "narrow")

    def update(self, summary: Summary, shapes: dict[str, list[int]]) -> None:
        """Refill every panel from a summary (and per-cluster duration histograms)."""
        total = summary["requests"]
        self.query_one("#hints", Panel).fill([(h["filter"], _hint_cells(h)) for h in summary["hints"]])
        flags = summary["response_flags"]
        self.query_one("#flags", Panel).fill(
            [
                (
                    flag_filter(f["flag"]),
                    [Text(f["flag"], style="bold"), f["count"], _share(f["count"], total), Text(f["meaning"])],
                )
                for f in flags
            ]
        )
        codes = summary["response_codes"]
        top = max((c["count"] for c in codes), default=1)
        self.query_one("#codes", Panel).fill(
            [
                (
                    f"response_code={c['code']}",
                    [
                        # 0 is an error only with a flag (a TCP connection logs 0 when it went well)
                        Text(str(c["code"]), style="red" if c["code"] >= 500 else "magenta" if c["code"] == 0 else ""),
                        c["count"],
                        _share(c["count"], total),
                        "█" * max(1, round(16 * c["count"] / top)),
                    ],
                )
                for c in codes
            ]
        )
        self.query_one("#clusters", Panel).fill(
            [
                (f"upstream_cluster={quote(str(r['upstream_cluster']))}", _cluster_cells(r, shapes))
                for r in summary["latency"]["by_upstream_cluster"]
            ]
        )
        self.query_one("#retries", Static).update(_retries(summary["retries"]))
        self.query_one("#over-time", Static).update(_over_time(summary))
        self.query_one(
            "#over-time", Static
        ).border_title = f"over time ({span(summary['timeline']['bucket_seconds'])} buckets)"
        l4 = self.query_one("#l4", Static)
        report = summary.get("connections")
        l4.display = bool(report)
        if report:
            l4.border_title = "L4 connections (ztunnel, Istio ambient)"
            l4.update(_connections(report))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        panel = event.data_table
        if isinstance(panel, Panel) and event.row_key.value in panel.filters:
            event.stop()
            where = panel.filters[event.row_key.value]
            if (where, event.row_key.value) != self._last or time.monotonic() - self._last_at > 0.5:
                self.post_message(self.FilterRequested(where))  # a click may select twice: once is enough
            self._last, self._last_at = (where, event.row_key.value), time.monotonic()


def _hint_cells(hint: Hint) -> list[Any]:
    mark, style = _SEVERITY.get(hint["severity"], ("●", ""))
    where = hint["where"].get("upstream_cluster") or hint["where"].get("route_name") or []
    text = Text()
    text.append(hint["title"], style="bold")
    if where:
        text.append(" at " + ", ".join(f"{short_name(w['value'])} ({w['count']})" for w in where))
    text.append(f"\n→ {hint['look_at']}", style="dim")
    return [Text(mark, style=style), f"{hint['count']} ({percent(hint['share'])})", text]


def _cluster_cells(r: dict[str, Any], shapes: dict[str, list[int]]) -> list[Any]:
    shape = sparkline(shapes.get(str(r["upstream_cluster"]), []))
    return [short_name(r["upstream_cluster"]), r["requests"], _ms(r["p50"]), _ms(r["p90"]), _ms(r["p99"]),
            Text(shape)]  # fmt: skip


def _retries(r: Retries) -> Text:
    out = Text()
    out.append("retries ", style="bold")
    out.append(f"URX (retry limit exceeded) {r['retry_limit_exceeded']}")
    if r["attempt_counts"] is not None:
        attempts = ", ".join(f"{a['attempts']}×{a['count']}" for a in r["attempt_counts"])
        out.append(
            f"\nretried {r['retried_requests']}: {r['retried_then_succeeded']} then succeeded, "
            f"{r['retried_and_failed']} still failed · attempts {attempts}"
        )
    elif not r["retry_limit_exceeded"]:
        out.append(" · attempt counts need %UPSTREAM_REQUEST_ATTEMPT_COUNT% in the format", style="dim")
    return out


def _over_time(summary: Summary) -> Text:
    """One character per bucket (every bucket, empty ones blank), the scale beside each line."""
    buckets = summary["timeline"]["buckets"]
    step = summary["timeline"]["bucket_seconds"]
    out = Text()
    for name, line, peak in timeline_lines(buckets):
        out.append(f"{name:<9}", style="bold")
        out.append(line or "-", style="red" if name == "errors" else "")
        out.append(f"  peak {peak:,} per {span(step)}\n", style="dim")
    if buckets:
        first, last = buckets[0]["start"], buckets[-1]["start"]
        out.append(" " * 9 + f"{first[11:19]} … {last[11:19]} UTC", style="dim")
    return out


def _connections(report: dict[str, Any], *, top: int = 6) -> Text:
    """ztunnel's connections: the headline, what to check, and the busiest / most failing pairs."""
    out = Text()
    out.append(headline(report) + "\n", style="bold")
    for hint in report["hints"][:4]:
        mark, style = _SEVERITY.get(hint["severity"], ("●", ""))
        places = hint["where"]["destination"]
        at = ", ".join(f"{short_name(p['value'])} ({p['count']})" for p in places[:2] if p["value"])
        out.append(f"{mark} ", style=style)
        out.append(hint["title"], style="bold")
        out.append(f" {hint['count']} ({percent(hint['share'])})" + (f" at {at}" if at else "") + "\n")
        out.append(f"  → {hint['look_at']}\n", style="dim")
    for r in report["by_workload"][:top]:
        if r["src_workload"] is None and r["dst_workload"] is None and r["dst_service"] is None:
            out.append(f"early rejections (no workload known): {count(r['connections'], 'connection')}\n", style="red")
            continue
        src = short_name(r["src_workload"] or "?")
        dst = short_name(r["dst_service"] or r["dst_workload"] or "?")
        errors = f" · {count(r['errors'], 'error')}" if r["errors"] else ""
        style = "red" if r["errors"] else ""
        out.append(f"{src} → {dst}: {count(r['connections'], 'connection')}{errors}\n", style=style)
    return out
