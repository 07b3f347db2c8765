"""The dashboard: the ``summarize`` report as panels. Selecting a row filters the request table.

Panels are filled from ``summary_dict`` (the same function the CLI prints), so the TUI and
``meshlog summarize`` never disagree.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.message import Message
from textual.widgets import DataTable, Sparkline, Static

from meshlog.escape import safe

BARS = " ▁▂▃▄▅▆▇█"
_SEVERITY = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def spark(values: list[int]) -> str:
    top = max(values, default=0) or 1
    return "".join(BARS[round(v / top * (len(BARS) - 1))] for v in values)


def quote(value: str) -> str:
    """A value for the --where language (quoted, so ``|`` and spaces in cluster names are fine)."""
    return "'" + value.replace("'", "") + "'"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


class Panel(DataTable[Any]):
    """A small table whose rows carry the filter they stand for."""

    DEFAULT_CSS = "Panel { height: 1fr; }"

    def __init__(self, title: str, columns: list[str], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.border_title = title
        self._headers = columns
        self.filters: dict[str, str] = {}

    def on_mount(self) -> None:
        self.add_columns(*self._headers)

    def on_click(self, event: Any) -> None:
        """One click on a row filters by it (a DataTable alone wants a second click to select)."""
        if self.row_count and event.style.meta.get("row", -1) >= 0:  # a row, not the heading or border
            self.call_later(self.action_select_cursor)  # after the click moved the cursor

    def fill(self, rows: list[tuple[str, list[Any]]]) -> None:
        """``rows``: (filter expression, cells); keeps the cursor where it was when it can."""
        cursor = self.cursor_row
        self.clear()
        self.filters = {}
        for i, (where, cells) in enumerate(rows):
            key = f"r{i}"
            self.filters[key] = where
            self.add_row(*cells, key=key)
        if rows:
            self.move_cursor(row=min(cursor, len(rows) - 1))


class Dashboard(Vertical):
    """Flags, codes, latency per cluster, retries, hints, and requests/errors over time."""

    class FilterRequested(Message):
        def __init__(self, where: str) -> None:
            super().__init__()
            self.where = where

    DEFAULT_CSS = """
    Dashboard Grid { grid-size: 2 2; grid-columns: 1fr 1fr; grid-rows: 1fr 1fr; height: 1fr; }
    Dashboard Panel, Dashboard #side { border: round $primary; }
    Dashboard #side { padding: 0 1; height: 1fr; }
    Dashboard #over-time { height: 6; border: round $primary; padding: 0 1; }
    Dashboard Sparkline { height: 1; margin: 0 0 0 9; }
    Dashboard #errors-spark > .sparkline--max-color { color: $error; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last: tuple[str, Any] = ("", None)
        self._last_at = 0.0

    def compose(self) -> ComposeResult:
        with Grid():
            yield Panel("response flags — Enter filters", ["flag", "requests", "share", "meaning"], id="flags")
            yield Panel("status codes", ["code", "requests", "share", ""], id="codes")
            yield Panel(
                "latency by upstream cluster (ms)", ["cluster", "requests", "p50", "p90", "p99", "shape ≤1ms…>10s"],
                id="clusters",
            )  # fmt: skip
            yield Static(id="side")
        with Vertical(id="over-time"):
            yield Static(id="over-label")
            yield Sparkline([], id="requests-spark")
            yield Static("errors", id="errors-label")
            yield Sparkline([], id="errors-spark")

    def update(self, summary: dict[str, Any], shapes: dict[str, list[int]]) -> None:
        """Refill every panel from a summary (and per-cluster duration histograms)."""
        total = max(summary["requests"], 1)
        self.query_one("#flags", Panel).fill(
            [
                (
                    f"response_flags~'(^|,){f['flag']}(,|$)'",
                    [Text(f["flag"], style="bold"), f["count"], f"{100 * f['count'] / total:.1f}%", f["meaning"]],
                )
                for f in summary["response_flags"]
            ]
        )
        codes = summary["response_codes"]
        top = max((c["count"] for c in codes), default=1)
        self.query_one("#codes", Panel).fill(
            [
                (
                    f"response_code={c['code']}",
                    [
                        Text(str(c["code"]), style="red" if c["code"] >= 500 or c["code"] == 0 else ""),
                        c["count"],
                        f"{100 * c['count'] / total:.1f}%",
                        "█" * max(1, round(20 * c["count"] / top)),
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
        self.query_one("#side", Static).update(_side(summary))
        self.query_one("#side", Static).border_title = "what to check · retries"
        buckets = summary["timeline"]["buckets"]
        step = summary["timeline"]["bucket_seconds"]
        self.query_one("#over-time").border_title = f"over time ({step}s buckets)"
        peak = max((b["requests"] for b in buckets), default=0)
        self.query_one("#over-label", Static).update(f"requests (peak {peak}/bucket)")
        self.query_one("#requests-spark", Sparkline).data = [b["requests"] for b in buckets] or [0]
        self.query_one("#errors-spark", Sparkline).data = [b["errors"] for b in buckets] or [0]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        panel = event.data_table
        if isinstance(panel, Panel) and event.row_key.value in panel.filters:
            event.stop()
            where = panel.filters[event.row_key.value]
            if (where, event.row_key.value) != self._last or time.monotonic() - self._last_at > 0.5:
                self.post_message(self.FilterRequested(where))  # a click may select twice: once is enough
            self._last, self._last_at = (where, event.row_key.value), time.monotonic()


def _cluster_cells(r: dict[str, Any], shapes: dict[str, list[int]]) -> list[Any]:
    shape = spark(shapes.get(str(r["upstream_cluster"]), []))
    return [safe(r["upstream_cluster"]), r["requests"], _ms(r["p50"]), _ms(r["p90"]), _ms(r["p99"]), shape]


def _side(summary: dict[str, Any]) -> Text:
    out = Text()
    for hint in summary["hints"][:5]:
        where = hint["where"].get("upstream_cluster") or hint["where"].get("route_name") or []
        at = f" at {safe(where[0]['value'])}" if where else ""
        out.append("● ", style=_SEVERITY.get(hint["severity"], ""))
        out.append(hint["title"], style="bold")
        out.append(f" — {hint['count']}{at}\n")
        out.append(f"  → {hint['look_at']}\n", style="dim")
    if not summary["hints"]:
        out.append("nothing matches a triage rule\n", style="green")
    r = summary["retries"]
    out.append("\nretries: ", style="bold")
    out.append(f"URX (retry limit exceeded) {r['retry_limit_exceeded']}")
    if r["attempt_counts"] is not None:
        attempts = ", ".join(f"{a['attempts']}×{a['count']}" for a in r["attempt_counts"])
        out.append(
            f"\n  retried {r['retried_requests']}: {r['retried_then_succeeded']} then succeeded, "
            f"{r['retried_and_failed']} still failed\n  attempts {attempts}"
        )
    return out
