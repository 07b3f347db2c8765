"""Everything ``summarize`` shows, as plain data: one function renders a summary state into the reports.

The keys of ``summary_dict`` include the ``summarize -o json`` contract of architecture.md
(``lines, format, time_range, requests, response_codes, response_flags, latency, retries,
hints``); the rest are additions. Every value is read from the state alone (``reports.state``),
so a state built on Spark renders here exactly as one built from local chunks.
"""

from __future__ import annotations

from typing import Any, cast

import polars as pl

from meshlog.formats.compiler import CompiledFormat
from meshlog.parse import AccessLog
from meshlog.parse.tally import Tally
from meshlog.reports import failures, latency, retries, timeline, traffic
from meshlog.reports.connections import connections_report
from meshlog.reports.contract import Latency, Overview, Summary, UnparsedLine
from meshlog.reports.hints import hints
from meshlog.reports.state import SLOWEST_COLUMNS, SummaryState, state_of


def iso_z(value: Any) -> str | None:
    """A UTC time as ISO-8601 with ``Z`` (what every JSON output writes)."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts()


def summary_dict(
    state: SummaryState, fmt: CompiledFormat | None, *, top: int = 10, by: str = "upstream_cluster"
) -> Summary:
    """All reports for one summary state (the ``-o json`` document: ``reports.contract``)."""
    cols = state.columns
    counts = state.tally.counts
    over = traffic.overview(state)
    has_code = "response_code" in cols
    has_duration = "duration" in cols
    has_ust = "upstream_service_time" in cols
    lat: Latency = {
        "duration": latency.latency(state.durations, "duration") if has_duration else None,
        "upstream_service_time": latency.latency(state.upstream_times, "upstream_service_time") if has_ust else None,
        "proxy_and_network": latency.latency(state.gaps, "gap") if has_duration and has_ust else None,
        "by_upstream_cluster": _rows(latency.latency_by(state, "upstream_cluster", top=top))
        if "upstream_cluster" in cols and has_duration
        else [],
    }
    if by != "upstream_cluster" and by in cols and has_duration:
        lat[f"by_{by}"] = _rows(latency.latency_by(state, by, top=top))  # type: ignore[literal-required]
    if has_duration:
        shown = [c for c in SLOWEST_COLUMNS if c in state.slowest.columns]
        lat["slowest"] = [
            {k: (iso_z(v) if k == "start_time" else v) for k, v in r.items()}
            for r in _rows(latency.slowest(state, shown, top=min(top, 5)))
        ]
    step, frame = timeline.timeline(state)
    buckets = [
        {k: v for k, v in r.items() if k != "start_time"} | {"start": iso_z(r["start_time"])} for r in _rows(frame)
    ]
    overview: Overview = {
        "requests_per_s": over["requests_per_s"], "errors": over["errors"], "error_ratio": over["error_ratio"],
        "status_5xx": over["status_5xx"], "status_0": over["status_0"],
        "errors_without_path": over["errors_without_path"],
    }  # fmt: skip
    kinds = state.tally.other_kinds
    examples = state.tally.examples
    return {
        "lines": {"total": counts.total, "access": counts.access, "unparsed": counts.unparsed, "other": counts.other},
        "format": ({"name": fmt.name, "string": fmt.source} if fmt else {"name": None, "string": None}),
        "time_range": {"start": iso_z(state.start), "end": iso_z(state.end)},
        "requests": state.total,
        "overview": overview,
        "other_lines": sorted(
            ({"kind": k, "count": n} for k, n in kinds.items()), key=lambda o: (-o["count"], o["kind"])
        ),
        "unparsed_lines": cast(list[UnparsedLine], _rows(examples.head(top).select("source", "line_no", "reason"))),
        "response_codes": _rows(traffic.response_codes(state)) if has_code else [],
        "status_classes": _rows(traffic.status_classes(state)) if has_code else [],
        "top_error_paths": _rows(traffic.top_errors(state, "path", top=top)) if "path" in cols and has_code else [],
        "top_error_authorities": _rows(traffic.top_errors(state, "authority", top=top))
        if "authority" in cols and has_code
        else [],
        "response_flags": failures.flags_report(state, top=3),
        "error_details": _rows(failures.error_details(state, top=top))
        if "response_code_details" in cols and has_code
        else [],
        "transport_failures": _rows(failures.transport_failures(state, top=top))
        if "upstream_transport_failure_reason" in cols and has_code
        else [],
        "latency": lat,
        "retries": retries.retries_report(state, top=top),
        "timeline": {"bucket_seconds": step, "buckets": buckets},
        "hints": hints(state),
        "connections": connections_report(state.l4, top=top, records=state.tally.connections),
    }


def summarize_log(
    log: AccessLog, *, top: int = 10, by: str = "upstream_cluster", tally: Tally | None = None
) -> Summary:
    """The summary of a log held in memory (the TUI, tests): its state, rendered. ``tally``: the
    input's accounting when ``log`` is a part of it (filtered, or without its other lines)."""
    state = state_of(log.requests, by=by).with_connections(log.connections).with_tally(tally or Tally.of(log))
    return summary_dict(state, log.format, top=top, by=by)


def by_table(state: SummaryState, by: str, *, top: int = 10) -> pl.DataFrame:
    """One row per value of ``by``: requests, errors, error ratio and duration percentiles (for ``-o csv``)."""
    if by not in state.requests.columns:
        return pl.DataFrame({by: []})
    table = latency.per_value(state, by)
    if "duration" not in state.columns:
        table = table.drop(*latency.QUANTILES)
    return (
        table.with_columns((pl.col("errors") / pl.col("requests")).alias("error_ratio"))
        .sort(["requests", by], descending=[True, False], nulls_last=True)
        .head(top)
    )
