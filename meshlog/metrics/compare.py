"""Logs beside metrics: does Prometheus see the same traffic, for the same window, as the access log?

Disagreement is itself a finding: a log that holds a tenth of what the sidecars counted is sampled
or partial (one pod of ten, a rotated file); errors the metrics count but the log lacks were often
seen only by the *other* sidecar — client-side failures (UF, UH, UO, UT, URX) exist only under
``reporter="source"`` and never reach the server's log.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from meshlog.errors import ConfigError
from meshlog.metrics.frames import MetricsFrames
from meshlog.metrics.prometheus import Prometheus, Selection, fetch_window
from meshlog.parse.derive import cluster_columns

MIN_WINDOW_S = 120.0  # below this a Prometheus increase() has too few samples to mean anything
KEYS = ["reporter", "destination_service", "response_code", "response_flags"]
_ERROR = pl.col("response_code").str.contains(r"^(0|5\d\d)$")
_CLIENT_SIDE = ("UF", "UH", "UO", "UT", "URX", "NR", "NC", "DC")


def log_view(requests: pl.DataFrame) -> pl.DataFrame:
    """Access-log requests counted the way ``istio_requests_total`` counts them (rows, or the summary
    state's request counts: a column ``n`` is a row's weight).

    An outbound line is the client's view (``reporter=source``) of the cluster's service; an
    inbound line is the server's view (``reporter=destination``) of the Host it was called by
    (``reviews:9080`` → ``reviews.<namespace>.svc.cluster.local`` when the namespace is known).
    """
    if "upstream_cluster" not in requests.columns or "response_code" not in requests.columns:
        return pl.DataFrame(schema={**dict.fromkeys(KEYS, pl.String), "log_requests": pl.UInt32})
    cols = [
        c
        for c in ("upstream_cluster", "authority", "namespace", "response_code", "response_flags", "n")
        if c in requests.columns
    ]
    weight = pl.col("n").sum() if "n" in cols else pl.len()
    frame = cluster_columns(requests.select(cols).with_columns(pl.col("upstream_cluster").cast(pl.String)))
    host = (
        pl.col("authority").cast(pl.String).str.replace(r":\d+$", "")
        if "authority" in cols
        else pl.lit(None, pl.String)
    )
    namespace = pl.col("namespace").cast(pl.String) if "namespace" in cols else pl.lit(None, pl.String)
    inbound_service = (
        pl.when(host.str.contains(r"\.svc\.")).then(host).otherwise(host + "." + namespace + ".svc.cluster.local")
    )
    flags = pl.col("response_flags").cast(pl.String) if "response_flags" in cols else pl.lit(None, pl.String)
    return (
        frame.select(
            pl.col("cluster_direction")
            .replace_strict({"outbound": "source", "inbound": "destination"}, default=None)
            .alias("reporter"),
            pl.when(pl.col("cluster_direction") == "outbound")
            .then(pl.col("cluster_service"))
            .otherwise(inbound_service)
            .alias("destination_service"),
            pl.col("response_code").cast(pl.String),
            flags.fill_null("-").alias("response_flags"),
            *(("n",) if "n" in cols else ()),
        )
        .drop_nulls(["reporter", "destination_service"])
        # code 0 with no flag is a TCP connection that went well (reports.traffic.is_error): not in
        # istio_requests_total, which counts HTTP/gRPC only. Without a flags column every 0 stays.
        .filter(
            (pl.col("response_code") != "0") | (pl.col("response_flags") != "-") | pl.lit("response_flags" not in cols)
        )
        .group_by(KEYS)
        .agg(weight.alias("log_requests"))
    )


def metrics_window(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime, float]:
    """The window to ask Prometheus about, and the factor that scales its counts to the log's span."""
    span = (end - start).total_seconds()
    if span >= MIN_WINDOW_S:
        return start, end, 1.0
    pad = dt.timedelta(seconds=(MIN_WINDOW_S - span) / 2)
    return start - pad, end + pad, max(span, 1.0) / MIN_WINDOW_S


def log_selections(logged: pl.DataFrame) -> list[Selection]:
    """Whom to ask about a log's traffic (``log_view`` rows): every service it shows from the client
    side (``reporter=source``, which also holds the failures no server ever saw), and the services it
    shows as servers from their own side (``reporter=destination``)."""
    everyone = logged["destination_service"].unique().sort().to_list()
    servers = logged.filter(pl.col("reporter") == "destination")["destination_service"].unique().sort().to_list()
    return [
        Selection(reporter, services=tuple(services))
        for reporter, services in (("source", everyone), ("destination", servers))
        if services
    ]


def fetch_selections(
    prom: Prometheus, selections: list[Selection], start: dt.datetime, end: dt.datetime
) -> list[MetricsFrames]:
    """One fetch per selection; Envoy's cluster families (per proxy, not per reporter) with the first only."""
    return [fetch_window(prom, sel, start, end, envoy=not i) for i, sel in enumerate(selections)]


def fetch_for_log(
    prom: Prometheus, logged: pl.DataFrame, start: dt.datetime, end: dt.datetime
) -> tuple[list[MetricsFrames], float]:
    """The metrics of the services the log covers (``log_selections``) for its window, and the factor
    that scales them to the log's span."""
    q_start, q_end, scale = metrics_window(start, end)
    return fetch_selections(prom, log_selections(logged), q_start, q_end), scale


def metrics_beside_log(
    prom: Prometheus, requests: pl.DataFrame, start: dt.datetime | None, end: dt.datetime | None
) -> dict[str, Any]:
    """The whole comparison for a log's requests (``log_view``: rows or counts) over its first to last
    request (needs ``start_time`` and ``upstream_cluster``)."""
    if start is None or end is None:
        raise ConfigError("comparing with metrics needs requests with start_time")
    logged = log_view(requests)
    if logged.is_empty():
        raise ConfigError("comparing with metrics needs upstream_cluster in the log (outbound|… / inbound|…)")
    frames, scale = fetch_for_log(prom, logged, start, end)
    return compare(logged, frames, scale)


def compare(logged: pl.DataFrame, frames: list[MetricsFrames], scale: float) -> dict[str, Any]:
    """Per service: requests and errors in the log vs in the metrics, and what the gaps suggest."""
    counted = pl.concat([f.requests for f in frames]) if frames else pl.DataFrame()
    metric = (
        counted.group_by(KEYS).agg((pl.col("requests").sum() * scale).alias("metric_requests"))
        if not counted.is_empty()
        else pl.DataFrame(schema={**dict.fromkeys(KEYS, pl.String), "metric_requests": pl.Float64})
    )
    both = logged.join(metric, on=KEYS, how="full", coalesce=True).with_columns(
        pl.col("log_requests").fill_null(0).cast(pl.Int64), pl.col("metric_requests").fill_null(0.0)
    )
    logged_pairs = logged.select("reporter", "destination_service").unique()
    services = (
        both.group_by("reporter", "destination_service")
        .agg(
            pl.col("log_requests").sum(),
            pl.col("metric_requests").sum(),
            pl.col("log_requests").filter(_ERROR).sum().alias("log_errors"),
            pl.col("metric_requests").filter(_ERROR).sum().alias("metric_errors"),
        )
        .sort("log_requests", "metric_requests", descending=True)
    )
    findings: list[dict[str, Any]] = []
    tolerance = 0.1 if scale == 1.0 else 0.5  # a scaled-up short window is only a rough match
    for s in services.join(logged_pairs, on=["reporter", "destination_service"], how="semi").iter_rows(named=True):
        findings += _service_findings(s, tolerance)
    findings += _error_findings(both, logged_pairs, tolerance)
    window = frames[0] if frames else None
    return {
        "source": "prometheus",
        "window": None if window is None else {"start": window.start.isoformat(), "end": window.end.isoformat()},
        "scaled_to_log_span": scale != 1.0,
        "services": [
            {**s, "metric_requests": round(s["metric_requests"], 3), "metric_errors": round(s["metric_errors"], 3)}
            for s in services.iter_rows(named=True)
        ],
        "disagreements": findings,
    }


def _service_findings(s: dict[str, Any], tolerance: float) -> list[dict[str, Any]]:
    where = f"{s['destination_service']} (reporter={s['reporter']})"
    logs, metrics = s["log_requests"], s["metric_requests"]
    if metrics < 0.5:
        return [
            {
                "kind": "not_in_metrics",
                "service": s["destination_service"],
                "detail": f"metrics count no requests for {where} but the log has {logs}: is Prometheus scraping "
                "these pods, and are the log and Prometheus from the same cluster and time?",
            }
        ]
    ratio = logs / metrics
    if ratio < 1 - tolerance:
        return [
            {
                "kind": "log_partial",
                "service": s["destination_service"],
                "detail": f"the log holds {logs} of the ~{metrics:.0f} requests metrics counted for {where} "
                f"({100 * ratio:.0f}%): the log is sampled or partial (one pod of several, a rotated file, "
                "an access-log filter)",
            }
        ]
    if ratio > 1 + tolerance:
        return [
            {
                "kind": "metrics_short",
                "service": s["destination_service"],
                "detail": f"the log has {logs} requests for {where}, metrics only ~{metrics:.0f}: scrape gaps, "
                "a restarted proxy, or logs from more pods than Prometheus scrapes",
            }
        ]
    return []


def _error_findings(both: pl.DataFrame, logged_pairs: pl.DataFrame, tolerance: float) -> list[dict[str, Any]]:
    out = []
    errors = both.filter(_ERROR)
    logged_services = set(logged_pairs["destination_service"].to_list())
    logged_reporters = set(logged_pairs.iter_rows())
    for e in errors.sort("metric_requests", descending=True).iter_rows(named=True):
        what = f"{e['response_code']} {e['response_flags']}".replace(" -", "")
        if e["destination_service"] not in logged_services:
            continue
        if (e["reporter"], e["destination_service"]) not in logged_reporters:
            if e["reporter"] == "source" and any(f in _CLIENT_SIDE for f in e["response_flags"].split(",")):
                out.append(
                    {
                        "kind": "client_side_only",
                        "service": e["destination_service"],
                        "detail": f"client sidecars saw ~{e['metric_requests']:.0f} × {what} for "
                        f"{e['destination_service']} that never reached it, so this server-side log cannot show them",
                    }
                )
            continue
        if e["metric_requests"] >= 1 and e["log_requests"] < e["metric_requests"] * (1 - tolerance) * 0.5:
            out.append(
                {
                    "kind": "errors_not_in_log",
                    "service": e["destination_service"],
                    "detail": f"metrics count ~{e['metric_requests']:.0f} × {what} for {e['destination_service']} "
                    f"(reporter={e['reporter']}) but the log has {e['log_requests']}",
                }
            )
        elif e["log_requests"] and e["metric_requests"] < 0.5:
            out.append(
                {
                    "kind": "errors_not_in_metrics",
                    "service": e["destination_service"],
                    "detail": f"the log has {e['log_requests']} × {what} for {e['destination_service']} "
                    f"(reporter={e['reporter']}) that metrics do not count",
                }
            )
    return out
