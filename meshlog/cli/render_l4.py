"""The L4 (Istio ambient, ztunnel) part of a summary, for the terminal and for Markdown."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from meshlog.cli.markdown import cell, table
from meshlog.escape import safe
from meshlog.figures import connections_headline as headline
from meshlog.figures import count, percent, span, timeline_lines
from meshlog.names import short

_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _bytes(n: Any) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _ms(v: Any) -> str:
    return "-" if v is None else f"{float(v):.0f}" if float(v).is_integer() else f"{float(v):.1f}"


def _identity(spiffe: Any) -> str:
    """``spiffe://cluster.local/ns/bookinfo/sa/reviews`` → ``bookinfo/reviews`` (JSON keeps it whole)."""
    if spiffe is None:
        return "-"
    text = str(spiffe)
    if text.startswith("spiffe://") and "/ns/" in text and "/sa/" in text:
        ns, _, sa = text.split("/ns/", 1)[1].partition("/sa/")
        return safe(f"{ns}/{sa}")
    return safe(text)


def _who(workload: Any, namespace: Any) -> str:
    if workload is None:
        return "?" if namespace is None else f"?.{namespace}"
    return safe(f"{workload}.{namespace}" if namespace else str(workload))


def _pair_rows(report: dict[str, Any]) -> list[list[str]]:
    return [
        ["(early rejections: no workload known)", "", f"{r['connections']:,}", f"{r['errors']:,}", "", "", ""]
        if r["src_workload"] is None and r["dst_workload"] is None and r["dst_service"] is None
        else [
            _who(r["src_workload"], r["src_namespace"]),
            _who(r["dst_workload"], r["dst_namespace"])
            + (f" ({safe(short(r['dst_service']))})" if r["dst_service"] else ""),
            f"{r['connections']:,}",
            f"{r['errors']:,}",
            _bytes(r["bytes_sent"]),
            _bytes(r["bytes_recv"]),
            _ms(r.get("p99")),
        ]
        for r in report["by_workload"]
    ]


_PAIR_COLUMNS = ["source", "destination (service)", "conns", "errors", "sent", "recv", "p99 ms"]


_SERVICE_COLUMNS = ["service", "conns", "errors", "sent", "recv", "p50 ms", "p99 ms"]


def _service_rows(report: dict[str, Any]) -> list[list[str]]:
    return [
        [safe(short(r["dst_service"])) if r["dst_service"] else "(none: early rejections, no service known)",
         f"{r['connections']:,}", f"{r['errors']:,}", _bytes(r["bytes_sent"]), _bytes(r["bytes_recv"]),
         _ms(r.get("p50")), _ms(r.get("p99"))]
        for r in report["by_service"]
    ]  # fmt: skip


def _shown(title: str, report: dict[str, Any], table: str) -> str:
    """A table's title, saying when ``--top`` left rows out."""
    shown, of = len(report[table]), report.get("distinct", {}).get(table, 0)
    return f"{title} (top {shown} of {of:,})" if of > shown else title


def _directions(report: dict[str, Any]) -> str:
    """``by direction: outbound 20 (12 errors) · inbound 18 (9 errors)``."""
    parts = [
        f"{r['direction'] or '?'} {r['connections']:,}" + (f" ({count(r['errors'], 'error')})" if r["errors"] else "")
        for r in report["by_direction"]
    ]
    return "by direction: " + " · ".join(parts) if parts else ""


def render_connections(report: dict[str, Any], console: Console) -> None:
    """Ambient's L4 section: headline, what to check, errors by kind, who talks to whom."""
    console.print(Text("L4 connections (ztunnel)", style="bold"))
    console.print(headline(report))
    for hint in report["hints"]:
        style = _SEVERITY_STYLE.get(hint["severity"], "")
        places = hint["where"]["destination"]
        at = ", ".join(f"{safe(short(str(p['value'])))} ({p['count']:,})" for p in places[:2] if p["value"])
        console.print(
            Text.assemble(
                ("● ", style), (hint["title"], "bold"), f" — {hint['count']:,} ({percent(hint['share'])})",
                f" at {at}" if at else "",
            )
        )  # fmt: skip
        console.print(Text(f"  → {hint['look_at']}", style="dim"))
    if report["errors_by_kind"]:
        rows = [[safe(e["title"]), f"{e['count']:,}", safe(e["example"])] for e in report["errors_by_kind"]]
        title = _shown("connection errors", report, "errors_by_kind")
        console.print(_simple(title, ["kind", "conns", "commonest error"], rows))
    if report["by_workload"]:
        console.print(_simple(_shown("by source → destination", report, "by_workload"), _PAIR_COLUMNS,
                              _pair_rows(report)))  # fmt: skip
    if report["by_service"]:
        console.print(_simple(_shown("by destination service", report, "by_service"), _SERVICE_COLUMNS,
                              _service_rows(report)))  # fmt: skip
    if directions := _directions(report):
        console.print(directions)
    ids = [[_identity(r["src_identity"]), _identity(r["dst_identity"]), f"{r['connections']:,}", f"{r['errors']:,}"]
           for r in report["by_identity"]]  # fmt: skip
    if ids:
        console.print(
            _simple("by identity (mTLS)", ["source identity", "destination identity", "conns", "errors"], ids)
        )
    buckets = report["timeline"]["buckets"]
    if len(buckets) > 1:
        step = report["timeline"]["bucket_seconds"]
        console.print(Text(f"over time ({span(step)} buckets)", style="bold"))
        for name, line, peak in timeline_lines(buckets, ("connections", "errors")):
            console.print(f"  {name:<12}{line}  peak {peak}")


def _simple(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=False)
    for c in columns:
        table.add_column(c, overflow="fold", justify="right" if c in ("conns", "errors", "p99 ms") else "left")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def markdown_connections(report: dict[str, Any]) -> list[str]:
    """The same section as Markdown lines."""

    out = ["## L4 connections (ztunnel)", "", headline(report), ""]
    if report["hints"]:
        out += ["### What to check", ""]
        for h in report["hints"]:
            places = h["where"]["destination"]
            at = ", ".join(f"{short(str(p['value']))} ({p['count']:,})" for p in places[:2] if p["value"])
            out.append(
                f"- **{h['title']}** ({h['severity']}, {count(h['count'], 'connection')}, {percent(h['share'])})"
                + (f" at {cell(at)}" if at else "")
                + f": {cell(h['detail'])} → {cell(h['look_at'])}"
            )
        out.append("")
    if report["errors_by_kind"]:
        rows = [[e["title"], e["count"], e["example"]] for e in report["errors_by_kind"]]
        out += ["### Connection errors", "", *table(["kind", "connections", "commonest error"], rows)]
    if report["by_workload"]:
        out += [f"### {_shown('By source → destination', report, 'by_workload')}", "",
                *table(_PAIR_COLUMNS, _pair_rows(report))]  # fmt: skip
    if report["by_service"]:
        out += [f"### {_shown('By destination service', report, 'by_service')}", "",
                *table(_SERVICE_COLUMNS, _service_rows(report))]  # fmt: skip
    if directions := _directions(report):
        out += [directions, ""]
    if report["by_identity"]:
        rows = [[r["src_identity"] or "-", r["dst_identity"] or "-", r["connections"], r["errors"]]
                for r in report["by_identity"]]  # fmt: skip
        out += ["### By identity (mTLS)", "", *table(["source identity", "destination identity", "connections",
                                                       "errors"], rows)]  # fmt: skip
    buckets = report["timeline"]["buckets"]
    if len(buckets) > 1:
        out += [f"### Over time ({span(report['timeline']['bucket_seconds'])} buckets)", ""]
        out += [
            f"- {name}: `{line}` peak {peak}" for name, line, peak in timeline_lines(buckets, ("connections", "errors"))
        ]
        out.append("")
    return out
