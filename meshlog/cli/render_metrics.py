"""Terminal rendering of a metrics report: per-service traffic first, then Envoy's counters, then gaps."""

from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text

from meshlog.cli.render import safe, stdout_console
from meshlog.metrics.families import (
    ENVOY_FAMILIES,
    MATCHER_WHERE,
    RATE_LIMIT_FAMILIES,
    absence,
    hidden,
    inclusion_regexps,
)
from meshlog.reports.contract import CodeRate, MetricsReport

_TITLES = {f.name: f.title for f in (*ENVOY_FAMILIES, *RATE_LIMIT_FAMILIES)}
_QUIET = {"envoy_cluster_upstream_rq_total", "envoy_cluster_membership_healthy"}  # context, not alarms


def _ms(value: float | None) -> str:
    return "-" if value is None else (f"{value:.0f}" if value >= 100 else f"{value:.1f}")


def _rate(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _non_2xx(by_code: list[CodeRate]) -> str:
    """The first few codes that are not a plain 2xx, with their flags and rates: ``503 UF 0.2/s``."""
    bad = [c for c in by_code if not c["response_code"].startswith("2") or c["response_flags"] not in ("-", None)]
    return ", ".join(
        f"{c['response_code']} {c['response_flags'] if c['response_flags'] not in ('-', None) else ''}".strip()
        + f" {_rate(c['requests_per_s'])}/s"
        for c in bad[:4]
    )


def render_metrics(report: MetricsReport, url: str, console: Console | None = None) -> None:
    """What the metrics say about the window, in the order an on-call engineer asks."""
    console = console or stdout_console()
    w = report["window"]
    console.print(
        Text.assemble(
            ("metrics", "bold"),
            f" from {report['source']} {safe(url)} · {w['start'][:19]} → {w['end'][:19]} UTC ({w['seconds']:.0f} s)",
        )
    )
    for note in report["notes"]:
        console.print(Text(f"note: {note}", style="yellow"))
    if report["services"]:
        table = Table(title="traffic by destination service", title_justify="left", title_style="bold")
        for name in (
            "service",
            "reporter",
            "req/s",
            "requests",
            "errors",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "non-2xx codes",
        ):
            left = name in ("service", "reporter", "non-2xx codes")
            table.add_column(name, justify="left" if left else "right", overflow="fold")
        for s in report["services"]:
            codes = _non_2xx(s["by_code"])
            err = f"{100 * s['error_ratio']:.1f}%"
            if s["grpc_error_ratio"]:
                err += f" (+gRPC {100 * s['grpc_error_ratio']:.1f}%)"
            table.add_row(
                Text(safe(s["destination_service"])),
                s["reporter"],
                _rate(s["requests_per_s"]),
                f"{s['requests']:.0f}",
                Text(err, style="red" if s["error_ratio"] >= 0.05 else ""),
                _ms(s["p50_ms"]),
                _ms(s["p90_ms"]),
                _ms(s["p99_ms"]),
                Text(safe(codes)),
            )
        console.print(table)
    envoy = report["envoy"]
    if envoy:
        table = Table(title="Envoy cluster counters over the window", title_justify="left", title_style="bold")
        for name in ("what", "cluster", "value"):
            table.add_column(name, justify="right" if name == "value" else "left")
        for family, rows in envoy.items():
            if family in _QUIET:
                continue
            for row in [r for r in rows if r["value"]][:3]:
                table.add_row(
                    _TITLES.get(family, family), Text(safe(row["cluster_name"] or "(whole proxy)")), f"{row['value']:g}"
                )
        if table.row_count:
            console.print(table)
        else:
            console.print("Envoy cluster counters: no retries, timeouts, connect failures, ejections or overflows")
    _not_visible(report, console)


def _not_visible(report: MetricsReport, console: Console) -> None:
    """The families the mesh does not expose, and the proxyStatsMatcher that would show them."""
    missing = report["missing"]
    if missing:
        console.print(Text("not visible", style="bold"))
    unseen = hidden(missing)
    for m in missing:
        if not any(m == f.hint for f in unseen):
            console.print(Text(f"  {safe(m)}", style="dim"))
    if unseen:
        console.print(
            f"  {absence(len(unseen), report['source'])} "
            f"({', '.join(dict.fromkeys(f.title for f in unseen[:6]))}, …). To see them, add to {MATCHER_WHERE}:"
        )
        console.print(Text(f"    proxyStatsMatcher:\n      {inclusion_regexps(unseen)}", style="cyan"))


def metrics_rows(report: MetricsReport) -> pl.DataFrame:
    """One CSV row per service, reporter, code and flags, with the service's quantiles repeated."""
    rows = [
        {
            "destination_service": s["destination_service"],
            "reporter": s["reporter"],
            "response_code": c["response_code"],
            "response_flags": c["response_flags"],
            "requests": c["requests"],
            "requests_per_s": c["requests_per_s"],
            "service_error_ratio": s["error_ratio"],
            "p50_ms": s["p50_ms"],
            "p90_ms": s["p90_ms"],
            "p99_ms": s["p99_ms"],
        }
        for s in report["services"]
        for c in s["by_code"]
    ]
    schema = {
        "destination_service": pl.String, "reporter": pl.String, "response_code": pl.String,
        "response_flags": pl.String, "requests": pl.Float64, "requests_per_s": pl.Float64,
        "service_error_ratio": pl.Float64, "p50_ms": pl.Float64, "p90_ms": pl.Float64, "p99_ms": pl.Float64,
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")
