"""Quantiles from cumulative histogram buckets, the way Prometheus' ``histogram_quantile`` does it.

Both metric sources end here: bucket increases fetched from Prometheus and bucket deltas between
two sidecar scrapes. Using Prometheus' own interpolation (linear inside the bucket, 0 as the lower
bound of the first bucket, the last finite bound when the rank falls in ``+Inf``) means a p99 shown
by meshlog is the p99 a Grafana panel shows for the same window.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

QUANTILES = (0.5, 0.9, 0.99)


def quantile_name(q: float) -> str:
    return f"p{round(q * 100):d}_ms"


def quantiles(buckets: pl.DataFrame, by: Sequence[str], qs: Sequence[float] = QUANTILES) -> pl.DataFrame:
    """``by`` columns + ``le`` (float, ``inf`` for +Inf) + ``count`` (cumulative) → one row per group
    with ``p50_ms``-style columns, null where Prometheus gives NaN (no observations, no +Inf bucket)."""
    keys = list(by) or ["_"]  # one unnamed group when no columns are given
    if not by:
        buckets = buckets.with_columns(_=pl.lit(0))
    rows = (
        buckets.group_by([*keys, "le"])
        .agg(pl.col("count").sum())  # the same bound spelled twice is one bucket
        .sort([*keys, "le"])
        .with_columns(
            pl.col("count").cum_max().over(keys).alias("cum"),  # never down (Prometheus' ensureMonotonic)
            pl.col("le").shift(1).over(keys).fill_null(0.0).alias("lower"),
        )
        .with_columns(
            pl.col("cum").shift(1).over(keys).fill_null(0.0).alias("below"),
            pl.col("cum").last().over(keys).alias("total"),
            pl.col("le").filter(pl.col("le") < float("inf")).max().over(keys).alias("last_finite"),
            (pl.col("le").max().over(keys) == float("inf")).alias("has_inf"),
            pl.len().over(keys).alias("n"),
            pl.int_range(pl.len()).over(keys).alias("i"),
        )
    )
    groups = rows.select(keys).unique(maintain_order=True)
    for q in qs:
        rank = q * pl.col("total")
        hit = (
            rows.filter(pl.col("cum") >= rank)
            .group_by(keys, maintain_order=True)
            .first()
            .select(
                *keys,
                pl.when(~pl.col("has_inf") | (pl.col("n") < 2) | (pl.col("total") <= 0))
                .then(None)
                .when(pl.col("i") == pl.col("n") - 1)
                .then(pl.col("last_finite"))
                .when((pl.col("i") == 0) & (pl.col("le") <= 0))
                .then(pl.col("le"))
                .otherwise(
                    pl.col("lower")
                    + (pl.col("le") - pl.col("lower")) * (rank - pl.col("below")) / (pl.col("cum") - pl.col("below"))
                )
                .cast(pl.Float64)
                .alias(quantile_name(q)),
            )
        )
        groups = groups.join(hit, on=keys, how="left", nulls_equal=True)
    return groups if by else groups.drop("_")
