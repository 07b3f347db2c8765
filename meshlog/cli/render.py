"""Terminal rendering of a summary. Logged values are data: control characters are shown escaped."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.table import Table

from meshlog.parse import AccessLog

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe(value: Any) -> str:
    """A value as text with control characters (ESC, BEL, …) escaped, never sent raw to a terminal."""
    text = "-" if value is None else str(value)
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def render_summary(summary: dict[str, Any], log: AccessLog, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    lines = summary["lines"]
    tr = summary["time_range"]
    console.print(
        f"[bold]{summary['requests']}[/] requests from {lines['total']} lines "
        f"({lines['unparsed']} unparsed, {lines['other']} other) · format {safe(summary['format']['name'] or 'custom')}"
    )
    console.print(f"time range: {tr['start'] or '-'} → {tr['end'] or '-'}")

    codes = Table(title="status codes", title_justify="left")
    codes.add_column("code", justify="right")
    codes.add_column("requests", justify="right")
    codes.add_column("share", justify="right")
    total = max(summary["requests"], 1)
    for row in summary["response_codes"]:
        codes.add_row(str(row["code"]), str(row["count"]), f"{100 * row['count'] / total:.1f}%")
    console.print(codes)

    if summary["response_flags"]:
        flags = Table(title="response flags (a line with UF,URX counts for both)", title_justify="left")
        for name in ("flag", "requests", "name", "meaning"):
            flags.add_column(name, justify="right" if name == "requests" else "left")
        for row in summary["response_flags"]:
            flags.add_row(safe(row["flag"]), str(row["count"]), row["name"], row["meaning"])
        console.print(flags)

    lat = Table(title="latency (ms)", title_justify="left")
    for name in ("", "p50", "p90", "p99", "max"):
        lat.add_column(name, justify="right" if name else "left")
    for key in ("duration", "upstream_service_time"):
        values = summary["latency"].get(key)
        if values:
            lat.add_row(key, *(_num(values[k]) for k in ("p50", "p90", "p99", "max")))
    console.print(lat)

    clusters = summary["latency"]["by_upstream_cluster"]
    if clusters:
        by = Table(title="duration by upstream cluster (ms)", title_justify="left")
        for name in ("upstream_cluster", "requests", "p50", "p90", "p99"):
            by.add_column(name, justify="left" if name == "upstream_cluster" else "right")
        for row in clusters:
            by.add_row(
                safe(row["upstream_cluster"]), str(row["requests"]), *(_num(row[k]) for k in ("p50", "p90", "p99"))
            )
        console.print(by)

    retries = summary["retries"]
    if retries["attempt_counts"] is not None:
        console.print(
            f"retries: {retries['retried_requests']} request(s) retried; attempts "
            + ", ".join(f"{r['attempts']}×{r['count']}" for r in retries["attempt_counts"])
        )
    console.print(f"retry limit exceeded (URX): {retries['retry_limit_exceeded']}")
