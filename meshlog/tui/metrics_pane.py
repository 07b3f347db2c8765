"""The metrics tab: what Prometheus counted for the services in the log, fetched in a thread worker.

The Prometheus client blocks; a worker thread with a hard timeout keeps the UI live, and a dead
server becomes a notice in the pane, never a frozen screen.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from meshlog.escape import safe
from meshlog.metrics.families import MATCHER_WHERE, absence, hidden, inclusion_regexps
from meshlog.reports.contract import MetricsReport
from meshlog.tui.text import plain, short_name


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


class MetricsPane(Vertical):
    DEFAULT_CSS = """
    MetricsPane #metrics-status { height: auto; padding: 0 1; }
    MetricsPane DataTable { height: 1fr; border: round $primary; }
    MetricsPane #metrics-hidden { height: auto; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static("no Prometheus: start with --prometheus URL", id="metrics-status")
        services: DataTable[Any] = DataTable(id="metrics-services", zebra_stripes=True)
        services.border_title = "traffic by destination service (Prometheus)"
        yield services
        envoy: DataTable[Any] = DataTable(id="metrics-envoy", zebra_stripes=True)
        envoy.border_title = "Envoy cluster counters over the window"
        yield envoy
        yield Static(id="metrics-hidden")

    def on_mount(self) -> None:
        self.query_one("#metrics-services", DataTable).add_columns(
            "service", "reporter", "req/s", "errors", "p50 ms", "p90 ms", "p99 ms", "non-2xx codes"
        )
        self.query_one("#metrics-envoy", DataTable).add_columns("family", "cluster", "value")

    def show_status(self, text: str, style: str = "") -> None:
        self.query_one("#metrics-status", Static).update(Text(text, style=style))

    def show_nothing(self, why: str) -> None:
        """Empty tables and the reason (a filter that selects no request has no metrics)."""
        self.show_status(why, "yellow")
        for table in self.query(DataTable):
            table.clear()
        self.query_one("#metrics-hidden", Static).update("")

    def show_report(self, report: MetricsReport, url: str) -> None:
        w = report["window"]
        self.show_status(f"{safe(url)} · {w['start'][:19]} → {w['end'][:19]} UTC")
        services = self.query_one("#metrics-services", DataTable)
        services.clear()
        for s in report["services"]:
            bad = [
                c
                for c in s["by_code"]
                if not c["response_code"].startswith("2") or c["response_flags"] not in ("-", None)
            ]
            codes = ", ".join(
                f"{c['response_code']} {c['response_flags']} {c['requests_per_s']:.2f}/s" for c in bad[:3]
            )
            services.add_row(
                short_name(s["destination_service"]), s["reporter"], f"{s['requests_per_s']:.2f}",
                Text(f"{100 * s['error_ratio']:.1f}%", style="red" if s["error_ratio"] >= 0.05 else ""),
                _ms(s["p50_ms"]), _ms(s["p90_ms"]), _ms(s["p99_ms"]), plain(codes),
            )  # fmt: skip
        if not report["services"]:
            services.add_row(Text("no istio_requests_total series for these services in the window", "yellow"),
                             *[""] * 7)  # fmt: skip
        envoy = self.query_one("#metrics-envoy", DataTable)
        envoy.clear()
        for family, rows in (report["envoy"] or {}).items():
            for row in [r for r in rows if r["value"]][:3]:
                envoy.add_row(
                    plain(family.removeprefix("envoy_cluster_")), plain(row["cluster_name"] or "(proxy)"),
                    f"{row['value']:g}",
                )  # fmt: skip
        unseen = hidden(report["missing"])
        # an empty panel would read as "no retries, no timeouts": say why it is empty, and what shows it
        self.query_one("#metrics-hidden", Static).update(
            Text.assemble(
                (f"{absence(len(unseen), report['source'])} ", "yellow"),
                f"({', '.join(dict.fromkeys(f.title for f in unseen))}). To see them, add to {MATCHER_WHERE}: ",
                (f"proxyStatsMatcher: {{{inclusion_regexps(unseen)}}}", "bold"),
            )
            if unseen
            else ""
        )
