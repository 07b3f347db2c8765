"""Who sent what, and how much of it failed: overview, status codes and classes, top error paths."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import polars as pl


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


def columns_of(frame: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """Column names of an eager or a lazy frame (reports take both)."""
    return frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns


def overview(requests: pl.DataFrame) -> dict[str, Any]:
    """Requests, their time span, rate and error ratio (see ``is_error``)."""
    columns = set(requests.columns)
    n = requests.height
    row = requests.select(
        (pl.col("start_time").min() if "start_time" in columns else pl.lit(None)).alias("start"),
        (pl.col("start_time").max() if "start_time" in columns else pl.lit(None)).alias("end"),
        is_error(columns).sum().alias("errors"),
        (pl.col("response_code") >= 500).sum().alias("5xx") if "response_code" in columns else pl.lit(0).alias("5xx"),
        (pl.col("response_code") == 0).sum().alias("0") if "response_code" in columns else pl.lit(0).alias("0"),
        (is_error(columns) & pl.col("path").is_null()).sum().alias("pathless")
        if "path" in columns
        else pl.lit(None).alias("pathless"),
    ).row(0, named=True)
    span = (row["end"] - row["start"]).total_seconds() if row["start"] is not None and row["end"] is not None else 0.0
    return {
        "requests": n,
        "seconds": span,
        "requests_per_s": n / span if span > 0 else None,
        "errors": int(row["errors"] or 0),
        "error_ratio": (row["errors"] or 0) / n if n else 0.0,
        "status_5xx": int(row["5xx"] or 0),
        "status_0": int(row["0"] or 0),
        "errors_without_path": None if row["pathless"] is None else int(row["pathless"]),
    }


def response_codes(requests: pl.LazyFrame) -> pl.LazyFrame:
    """Requests per status code, most frequent first."""
    return (
        requests.group_by(pl.col("response_code").alias("code"))
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .drop_nulls("code")
        .sort(["count", "code"], descending=[True, False])
    )


def status_classes(requests: pl.LazyFrame) -> pl.LazyFrame:
    """Requests per class: ``0`` (no response), ``2xx`` … ``5xx``."""
    code = pl.col("response_code")
    klass = pl.when(code == 0).then(pl.lit("0")).otherwise((code // 100).cast(pl.String) + "xx")
    return (
        requests.group_by(klass.alias("class"))
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .drop_nulls("class")
        .sort("class")
    )


def top_errors(requests: pl.LazyFrame, by: str, *, top: int = 10) -> pl.LazyFrame:
    """The values of ``by`` (path, authority) with the most errors, and their share of *all* errors: the
    errors without a value (TCP has no path) count in the denominator, so shares never overstate."""
    errors = requests.filter(is_error(columns_of(requests)))
    return (
        errors.group_by(by)
        .agg(pl.len().cast(pl.Int64).alias("errors"))
        .with_columns((pl.col("errors") / pl.col("errors").sum()).alias("share_of_errors"))
        .drop_nulls(by)
        .sort(["errors", by], descending=[True, False])
        .head(top)
    )
