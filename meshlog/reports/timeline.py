"""Requests, errors and p99 per time bucket, bucket size chosen from the span, so a spike (or a gap) shows."""

from __future__ import annotations

import datetime as dt

import polars as pl

from meshlog.reports.traffic import is_error

_FILTERED_BUCKETS = 64  # up to this many buckets, p99 is taken bucket by bucket (see ``timeline``)
_STEPS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86400)


def bucket_seconds(span: dt.timedelta, *, buckets: int = 40) -> int:
    """The smallest round step that cuts ``span`` into at most ``buckets`` buckets."""
    seconds = span.total_seconds()
    return next((s for s in _STEPS if seconds / s <= buckets), _STEPS[-1])


def timeline(requests: pl.DataFrame, *, buckets: int = 40) -> tuple[int, pl.DataFrame]:
    """(bucket seconds, frame of bucket start, requests, errors, p99 duration): every bucket from the first
    request to the last, empty ones with 0 requests and a null p99."""
    if "start_time" not in requests.columns or requests.height == 0:
        return 0, pl.DataFrame()
    start, end = requests.select(pl.col("start_time").min().alias("a"), pl.col("start_time").max().alias("b")).row(0)
    if start is None:
        return 0, pl.DataFrame()
    step = bucket_seconds(end - start, buckets=buckets)
    step_us = step * 1_000_000
    first = start.timestamp() * 1_000_000 // step_us * step_us
    # a small bucket number (not a time) keeps the grouping key at 4 bytes a row
    bucket = ((pl.col("start_time").dt.epoch("us") - int(first)) // step_us).cast(pl.Int32)
    has_duration = "duration" in requests.columns
    used = ("response_code", "response_flags", "duration")
    keyed = requests.select(bucket.alias("_b"), *(c for c in used if c in requests.columns))
    keyed = keyed.drop_nulls("_b")
    frame = (  # grouping on the bucket number needs no sort of the whole frame
        keyed.lazy()
        .group_by("_b")
        .agg(
            pl.len().cast(pl.Int64).alias("requests"),
            is_error(keyed.columns).sum().cast(pl.Int64).alias("errors"),
        )
        .sort("_b")
        .collect()
    )
    if has_duration and frame.height <= _FILTERED_BUCKETS:
        # p99 one bucket at a time: a group-by quantile first copies every duration into its group
        # (~130 MB more peak at 10M lines); a filter holds one bucket's durations at a time.
        p99 = keyed.select(
            pl.col("duration").filter(pl.col("_b") == b).quantile(0.99).alias(str(b)) for b in frame["_b"]
        )
        frame = frame.with_columns(pl.Series("p99", p99.row(0) if p99.width else [], dtype=pl.Float64))
    else:
        per_bucket = keyed.group_by("_b").agg(
            (pl.col("duration").quantile(0.99) if has_duration else pl.lit(None)).alias("p99")
        )
        frame = frame.join(per_bucket, on="_b", how="left", maintain_order="left")
    # every bucket of the span, the empty ones too: a gap in traffic is a finding, not a missing bar
    every = pl.DataFrame({"_b": pl.int_range(0, frame["_b"][-1] + 1, dtype=pl.Int32, eager=True)})
    frame = every.join(frame, on="_b", how="left", maintain_order="left").with_columns(
        pl.col("requests", "errors").fill_null(0)
    )
    frame = frame.select(
        (pl.lit(int(first)) + pl.col("_b").cast(pl.Int64) * step_us).cast(pl.Datetime("us", "UTC")).alias("start_time"),
        "requests",
        "errors",
        "p99",
    )
    return step, frame
