"""Who sent what, and how much of it failed: overview, status codes and classes, top error paths."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from meshlog.reports.state import SummaryState


def is_error(columns: Collection[str]) -> pl.Expr:
    """A 5xx, or code 0 (no response reached the client) with a response flag saying why.

    A TCP connection always logs code 0, also when it went well: then it carries no flag, and it
    is not an error. Without a flags column every 0 counts.
    """
    if "response_code" not in columns:
        return pl.lit(False)
    code = pl.col("response_code")
    if "response_flags" not in columns:
        return (code >= 500) | (code == 0)
    return (code >= 500) | ((code == 0) & pl.col("response_flags").is_not_null())


def errors_filter(columns: Collection[str]) -> str:
    """``is_error`` in the ``--where`` language (the TUI's "only errors")."""
    if "response_flags" not in columns:
        return "response_code>=500 or response_code=0"
    return "response_code>=500 or (response_code=0 and response_flags~.)"


def overview(state: SummaryState) -> dict[str, Any]:
    """Requests, their time span, rate and error ratio (see ``is_error``)."""
    req, columns = state.requests, state.columns
    n = state.total
    code = pl.col("response_code")
    row = req.select(
        pl.col("errors").sum().alias("errors"),
        pl.col("n").filter(code >= 500).sum().alias("5xx") if "response_code" in columns else pl.lit(0).alias("5xx"),
        pl.col("n").filter(code == 0).sum().alias("0") if "response_code" in columns else pl.lit(0).alias("0"),
        pl.col("errors_no_path").sum().alias("pathless") if "path" in columns else pl.lit(None).alias("pathless"),
    ).row(0, named=True)
    start, end = state.start, state.end
    span = (end - start).total_seconds() if start is not None and end is not None else 0.0
    return {
        "requests": n,
        "seconds": span,
        "requests_per_s": n / span if span > 0 else None,
        "errors": int(row["errors"] or 0),
        "error_ratio": (row["errors"] or 0) / n if n else 0.0,
        "status_5xx": int(row["5xx"] or 0),
        "status_0": int(row["0"] or 0),
        "errors_without_path": None if "path" not in columns else int(row["pathless"] or 0),
    }


def response_codes(state: SummaryState) -> pl.DataFrame:
    """Requests per status code, most frequent first."""
    return (
        state.requests.group_by(pl.col("response_code").alias("code"))
        .agg(pl.col("n").sum().alias("count"))
        .drop_nulls("code")
        .sort(["count", "code"], descending=[True, False])
    )


def status_classes(state: SummaryState) -> pl.DataFrame:
    """Requests per class: ``0`` (no response), ``2xx`` … ``5xx``."""
    code = pl.col("response_code")
    klass = pl.when(code == 0).then(pl.lit("0")).otherwise((code // 100).cast(pl.String) + "xx")
    return (
        state.requests.group_by(klass.alias("class"))
        .agg(pl.col("n").sum().alias("count"))
        .drop_nulls("class")
        .sort("class")
    )


def top_errors(state: SummaryState, by: str, *, top: int = 10) -> pl.DataFrame:
    """The values of ``by`` (path, authority) with the most errors, and their share of *all* errors: the
    errors without a value (TCP has no path) count in the denominator, so shares never overstate."""
    all_errors = state.requests["errors"].sum() if state.requests.height else 0
    if by == "path":  # paths are not a key of the requests table: failed requests' paths have their own
        errors = state.error_paths.rename({"n": "errors"}) if state.error_paths.height else pl.DataFrame(
            schema={"path": pl.String, "errors": pl.Int64}
        )
    else:
        errors = state.requests.group_by(by).agg(pl.col("errors").sum()).filter(pl.col("errors") > 0)
    return (
        errors.drop_nulls(by)
        .with_columns((pl.col("errors") / all_errors).alias("share_of_errors"))
        .sort(["errors", by], descending=[True, False])
        .head(top)
    )
