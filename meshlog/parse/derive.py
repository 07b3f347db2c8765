"""Columns derived from others: what an Istio cluster name says about a request."""

from __future__ import annotations

import polars as pl

# Istio's special clusters have no "|": name → direction. The sidecar's own, then an ambient
# waypoint's (pilot/pkg/networking/core/waypoint.go): `connect_originate` and its double-HBONE
# inner/outer pair open the HBONE tunnel to the destination, `encap` hands workload-addressed
# traffic to it and an E/W gateway's `forward_inner_connect` passes an inner tunnel on (all
# towards the destination); `main_internal` takes what the HBONE terminator (port 15008) received.
_SPECIAL_CLUSTERS = {
    "PassthroughCluster": "outbound",
    "BlackHoleCluster": "outbound",
    "InboundPassthroughCluster": "inbound",
    "InboundPassthroughClusterIpv4": "inbound",
    "InboundPassthroughClusterIpv6": "inbound",
    "connect_originate": "outbound",
    "inner_connect_originate": "outbound",
    "outer_connect_originate": "outbound",
    "encap": "outbound",
    "forward_inner_connect": "outbound",
    "main_internal": "inbound",
}

DERIVED = ("cluster_direction", "cluster_port", "cluster_subset", "cluster_service", "cluster_protocol")


def cluster_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Split ``direction|port|subset|service`` (``outbound|9080|v1|reviews.default.svc.cluster.local``).

    A waypoint's ``inbound-vip`` clusters carry ``<protocol>[/<subset>]`` in the third part
    (``inbound-vip|9080|http/v2|reviews…``): ``cluster_protocol`` is ``http`` / ``tcp`` there (null
    for every other direction) and ``cluster_subset`` the part after the ``/``. A trailing ``;`` (the
    ``alt_stat_name`` older proxies printed for ``%UPSTREAM_CLUSTER%``) is not part of the name.
    A mesh has few clusters, so the split runs once per distinct name and is joined back.
    """
    if "upstream_cluster" not in frame.columns:
        return frame
    cluster = pl.col("upstream_cluster")
    name = cluster.str.strip_suffix(";")
    parts = name.str.split_exact("|", 3)
    has_parts = name.str.count_matches("|", literal=True) == 3

    def part(i: int) -> pl.Expr:
        value = parts.struct.field(f"field_{i}")
        return pl.when(has_parts & (value != "")).then(value)

    def nonempty(value: pl.Expr) -> pl.Expr:
        return pl.when(value != "").then(value)

    vip = part(0) == "inbound-vip"  # its third part is <protocol>[/<subset>]
    protocol, subset = (nonempty(part(2).str.splitn("/", 2).struct.field(f"field_{i}")) for i in (0, 1))
    names = frame.select(cluster.unique()).with_columns(
        pl.coalesce(part(0), name.replace_strict(_SPECIAL_CLUSTERS, default=None)).alias("cluster_direction"),
        part(1).cast(pl.Int32, strict=False).alias("cluster_port"),
        pl.when(vip).then(subset).otherwise(part(2)).alias("cluster_subset"),
        part(3).alias("cluster_service"),
        pl.when(vip).then(protocol).alias("cluster_protocol"),
    )
    return frame.join(names, on="upstream_cluster", how="left", nulls_equal=True, maintain_order="left")
