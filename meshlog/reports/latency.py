"""How long requests took: percentiles overall and per dimension, proxy+network gap, slowest requests.

``duration`` is the whole request as this proxy saw it; ``upstream_service_time`` is what the
upstream took (Envoy's ``x-envoy-upstream-service-time``). Their difference is time spent in
the proxy and the network (and retries), which points at the mesh rather than the app.

Percentiles are read from counts per distinct value (``reports.state``): Envoy prints whole
milliseconds, so the counts are the sorted values themselves, and the percentile is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import polars as pl

from meshlog.reports.contract import Percentiles

if TYPE_CHECKING:
    from meshlog.reports.state import SummaryState

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def quantiles(value: str, count: str = "n") -> list[pl.Expr]:
    """p50/p90/p99 of ``value`` from rows (value, ``count``) sorted by value, in a select or a group's
    agg: linear interpolation between the two ranks around ``q·(n−1)`` (numpy's default, and polars'
    ``quantile(q, "linear")`` over the raw values, to the last bit), rounded to the microsecond so
    interpolated whole milliseconds leave no binary noise (277.6000000000001)."""
    v, n = pl.col(value), pl.col(count)
    total = n.sum()
    seen = n.cum_sum()  # rows up to and including each value
    out = []
    for name, q in QUANTILES.items():
        rank = (total - 1).cast(pl.Float64) * q
        lo = rank.floor()
        hi = pl.min_horizontal(lo + 1, (total - 1).cast(pl.Float64))
        at_lo = v.filter(seen > lo).first()
        at_hi = v.filter(seen > hi).first()
        out.append((at_lo + (rank - lo) * (at_hi - at_lo)).cast(pl.Float64).round(3).alias(name))
    return out


def nearest(value: str, q: float, count: str = "n") -> pl.Expr:
    """The ``q`` quantile of ``value`` from sorted (value, ``count``) rows, as polars' default
    ``quantile(q)`` picks it over the raw values: the value at rank round(q·(n−1)) (the timeline's p99)."""
    n = pl.col(count)
    rank = ((n.sum() - 1).cast(pl.Float64) * q + 0.5).floor()
    return pl.col(value).filter(n.cum_sum() > rank).first().cast(pl.Float64)


def _known(counts: pl.DataFrame, value: str) -> pl.LazyFrame:
    return counts.lazy().filter(pl.col(value).is_not_null()).sort(value)


def latency(counts: pl.DataFrame, value: str) -> Percentiles:
    """p50/p90/p99/max of one duration column (milliseconds) from its counts."""
    if value not in counts.columns:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    known = _known(counts, value)
    row = known.select(*quantiles(value), pl.col(value).max().cast(pl.Float64).alias("max")).collect()
    return cast(Percentiles, row.row(0, named=True))


def latency_by(state: SummaryState, by: str, *, top: int = 10) -> pl.DataFrame:
    """Request count and duration percentiles per value of ``by``, slowest p99 first."""
    return (
        per_value(state, by)
        .drop_nulls(by)
        .sort(["p99", by], descending=[True, False], nulls_last=True)
        .head(top)
        .select(by, "requests", *QUANTILES)
    )


def per_value(state: SummaryState, by: str) -> pl.DataFrame:
    """Per value of ``by`` (null too): requests, errors and the duration percentiles."""
    requests = state.requests.group_by(by).agg(
        pl.col("n").sum().alias("requests"), pl.col("errors").sum().alias("errors")
    )
    if "duration" not in state.columns or by not in state.durations.columns:
        return requests.with_columns(pl.lit(None, pl.Float64).alias(k) for k in QUANTILES)
    spread = _known(state.durations.group_by(by, "duration").agg(pl.col("n").sum()), "duration")
    ranks = spread.group_by(by).agg(quantiles("duration")).collect()
    return requests.join(ranks, on=by, how="left", nulls_equal=True)


def slowest(state: SummaryState, columns: Sequence[str], *, top: int = 10) -> pl.DataFrame:
    """The slowest requests with the columns that say what they were (ties in input order)."""
    return state.slowest.head(top).select(columns)


# Envoy's histogram bounds up to 10 s (ms): a per-cluster shape that reads as a sparkline.
HISTOGRAM_BOUNDS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def histogram(state: SummaryState, by: str, bounds: Sequence[float] = HISTOGRAM_BOUNDS) -> pl.DataFrame:
    """Requests per duration bucket (``<= bound``, last bucket open) for each value of ``by``, from the
    state's duration counts: one row per value, a ``counts`` list with ``len(bounds) + 1`` entries."""
    counts = state.durations
    if by not in counts.columns or "duration" not in counts.columns:
        return pl.DataFrame({by: [], "counts": []})
    bucket = pl.lit(len(bounds))
    for i, bound in reversed(list(enumerate(bounds))):
        bucket = pl.when(pl.col("duration") <= bound).then(i).otherwise(bucket)
    per = (
        counts.filter(pl.col("duration").is_not_null())
        .group_by(by, bucket.cast(pl.Int32).alias("bucket"))
        .agg(pl.col("n").sum())
    )
    full = per.select(by).unique().join(
        pl.DataFrame({"bucket": list(range(len(bounds) + 1))}, schema={"bucket": pl.Int32}), how="cross"
    )
    return (
        full.join(per, on=[by, "bucket"], how="left", nulls_equal=True)
        .with_columns(pl.col("n").fill_null(0))
        .sort(by, "bucket")
        .group_by(by, maintain_order=True)
        .agg(pl.col("n").alias("counts"))
    )
