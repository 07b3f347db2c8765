"""Columns derived from others: what an Istio cluster name says about a request."""

from __future__ import annotations

import polars as pl

# Istio's special clusters have no "|": name → direction.
_SPECIAL_CLUSTERS = {
    "PassthroughCluster": "outbound",
    "BlackHoleCluster": "outbound",
    "InboundPassthroughCluster": "inbound",
    "InboundPassthroughClusterIpv4": "inbound",
    "InboundPassthroughClusterIpv6": "inbound",
}

DERIVED = ("cluster_direction", "cluster_port", "cluster_subset", "cluster_service")


def cluster_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Split ``direction|port|subset|service`` (``outbound|9080|v1|reviews.default.svc.cluster.local``).

    A mesh has few clusters, so the split runs once per distinct name and is joined back.
    """
    if "upstream_cluster" not in frame.columns:
        return frame
    cluster = pl.col("upstream_cluster")
    parts = cluster.str.split_exact("|", 3)
    has_parts = cluster.str.count_matches("|", literal=True) == 3

    def part(i: int) -> pl.Expr:
        value = parts.struct.field(f"field_{i}")
        return pl.when(has_parts & (value != "")).then(value)

    names = frame.select(cluster.unique()).with_columns(
        pl.coalesce(part(0), cluster.replace_strict(_SPECIAL_CLUSTERS, default=None)).alias("cluster_direction"),
        part(1).cast(pl.Int32, strict=False).alias("cluster_port"),
        part(2).alias("cluster_subset"),
        part(3).alias("cluster_service"),
    )
    return frame.join(names, on="upstream_cluster", how="left", nulls_equal=True, maintain_order="left")
