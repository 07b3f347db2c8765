"""The first summary: line accounting, status codes, response flags, latency, retries.

Pure functions over the requests frame; the CLI renders what they return. The keys of
``summary_dict`` are the ``summarize -o json`` contract (architecture.md).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from meshlog.flags import describe
from meshlog.parse import AccessLog

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def response_codes(requests: pl.LazyFrame) -> pl.LazyFrame:
    """Requests per status code, most frequent first."""
    return (
        requests.group_by(pl.col("response_code").alias("code"))
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .drop_nulls("code")
        .sort(["count", "code"], descending=[True, False])
    )


def response_flags(requests: pl.LazyFrame) -> pl.LazyFrame:
    """Lines per flag; ``UF,URX`` counts once for UF and once for URX."""
    return (
        requests.select(pl.col("response_flags").str.split(",").alias("flag"))
        .explode("flag")
        .drop_nulls("flag")
        .filter(pl.col("flag") != "")
        .group_by("flag")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort(["count", "flag"], descending=[True, False])
    )


def _percentiles(col: str) -> list[pl.Expr]:
    return [pl.col(col).quantile(q, interpolation="linear").alias(k) for k, q in QUANTILES.items()]


def latency(requests: pl.LazyFrame, column: str) -> pl.LazyFrame:
    """p50/p90/p99/max of one duration column (milliseconds)."""
    return requests.select(*_percentiles(column), pl.col(column).max().cast(pl.Float64).alias("max"))


def latency_by_cluster(requests: pl.LazyFrame) -> pl.LazyFrame:
    """Request count and duration percentiles per upstream cluster, slowest p99 first."""
    return (
        requests.group_by("upstream_cluster")
        .agg(pl.len().cast(pl.Int64).alias("requests"), *_percentiles("duration"))
        .drop_nulls("upstream_cluster")
        .sort(["p99", "upstream_cluster"], descending=[True, False], nulls_last=True)
    )


def attempt_counts(requests: pl.LazyFrame) -> pl.LazyFrame:
    """How many requests took N upstream attempts."""
    return (
        requests.group_by(pl.col("upstream_request_attempt_count").alias("attempts"))
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .drop_nulls("attempts")
        .sort("attempts")
    )


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts()


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def summary_dict(log: AccessLog, *, top: int = 10) -> dict[str, Any]:
    """Everything ``summarize`` shows, as plain data with the contract's keys."""
    req = log.requests.lazy()
    cols = set(log.requests.columns)
    counts = log.counts
    out: dict[str, Any] = {
        "lines": {"total": counts.total, "access": counts.access, "unparsed": counts.unparsed, "other": counts.other},
        "format": {"name": log.format.name, "string": log.format.source},
    }
    if "start_time" in cols:
        start, end = log.requests.select(
            pl.col("start_time").min().alias("a"), pl.col("start_time").max().alias("b")
        ).row(0)
    else:
        start = end = None
    out["time_range"] = {"start": _iso(start), "end": _iso(end)}
    out["requests"] = counts.access
    out["response_codes"] = _records(response_codes(req).collect()) if "response_code" in cols else []
    flags = _records(response_flags(req).collect()) if "response_flags" in cols else []
    out["response_flags"] = [
        {
            "flag": f["flag"],
            "name": describe(f["flag"]).name,
            "meaning": describe(f["flag"]).meaning,
            "count": f["count"],
        }
        for f in flags
    ]
    out["latency"] = {
        "duration": latency(req, "duration").collect().row(0, named=True) if "duration" in cols else None,
        "upstream_service_time": (
            latency(req, "upstream_service_time").collect().row(0, named=True)
            if "upstream_service_time" in cols
            else None
        ),
        "by_upstream_cluster": (
            _records(latency_by_cluster(req).head(top).collect()) if {"upstream_cluster", "duration"} <= cols else []
        ),
    }
    has_attempts = "upstream_request_attempt_count" in cols
    urx = next((f["count"] for f in flags if f["flag"] == "URX"), 0)
    out["retries"] = {
        "attempt_counts": _records(attempt_counts(req).collect()) if has_attempts else None,
        "retried_requests": (
            int(log.requests.select((pl.col("upstream_request_attempt_count") > 1).sum()).item())
            if has_attempts
            else None
        ),
        "retry_limit_exceeded": urx,
    }
    out["hints"] = []
    return out
