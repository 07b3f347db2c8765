"""Retries: how many attempts requests took, which clusters retry most, and how retries ended.

``%UPSTREAM_REQUEST_ATTEMPT_COUNT%`` (or an ``x-envoy-attempt-count`` header) counts attempts:
1 + retries. Without it, ``URX`` (retry limit exceeded) still shows where retries ran out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from meshlog.filters import has_flag
from meshlog.reports.contract import Retries

if TYPE_CHECKING:
    from meshlog.reports.state import SummaryState

_URX = has_flag("URX")


def retries_report(state: SummaryState, *, top: int = 10) -> Retries:
    """Attempt distribution, retried requests and how they ended, clusters by retries and by URX."""
    req, columns = state.requests, state.columns
    attempts = "retries" in req.columns  # the state counted an attempt column (an integer one)
    n = pl.col("n")
    urx = n.filter(_URX).sum() if "response_flags" in columns else pl.lit(0)
    out: Retries = {
        "attempt_counts": None,
        "retried_requests": None,
        "retried_then_succeeded": None,
        "retried_and_failed": None,
        "retry_limit_exceeded": int(req.select(urx).item() or 0) if req.height else 0,
        "clusters": [],
    }
    if "upstream_cluster" in columns:
        by_cluster = req.group_by("upstream_cluster").agg(
            n.sum().alias("requests"),
            urx.alias("retry_limit_exceeded"),
            *((pl.col("retries").sum(),) if attempts else ()),
        )
        key = "retries" if attempts else "retry_limit_exceeded"
        out["clusters"] = (
            by_cluster.filter(pl.col(key) > 0)
            .drop_nulls("upstream_cluster")
            .sort([key, "upstream_cluster"], descending=[True, False])
            .head(top)
            .to_dicts()
        )
    if attempts:
        out["attempt_counts"] = (
            state.attempts.rename({"n": "count"}).drop_nulls("attempts").sort("attempts").to_dicts()
            if state.attempts.height
            else []
        )
        row = req.select(pl.col("retried").sum(), pl.col("retried_failed").sum()).row(0)
        retried, failed = int(row[0] or 0), int(row[1] or 0)
        out["retried_requests"] = retried
        out["retried_then_succeeded"] = retried - failed
        out["retried_and_failed"] = failed
    return out
