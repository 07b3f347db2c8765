"""Everything ``summarize`` shows, as plain data: one function assembles the reports.

The keys of ``summary_dict`` include the ``summarize -o json`` contract of architecture.md
(``lines, format, time_range, requests, response_codes, response_flags, latency, retries,
hints``); the rest are additions.
"""

from __future__ import annotations

from typing import Any, cast

import polars as pl

from meshlog.parse import AccessLog, LineCounts
from meshlog.reports import failures, latency, retries, timeline, traffic
from meshlog.reports.compact import SLOWEST_COLUMNS
from meshlog.reports.contract import Latency, Overview, Percentiles, Summary, UnparsedLine
from meshlog.reports.hints import hints


def iso_z(value: Any) -> str | None:
    """A UTC time as ISO-8601 with ``Z`` (what every JSON output writes)."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")


_iso = iso_z


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts()


def summary_dict(
    log: AccessLog,
    *,
    top: int = 10,
    by: str = "upstream_cluster",
    lines: LineCounts | None = None,
    other_kinds: dict[str, int] | None = None,
    slowest: pl.DataFrame | None = None,
) -> Summary:
    """All reports for one access log (the ``-o json`` document: ``reports.contract``).

    ``lines`` is the whole input's accounting when ``log`` was filtered or compacted; ``other_kinds``
    and ``slowest`` stand in for ``log.other`` and the slowest rows when they were folded in chunk
    by chunk (``reports.compact``).
    """
    req = log.requests
    lf = req.lazy()
    cols = set(req.columns)
    counts = lines or log.counts
    over = traffic.overview(req)
    start, end = (
        req.select(pl.col("start_time").min().alias("a"), pl.col("start_time").max().alias("b")).row(0)
        if "start_time" in cols
        else (None, None)
    )
    has_code = "response_code" in cols
    has_duration = "duration" in cols
    has_ust = "upstream_service_time" in cols
    kinds = other_kinds or dict(log.other.group_by("kind").len().iter_rows())
    lat: Latency = {
        "duration": _percentiles(latency.latency(lf, "duration")) if has_duration else None,
        "upstream_service_time": _percentiles(latency.latency(lf, "upstream_service_time")) if has_ust else None,
        "proxy_and_network": _percentiles(latency.gap(lf)) if has_duration and has_ust else None,
        "by_upstream_cluster": _rows(latency.latency_by(lf, "upstream_cluster", top=top).collect())
        if {"upstream_cluster"} <= cols and has_duration
        else [],
    }
    if by != "upstream_cluster" and by in cols and has_duration:
        lat[f"by_{by}"] = _rows(latency.latency_by(lf, by, top=top).collect())  # type: ignore[literal-required]
    if has_duration:
        source = slowest if slowest is not None else req
        shown = [c for c in SLOWEST_COLUMNS if c in source.columns]
        lat["slowest"] = [
            {k: (_iso(v) if k == "start_time" else v) for k, v in r.items()}
            for r in _rows(latency.slowest(source.lazy(), shown, top=min(top, 5)).collect())
        ]
    step, frame = timeline.timeline(req)
    buckets = [
        {k: v for k, v in r.items() if k != "start_time"} | {"start": _iso(r["start_time"])} for r in _rows(frame)
    ]
    overview: Overview = {
        "requests_per_s": over["requests_per_s"], "errors": over["errors"], "error_ratio": over["error_ratio"],
        "status_5xx": over["status_5xx"], "status_0": over["status_0"],
        "errors_without_path": over["errors_without_path"],
    }  # fmt: skip
    return {
        "lines": {"total": counts.total, "access": counts.access, "unparsed": counts.unparsed, "other": counts.other},
        "format": (
            {"name": log.format.name, "string": log.format.source} if log.format else {"name": None, "string": None}
        ),
        "time_range": {"start": _iso(start), "end": _iso(end)},
        "requests": req.height,
        "overview": overview,
        "other_lines": sorted(
            ({"kind": k, "count": n} for k, n in kinds.items()), key=lambda o: (-o["count"], o["kind"])
        ),
        "unparsed_lines": cast(list[UnparsedLine], _rows(log.unparsed.head(top).select("source", "line_no", "reason"))),
        "response_codes": _rows(traffic.response_codes(lf).collect()) if has_code else [],
        "status_classes": _rows(traffic.status_classes(lf).collect()) if has_code else [],
        "top_error_paths": _rows(traffic.top_errors(lf, "path", top=top).collect())
        if {"path"} <= cols and has_code
        else [],
        "top_error_authorities": _rows(traffic.top_errors(lf, "authority", top=top).collect())
        if {"authority"} <= cols and has_code
        else [],
        "response_flags": failures.flags_report(req, top=3),
        "error_details": _rows(failures.error_details(lf, top=top).collect())
        if {"response_code_details"} <= cols and has_code
        else [],
        "transport_failures": _rows(failures.transport_failures(lf, top=top).collect())
        if {"upstream_transport_failure_reason"} <= cols and has_code
        else [],
        "latency": lat,
        "retries": retries.retries_report(req, top=top),
        "timeline": {"bucket_seconds": step, "buckets": buckets},
        "hints": hints(req),
    }


def _percentiles(frame: pl.LazyFrame) -> Percentiles:
    return cast(Percentiles, frame.collect().row(0, named=True))


def by_table(requests: pl.DataFrame, by: str, *, top: int = 10) -> pl.DataFrame:
    """One row per value of ``by``: requests, errors, error ratio and duration percentiles (for ``-o csv``)."""
    if by not in requests.columns:
        return pl.DataFrame({by: []})
    has_duration = "duration" in requests.columns
    return (
        requests.lazy()
        .group_by(by)
        .agg(
            pl.len().cast(pl.Int64).alias("requests"),
            traffic.is_error(requests.columns).sum().cast(pl.Int64).alias("errors"),
            *(latency.percentiles("duration") if has_duration else ()),
        )
        .with_columns((pl.col("errors") / pl.col("requests")).alias("error_ratio"))
        .sort(["requests", by], descending=[True, False], nulls_last=True)
        .head(top)
        .collect()
    )
