"""How long requests took: percentiles overall and per dimension, proxy+network gap, slowest requests.

``duration`` is the whole request as this proxy saw it; ``upstream_service_time`` is what the
upstream took (Envoy's ``x-envoy-upstream-service-time``). Their difference is time spent in
the proxy and the network (and retries), which points at the mesh rather than the app.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def percentiles(col: str | pl.Expr) -> list[pl.Expr]:
    """p50/p90/p99 by linear interpolation (numpy's default), to the microsecond: interpolating
    whole milliseconds leaves binary noise (277.6000000000001) that nobody should have to read."""
    expr = pl.col(col) if isinstance(col, str) else col
    return [expr.quantile(q, interpolation="linear").round(3).alias(k) for k, q in QUANTILES.items()]


def latency(requests: pl.LazyFrame, column: str) -> pl.LazyFrame:
    """p50/p90/p99/max of one duration column (milliseconds)."""
    return requests.select(*percentiles(column), pl.col(column).max().cast(pl.Float64).alias("max"))


def gap(requests: pl.LazyFrame) -> pl.LazyFrame:
    """p50/p90/p99/max of ``duration - upstream_service_time``: proxy, network and retry time."""
    diff = pl.col("duration") - pl.col("upstream_service_time")
    return requests.select(*percentiles(diff), diff.max().cast(pl.Float64).alias("max"))


def latency_by(requests: pl.LazyFrame, by: str, *, top: int = 10) -> pl.LazyFrame:
    """Request count and duration percentiles per value of ``by``, slowest p99 first."""
    return (
        requests.group_by(by)
        .agg(pl.len().cast(pl.Int64).alias("requests"), *percentiles("duration"))
        .drop_nulls(by)
        .sort(["p99", by], descending=[True, False], nulls_last=True)
        .head(top)
    )


def slowest(requests: pl.LazyFrame, columns: Sequence[str], *, top: int = 10) -> pl.LazyFrame:
    """The slowest requests with the columns that say what they were."""
    return requests.sort("duration", descending=True, nulls_last=True).head(top).select(columns)


# Envoy's histogram bounds up to 10 s (ms): a per-cluster shape that reads as a sparkline.
HISTOGRAM_BOUNDS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def histogram(requests: pl.LazyFrame, by: str, bounds: Sequence[float] = HISTOGRAM_BOUNDS) -> pl.DataFrame:
    """Requests per duration bucket (``<= bound``, last bucket open) for each value of ``by``:
    one row per value, a ``counts`` list with ``len(bounds) + 1`` entries."""
    bucket = pl.lit(len(bounds))
    for i, bound in reversed(list(enumerate(bounds))):
        bucket = pl.when(pl.col("duration") <= bound).then(i).otherwise(bucket)
    per = requests.filter(pl.col("duration").is_not_null()).group_by(by, bucket.alias("bucket")).len().collect()
    full = (
        per.select(by)
        .unique()
        .join(pl.DataFrame({"bucket": list(range(len(bounds) + 1))}, schema={"bucket": pl.Int32}), how="cross")
    )
    return (
        full.join(per.with_columns(pl.col("bucket").cast(pl.Int32)), on=[by, "bucket"], how="left")
        .with_columns(pl.col("len").fill_null(0))
        .sort(by, "bucket")
        .group_by(by, maintain_order=True)
        .agg(pl.col("len").alias("counts"))
    )
