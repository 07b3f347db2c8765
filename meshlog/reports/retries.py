"""Retries: how many attempts requests took, which clusters retry most, and how retries ended.

``%UPSTREAM_REQUEST_ATTEMPT_COUNT%`` (or an ``x-envoy-attempt-count`` header) counts attempts:
1 + retries. Without it, ``URX`` (retry limit exceeded) still shows where retries ran out.
"""

from __future__ import annotations

import polars as pl

from meshlog.filters import has_flag
from meshlog.reports.contract import Retries
from meshlog.reports.traffic import is_error

ATTEMPT_COLUMNS = ("upstream_request_attempt_count", "req_x_envoy_attempt_count", "resp_x_envoy_attempt_count")
_URX = has_flag("URX")


def attempts_column(columns: set[str]) -> str | None:
    return next((c for c in ATTEMPT_COLUMNS if c in columns), None)


def retries_report(requests: pl.DataFrame, *, top: int = 10) -> Retries:
    """Attempt distribution, retried requests and how they ended, clusters by retries and by URX."""
    columns = set(requests.columns)
    lf = requests.lazy()
    # an attempt count logged as text (a header of another name, a JSON string) counts once it reads as a number
    attempts = attempts_column({c for c in columns if c not in ATTEMPT_COLUMNS or requests.schema[c].is_integer()})
    urx = _URX if "response_flags" in columns else pl.lit(False)
    out: Retries = {
        "attempt_counts": None,
        "retried_requests": None,
        "retried_then_succeeded": None,
        "retried_and_failed": None,
        "retry_limit_exceeded": int(
            (requests.filter(pl.col("response_flags").is_not_null()) if "response_flags" in columns else requests)
            .select(urx.sum())
            .item()
        ),
        "clusters": [],
    }
    if "upstream_cluster" in columns:
        # URX is tested on flagged lines only: turning every row's flags into text costs memory
        flagged = lf.filter(pl.col("response_flags").is_not_null()) if "response_flags" in columns else lf
        exceeded = flagged.group_by("upstream_cluster").agg(urx.sum().alias("retry_limit_exceeded"))
        by_cluster = (
            lf.group_by("upstream_cluster")
            .agg(
                pl.len().alias("requests"),
                *((pl.col(attempts) - 1).clip(lower_bound=0).sum().alias("retries"),) if attempts else (),
            )
            .join(exceeded, on="upstream_cluster", how="left", nulls_equal=True)
            .with_columns(pl.col("retry_limit_exceeded").fill_null(0))
            .select("upstream_cluster", "requests", "retry_limit_exceeded", *(("retries",) if attempts else ()))
        )
        key = "retries" if attempts else "retry_limit_exceeded"
        out["clusters"] = (
            by_cluster.filter(pl.col(key) > 0)
            .drop_nulls("upstream_cluster")
            .sort([key, "upstream_cluster"], descending=[True, False])
            .head(top)
            .collect()
            .to_dicts()
        )
    if attempts:
        a = pl.col(attempts)
        error = is_error(columns)
        out["attempt_counts"] = (
            lf.group_by(a.alias("attempts")).agg(pl.len().cast(pl.Int64).alias("count")).drop_nulls("attempts")
            .sort("attempts").collect().to_dicts()
        )  # fmt: skip
        row = requests.select(
            (a > 1).sum().alias("retried"),
            ((a > 1) & ~error).sum().alias("ok"),
            ((a > 1) & error).sum().alias("failed"),
        ).row(0, named=True)
        out["retried_requests"] = int(row["retried"])
        out["retried_then_succeeded"] = int(row["ok"])
        out["retried_and_failed"] = int(row["failed"])
    return out
