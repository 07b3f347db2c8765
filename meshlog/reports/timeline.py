"""Requests, errors and p99 per time bucket, bucket size chosen from the span, so a spike (or a gap) shows."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from meshlog.reports.latency import nearest

if TYPE_CHECKING:
    from meshlog.reports.state import SummaryState

_STEPS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86400)


def bucket_seconds(span: dt.timedelta, *, buckets: int = 40) -> int:
    """The smallest round step that cuts ``span`` into at most ``buckets`` buckets."""
    seconds = span.total_seconds()
    return next((s for s in _STEPS if seconds / s <= buckets), _STEPS[-1])


def timeline(state: SummaryState) -> tuple[int, pl.DataFrame]:
    """(bucket seconds, frame of bucket start, requests, errors, p99 duration): every bucket from the first
    request to the last, empty ones with 0 requests and a null p99. The buckets are the state's grid
    cells: its step is already the one the span asks for (``reports.state``)."""
    grid, step = state.grid, state.step
    if not grid.height or step == 0:
        return 0, pl.DataFrame()
    per_cell = grid.group_by("cell").agg(pl.col("requests").sum(), pl.col("errors").sum())
    if "duration" in grid.columns:
        spread = grid.lazy().filter(pl.col("duration").is_not_null()).sort("duration")
        p99 = spread.group_by("cell").agg(nearest("duration", 0.99, "requests").alias("p99")).collect()
        per_cell = per_cell.join(p99, on="cell", how="left")
    else:
        per_cell = per_cell.with_columns(pl.lit(None, pl.Float64).alias("p99"))
    first, last = per_cell["cell"].min(), per_cell["cell"].max()
    # every bucket of the span, the empty ones too: a gap in traffic is a finding, not a missing bar
    every = pl.DataFrame({"cell": pl.int_range(first, last + 1, dtype=pl.Int64, eager=True)})  # type: ignore[arg-type, operator]
    frame = every.join(per_cell, on="cell", how="left").sort("cell")
    frame = frame.select(
        (pl.col("cell") * step * 1_000_000).cast(pl.Datetime("us", "UTC")).alias("start_time"),
        pl.col("requests").fill_null(0),
        pl.col("errors").fill_null(0),
        "p99",
    )
    return step, frame
