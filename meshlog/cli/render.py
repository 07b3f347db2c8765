"""Terminal and Markdown rendering of a summary. Logged values are data: control characters are escaped.

Colour follows rich's rules: none when stdout is not a terminal or ``NO_COLOR`` is set.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from meshlog.cli.markdown import cell, table
from meshlog.cli.render_l4 import markdown_connections, render_connections
from meshlog.escape import safe
from meshlog.figures import count, percent, span, timeline_lines
from meshlog.names import short
from meshlog.reports.contract import Hint, Percentiles, Summary, by_tables, percentile_rows

_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _num(value: Any) -> str:
    """A number as the reports show it: whole when it is, else one decimal (``298``, ``0.5``)."""
    if value is None:
        return "-"
    v = round(float(value), 1)
    return f"{v:.0f}" if v.is_integer() else f"{v:.1f}"


class _ReportConsole(Console):
    def on_broken_pipe(self) -> None:
        """rich exits 1 on its own here; the CLI's boundary decides (a reader that left is no error)."""
        self.quiet = True
        raise BrokenPipeError


def stdout_console() -> Console:
    """The console for reports: a terminal's own width; 200 columns into a pipe or file (rich's 80
    would cut lines mid-phrase in a saved report), unless ``COLUMNS`` says otherwise."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return _ReportConsole(highlight=False, width=200 if piped else None)


_WHOLE = 48  # a name up to this wide is never folded mid-word; free text wraps around it


def _table(title: str, columns: list[str], rows: list[list[str]], right: set[str] | None = None) -> Table:
    """A report table; name-like columns (no spaces in any cell) keep their width, text wraps at words."""
    table = Table(title=title, title_justify="left", title_style="bold", expand=False)
    for i, c in enumerate(columns):
        cells = [str(row[i]) for row in rows if i < len(row)]
        whole = all(" " not in cell for cell in cells)
        widest = max((len(cell) for cell in cells), default=0)
        table.add_column(
            c, justify="right" if right and c in right else "left", overflow="fold",
            min_width=min(max(widest, len(c)), _WHOLE) if whole else None,
        )  # fmt: skip
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _name(value: Any) -> str:
    """A cluster / authority for the terminal: escaped, without the in-mesh suffix (JSON keeps it)."""
    return "-" if value is None else safe(short(str(value)))


def hint_place(hint: Hint, *, most: int = 2) -> str:
    """Where a hint happens: its top clusters (else routes) with their counts; the same in every output."""
    where = hint["where"].get("upstream_cluster") or hint["where"].get("route_name") or []
    return ", ".join(f"{safe(short(str(w['value'])))} ({w['count']:,})" for w in where[:most])


def format_names(summary: Summary) -> str:
    """``format istio``, ``formats istio, istio-json`` (several inputs), or that none is known yet."""
    several = summary.get("formats") or []
    if several:
        return "formats " + ", ".join(f["name"] or "custom" for f in several)
    if summary["format"]["string"] is None:
        return "ztunnel records" if summary.get("connections") else "no format yet (no access line)"
    return f"format {summary['format']['name'] or 'custom'}"


def chosen_by(summary: Summary) -> str | None:
    """``7 of 19 requests match `response_code>=500`, since 15m (from 21:09:24Z)``: what chose them."""
    where, win = summary.get("filter"), summary.get("window")
    if not where and not win:
        return None
    parts = [f"`{safe(where)}`"] if where else []
    if win:
        for key, given, at in (("since", win["since"], win["start"]), ("until", win["until"], win["end"])):
            if given:
                parts.append(f"{key} {safe(given)}" + (f" ({at})" if at and at != given else ""))
    l4 = summary.get("connections")
    records = l4["records"] if l4 else 0  # ztunnel's records are access lines too: not requests
    requests = summary["lines"]["access"] - records
    said = f"{summary['requests']:,} of {count(requests, 'request')}" if requests or not l4 else ""
    if l4:
        said += (" and " if said else "") + f"{l4['total'] + l4['opened']:,} of {count(records, 'ztunnel record')}"
    return f"{said} match " + ", ".join(parts)


def _what(summary: Summary) -> str:
    """``7 requests``, ``7 requests, 40 connections``: what the report counts."""
    l4 = summary.get("connections")
    if l4 and summary["lines"]["access"] == l4["records"]:  # ztunnel's records only
        return count(l4["total"], "connection")
    return count(summary["requests"], "request") + (f", {count(l4['total'], 'connection')}" if l4 else "")


def render_summary(summary: Summary, console: Console | None = None) -> None:
    """The one-screen report: what fails, where, why, and what to check."""
    console = console or stdout_console()
    lines, tr, over = summary["lines"], summary["time_range"], summary["overview"]
    rate = over["requests_per_s"]
    console.print(
        Text.assemble(
            (_what(summary), "bold"),
            f" from {count(lines['total'], 'line')} ({lines['unparsed']:,} unparsed, {lines['other']:,} other)"
            f" · {safe(format_names(summary))}",
        )
    )
    if chosen := chosen_by(summary):
        console.print(Text(chosen, style="bold"))
    if summary["requests"]:
        console.print(
            f"{tr['start'] or '-'} → {tr['end'] or '-'}"
            + (f" · {rate:.1f} req/s" if rate else "")
            + f" · errors (5xx, 0 with a flag): {over['errors']:,} ({percent(over['error_ratio'])})"
        )
    if summary["unparsed_lines"]:
        first = summary["unparsed_lines"][0]
        console.print(f"first unparsed: {safe(first['source'])}:{first['line_no']}: {safe(first['reason'])}")
    l4 = summary.get("connections")
    if not summary["requests"]:
        if l4:  # a ztunnel log: its connections are the report
            render_connections(l4, console)
            return
        console.print("no requests to report" + (" (none matches the filter)" if lines["access"] else ""))
        return
    for section in (_status, _hints, _flags, _error_paths, _error_details, _latency, _retries, _over_time):
        section(summary, console)
    if l4:
        render_connections(l4, console)
    if summary.get("metrics"):
        _render_comparison(summary["metrics"], console)


def _status(summary: Summary, console: Console) -> None:
    total = max(summary["requests"], 1)
    codes = "  ".join(f"{r['code']}×{r['count']}" for r in summary["response_codes"])
    classes = "  ".join(f"{r['class']}: {100 * r['count'] / total:.0f}%" for r in summary.get("status_classes", []))
    console.print(Text(f"status  {codes}   ({classes})"))


def _hints(summary: Summary, console: Console) -> None:
    if summary["hints"]:
        console.print(Text("what to check", style="bold"))
    for hint in summary["hints"]:
        style = _SEVERITY_STYLE.get(hint["severity"], "")
        at = hint_place(hint)
        console.print(
            Text.assemble(
                ("● ", style),
                (hint["title"], "bold"),
                f" — {hint['count']} ({percent(hint['share'])})",
                f" at {at}" if at else "",
            )
        )
        console.print(Text(f"  → {hint['look_at']}", style="dim"))


def _flags(summary: Summary, console: Console) -> None:
    if not summary["response_flags"]:
        return
    wide = console.width >= 100  # narrow: the code names the flag, the cluster goes under its meaning
    rows = []
    for f in summary["response_flags"]:
        top = f.get("top_upstream_cluster") or []
        cluster = _name(top[0]["value"]) if top else "-"
        if wide:
            rows.append([f["flag"], str(f["count"]), f"{f['name']}: {f['meaning']}", cluster])
        else:
            rows.append([f["flag"], str(f["count"]), f["meaning"] + (f"\n→ {cluster}" if top else "")])
    columns = ["flag", "requests", "meaning", "top cluster"] if wide else ["flag", "requests", "meaning → top cluster"]
    console.print(_table("response flags (UF,URX counts for both)", columns, rows, {"requests"}))


def _error_paths(summary: Summary, console: Console) -> None:
    if not summary["top_error_paths"]:
        return
    errors = summary["overview"]["errors"]
    rows = [[safe(p["path"]), f"{p['errors']:,}", percent(p["share_of_errors"])] for p in summary["top_error_paths"]]
    share = f"of all {errors:,}"
    console.print(_table("top error paths", ["path", "errors", share], rows, {"errors", share}))
    if pathless := summary["overview"].get("errors_without_path"):
        console.print(Text(f"  {count(pathless, 'error')} without a path (TCP, or the format logs none)", style="dim"))


def _error_details(summary: Summary, console: Console) -> None:
    if not summary["error_details"]:
        return
    rows = [
        [safe(d["kind"]), safe(d["reset_reason"]), safe(d["transport_failure"]), str(d["count"])]
        for d in summary["error_details"]
    ]
    columns = ["details", "reset reason", "transport failure", "requests"]
    console.print(_table("why 5xx / 0 (response_code_details)", columns, rows, {"requests"}))


def _latency(summary: Summary, console: Console) -> None:
    lat = summary["latency"]
    quantiles = ("p50", "p90", "p99", "max")
    named = {"proxy_and_network": "proxy + network (gap)"}
    rows = [[named.get(name, name), *_quantiles(values)] for name, values in percentile_rows(lat)]
    console.print(_table("latency (ms)", ["", *quantiles], rows, set(quantiles)))
    for dim, values in by_tables(lat):
        rows = [[_name(r[dim]), str(r["requests"]), *(_num(r[k]) for k in ("p50", "p90", "p99"))] for r in values]
        title = f"duration by {dim} (ms, slowest p99 first)"
        console.print(_table(title, [dim, "requests", "p50", "p90", "p99"], rows, {"requests", "p50", "p90", "p99"}))


def _quantiles(values: Percentiles) -> list[str]:
    return [_num(values["p50"]), _num(values["p90"]), _num(values["p99"]), _num(values["max"])]


def _retries(summary: Summary, console: Console) -> None:
    retries = summary["retries"]
    parts = [f"retry limit exceeded (URX): {retries['retry_limit_exceeded']}"]
    if retries["attempt_counts"] is not None:
        parts.append(
            f"retried: {retries['retried_requests']} ({retries['retried_then_succeeded']} then succeeded, "
            f"{retries['retried_and_failed']} still failed); attempts "
            + ", ".join(f"{r['attempts']}×{r['count']}" for r in retries["attempt_counts"])
        )
    console.print("retries: " + "; ".join(parts))


def _over_time(summary: Summary, console: Console) -> None:
    buckets = summary["timeline"]["buckets"]
    if len(buckets) > 1:
        step = summary["timeline"]["bucket_seconds"]
        for name, line, peak in timeline_lines(buckets):
            console.print(f"{name:<8} per {span(step)}  {line}  peak {peak:,}")
    if summary["other_lines"]:
        console.print("other lines: " + ", ".join(f"{o['kind']} {o['count']}" for o in summary["other_lines"]))


def _render_comparison(m: dict[str, Any], console: Console) -> None:
    """The log's traffic beside what Prometheus counted, then what the differences suggest."""
    w = m["window"] or {}
    scaled = " (widened for scrape resolution; counts scaled to the log's span)" if m["scaled_to_log_span"] else ""
    rows = [
        [safe(s["destination_service"]), s["reporter"], str(s["log_requests"]), _num(s["metric_requests"]),
         str(s["log_errors"]), _num(s["metric_errors"])]
        for s in m["services"]
    ]  # fmt: skip
    console.print(
        _table(
            f"log vs Prometheus, {w.get('start', '-')[:19]} → {w.get('end', '-')[:19]}{scaled}",
            ["service", "reporter", "log requests", "metric requests", "log errors", "metric errors"],
            rows,
            {"log requests", "metric requests", "log errors", "metric errors"},
        )
    )
    for d in m["disagreements"]:
        console.print(Text.assemble(("≠ ", "yellow"), safe(d["detail"])))
    if not m["disagreements"]:
        console.print("log and metrics agree on requests and errors")


def markdown_summary(summary: Summary) -> str:
    """The same report as Markdown (for tickets and chat), values escaped for tables."""

    lines, over = summary["lines"], summary["overview"]
    out = [
        "# meshlog summary",
        "",
        *([chosen, ""] if (chosen := chosen_by(summary)) else []),
        (
            f"{_what(summary)} from {count(lines['total'], 'line')} ({lines['unparsed']:,} "
            f"unparsed, {lines['other']:,} other); "
            + (f"errors (5xx, 0 with a flag): {over['errors']:,} ({percent(over['error_ratio'])}); "
               if summary["requests"] else "")
            + f"{format_names(summary)}"
            + (f"; {tr['start']} → {tr['end']}" if (tr := summary["time_range"])["start"] else "")
        ),
        "",
    ]
    if summary["hints"]:
        out += ["## Triage hints", ""]
        out += [
            f"- **{h['title']}** ({h['severity']}, {count(h['count'], 'request')}, {percent(h['share'])})"
            + (f" at {cell(at)}" if (at := hint_place(h)) else "")
            + f": {cell(h['detail'])} → {cell(h['look_at'])}"
            for h in summary["hints"]
        ]
        out.append("")
    if summary["top_error_paths"]:
        out += [f"## Top error paths (share of all {count(summary['overview']['errors'], 'error')})", ""]
        out += table(
            ["path", "errors", "share"],
            [[p["path"], p["errors"], percent(p["share_of_errors"])] for p in summary["top_error_paths"]],
        )
        if pathless := summary["overview"].get("errors_without_path"):
            out += [f"{count(pathless, 'error')} without a path (TCP, or the format logs none).", ""]
    codes = [[r["code"], r["count"]] for r in summary["response_codes"]]
    if codes:
        out += ["## Status codes", "", *table(["code", "requests"], codes)]
    if summary["response_flags"]:
        flags = [[f["flag"], f["count"], f["name"], f["meaning"]] for f in summary["response_flags"]]
        out += ["## Response flags", "", *table(["flag", "requests", "name", "meaning"], flags)]
    if summary["error_details"]:
        details = [[d["kind"], d["reset_reason"], d["transport_failure"], d["count"]] for d in summary["error_details"]]
        columns = ["details", "reset reason", "transport failure", "requests"]
        out += ["## Why 5xx / 0 (response_code_details)", "", *table(columns, details)]
    lat = summary["latency"]
    if lat["duration"]:
        rows = [[k, *_quantiles(v)] for k, v in percentile_rows(lat)]
        out += ["## Latency (ms)", "", *table(["", "p50", "p90", "p99", "max"], rows)]
    for dim, values in by_tables(lat):
        rows = [[r[dim], r["requests"], _num(r["p50"]), _num(r["p90"]), _num(r["p99"])] for r in values]
        heading = f"## Duration by {dim} (ms, slowest p99 first)"
        out += [heading, "", *table([dim, "requests", "p50", "p90", "p99"], rows)]
    retries = summary["retries"]
    if summary["requests"]:
        out += ["## Retries", "", f"- retry limit exceeded (URX): {retries['retry_limit_exceeded']}"]
        if retries["attempt_counts"] is not None:
            attempts = ", ".join(f"{r['attempts']}×{r['count']}" for r in retries["attempt_counts"])
            out.append(
                f"- retried: {retries['retried_requests']} ({retries['retried_then_succeeded']} then succeeded, "
                f"{retries['retried_and_failed']} still failed); attempts {attempts}"
            )
        out.append("")
    buckets = summary["timeline"]["buckets"]
    if len(buckets) > 1:
        step = summary["timeline"]["bucket_seconds"]
        out += [f"## Over time ({span(step)} buckets)", ""]
        out += [f"- {name}: `{line}` peak {peak}" for name, line, peak in timeline_lines(buckets)]
        out.append("")
    if summary.get("connections"):
        out += markdown_connections(summary["connections"])  # type: ignore[arg-type]
    if summary["other_lines"]:
        out += ["## Other lines", "", ", ".join(f"{o['kind']} {o['count']}" for o in summary["other_lines"]), ""]
    return "\n".join(out)


def render_trace(request_id: str, hops: Any, console: Console | None = None) -> None:
    """The hops of one request as a table: where, when (offset), how long, how it ended."""
    console = console or stdout_console()
    console.print(Text.assemble(("request ", "bold"), safe(request_id), f" — {count(hops.height, 'line')}"))
    columns = ["+ms", "took ms", "code", "flags", "request", "source:line", "pod", "upstream cluster", "upstream host"]
    rows = [
        [
            _num(h.get("offset_ms")),
            _num(h.get("duration")),
            safe(h.get("response_code")),
            safe(h.get("response_flags")),
            safe(" ".join(str(h[k]) for k in ("method", "path") if h.get(k) is not None)),
            f"{safe(h.get('source'))}:{h.get('line_no')}",
            safe(h.get("pod")),
            _name(h.get("upstream_cluster")),
            safe(h.get("upstream_host")),
        ]
        for h in hops.to_dicts()
    ]
    console.print(_table("hops (in time order)", columns, rows, {"+ms", "took ms", "code"}))
