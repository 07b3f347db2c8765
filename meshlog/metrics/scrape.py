"""Metrics straight from a sidecar (``kubectl port-forward pod/x 15020`` or 15090): two scrapes, deltas.

No Prometheus needed in the middle of an incident. Two snapshots at least 6 s apart because Envoy
moves histogram buckets only on its stats flush (every 5 s); counters move at once. A counter that
goes down between the snapshots means the proxy restarted: its delta is then its new value.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import polars as pl

from meshlog.errors import UnreachableError
from meshlog.metrics.exposition import Exposition, label, parse_exposition, series_key
from meshlog.metrics.families import CLUSTER_LABELS, ENVOY_FAMILIES, RATE_LIMIT_FAMILIES
from meshlog.metrics.frames import ENVOY_SCHEMA, LATENCY_SCHEMA, REQUESTS_SCHEMA, MetricsFrames
from meshlog.metrics.http import Connection, http_status_message, talking_to

MIN_INTERVAL = 6.0
STOCK_RATE_LIMITED = "envoy_http_local_rate_limit_rate_limited"  # stock tags' name for the RL counter
# Envoy >= 1.38 answers in protobuf when asked for it; ask for the text format explicitly.
ACCEPT = "text/plain;version=0.0.4"


def fetch_exposition(conn: Connection) -> Exposition:
    """One scrape of ``conn.url`` (gzip is undone by ``requests``)."""
    session = conn.session()
    with talking_to(conn):
        response = session.get(
            conn.base, headers={"Accept": ACCEPT, **conn.headers()}, auth=conn.auth(), timeout=conn.timeout
        )
    if response.status_code != 200:
        raise UnreachableError(conn.base, http_status_message(response.status_code, response.content))
    kind = response.headers.get("Content-Type", "")
    if "protobuf" in kind:
        raise UnreachableError(conn.base, f"answered in {kind.split(';')[0]}, not the text format")
    exposition = parse_exposition(response.content.decode("utf-8", "replace"))
    if exposition.samples.is_empty():
        raise UnreachableError(conn.base, "answered, but with no metric samples (is this a /stats/prometheus URL?)")
    return exposition


def snapshot_delta(before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
    """Per series: the value after, and for counters and histograms the increase (restart-aware).

    A series new in the second scrape counts from 0; a gauge's "delta" is its last value.
    """
    keyed_before = before.with_columns(series_key()).select("key", pl.col("value").alias("before"))
    joined = after.with_columns(series_key()).join(keyed_before, on="key", how="left")
    # a summary's quantile samples are snapshots; its _sum and _count only grow
    cumulative = pl.col("type").is_in(["counter", "histogram"]) | (
        (pl.col("type") == "summary") & pl.col("name").str.contains(r"_(sum|count)$")
    )
    reset = cumulative & (pl.col("value") < pl.col("before"))
    delta = (
        pl.when(~cumulative)
        .then(pl.col("value"))
        .when(pl.col("before").is_null() | reset)
        .then(pl.col("value"))
        .otherwise(pl.col("value") - pl.col("before"))
    )
    return joined.with_columns(delta.alias("delta"), reset.fill_null(False).alias("reset")).drop("key")


def frames_from_delta(delta: pl.DataFrame, start: dt.datetime, end: dt.datetime) -> MetricsFrames:
    """The same frames the Prometheus source builds, from one pair of scrapes."""
    istio = delta.with_columns(
        label("destination_service"),
        label("reporter"),
        label("response_code"),
        label("response_flags"),
        label("grpc_response_status"),
        label("le"),
    )
    requests = (
        istio.filter(pl.col("name") == "istio_requests_total")
        .group_by(list(REQUESTS_SCHEMA)[:-1])
        .agg(pl.col("delta").sum().alias("requests"))
        .with_columns(pl.col("grpc_response_status").replace("", None))
        .select(list(REQUESTS_SCHEMA))
    )
    latency = (
        istio.filter(pl.col("name") == "istio_request_duration_milliseconds_bucket")
        .group_by("destination_service", "reporter", pl.col("le").cast(pl.Float64, strict=False))
        .agg(pl.col("delta").sum().alias("count"))
        .select(list(LATENCY_SCHEMA))
    )
    picked = _envoy_families(delta)
    envoy = (
        picked.group_by("family", "cluster_name").agg(pl.col("delta").sum().alias("value")).select(list(ENVOY_SCHEMA))
    )
    notes = []
    resets = int(delta["reset"].sum())
    if resets:
        notes.append(
            f"{resets} counter{'s' if resets != 1 else ''} went down between the scrapes:"
            " the proxy restarted; counted from 0"
        )
    present = set(picked["family"].unique().to_list())
    return MetricsFrames("scrape", start, end, requests, latency, envoy, present, notes)


def _envoy_families(delta: pl.DataFrame) -> pl.DataFrame:
    """Samples of the triage families with ``family`` and ``cluster_name`` columns.

    With Envoy's stock tags a cluster name with dots is cut at the first dot: the rest lands in
    the metric name (``envoy_cluster_lab_svc_cluster_local_upstream_rq_retry`` with
    ``envoy_cluster_name="outbound|18081||app"``). Such names are put back together here.
    """
    names = [f.name for f in (*ENVOY_FAMILIES, *RATE_LIMIT_FAMILIES)]
    cluster_stats = "|".join(n.removeprefix("envoy_cluster_") for n in names if n.startswith("envoy_cluster_"))
    cut = pl.col("name").str.extract_groups(rf"^envoy_cluster_([a-z0-9_]+?)_({cluster_stats})$")
    rows = delta.with_columns(*(label(c) for c in CLUSTER_LABELS), cut.alias("cut")).with_columns(
        pl.col("cut").struct.field("1").alias("rest"), pl.col("cut").struct.field("2").alias("stat")
    )
    stock_cut = (
        pl.col("cluster_name").is_null() & pl.col("envoy_cluster_name").is_not_null() & pl.col("rest").is_not_null()
    )
    stock_rl = pl.col("name") == STOCK_RATE_LIMITED
    return rows.filter(pl.col("name").is_in(names) | stock_cut | stock_rl).select(
        pl.when(stock_cut)
        .then(pl.lit("envoy_cluster_") + pl.col("stat"))
        .when(stock_rl)
        .then(pl.lit(RATE_LIMIT_FAMILIES[0].name))
        .otherwise(pl.col("name"))
        .alias("family"),
        pl.when(stock_cut)
        .then(pl.col("envoy_cluster_name") + "." + pl.col("rest").str.replace_all("_", ".", literal=True))
        .otherwise(pl.coalesce(*CLUSTER_LABELS, pl.lit("")))
        .alias("cluster_name"),
        "delta",
    )


def scrape_window(
    conn: Connection,
    interval: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_wait: Callable[[float], None] | None = None,
) -> tuple[MetricsFrames, Exposition]:
    """Scrape, wait ``interval`` seconds, scrape again; the frames cover the time between."""
    if interval < MIN_INTERVAL:
        raise ValueError(f"interval must be at least {MIN_INTERVAL:g} s")
    first = fetch_exposition(conn)
    start = dt.datetime.now(dt.UTC)
    if on_wait:
        on_wait(interval)
    sleep(interval)
    second = fetch_exposition(conn)
    end = dt.datetime.now(dt.UTC)
    delta = snapshot_delta(first.samples, second.samples)
    return frames_from_delta(delta, start, end), second
