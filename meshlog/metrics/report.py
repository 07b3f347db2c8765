"""Metric frames → the ``meshlog metrics -o json`` document (the keys in architecture.md are a contract)."""

from __future__ import annotations

from typing import Any, cast

import polars as pl

from meshlog.metrics.families import ENVOY_FAMILIES, RATE_LIMIT_FAMILIES
from meshlog.metrics.frames import MetricsFrames
from meshlog.metrics.histogram import quantiles
from meshlog.reports.contract import EnvoyValue, MetricsReport, ServiceMetrics

SERVICE_KEYS = ["destination_service", "reporter"]
_ERROR = pl.col("response_code").str.contains(r"^(0|5\d\d)$")
# Kiali's rule: a gRPC status 1-16 on a response whose HTTP code is not already an error
_GRPC_ERROR = pl.col("grpc_response_status").fill_null("").str.contains(r"^([1-9]|1[0-6])$") & ~pl.col(
    "response_code"
).str.contains(r"^(0|[45]\d\d)$")


def service_table(frames: MetricsFrames) -> pl.DataFrame:
    """One row per destination service and reporter: counts, rates, error ratios, quantiles."""
    seconds = frames.seconds
    totals = (
        frames.requests.group_by(SERVICE_KEYS)
        .agg(
            pl.col("requests").sum(),
            pl.col("requests").filter(_ERROR).sum().alias("errors"),
            pl.col("requests").filter(_GRPC_ERROR).sum().alias("grpc_errors"),
        )
        .with_columns(
            (pl.col("requests") / seconds).alias("requests_per_s"),
            (pl.col("errors") / pl.col("requests")).fill_nan(0.0).alias("error_ratio"),
            (pl.col("grpc_errors") / pl.col("requests")).fill_nan(0.0).alias("grpc_error_ratio"),
        )
    )
    latency = quantiles(frames.latency, SERVICE_KEYS)
    return totals.join(latency, on=SERVICE_KEYS, how="left").sort(
        ["requests", *SERVICE_KEYS], descending=[True, False, False]
    )


def code_table(frames: MetricsFrames) -> pl.DataFrame:
    """Requests by service, reporter, code and flags (``-`` = no flag, as Istio labels it)."""
    return (
        frames.requests.group_by([*SERVICE_KEYS, "response_code", "response_flags"])
        .agg(pl.col("requests").sum())
        .with_columns((pl.col("requests") / frames.seconds).alias("requests_per_s"))
        .sort(["requests", "response_code"], descending=[True, False])
    )


def envoy_table(frames: MetricsFrames) -> dict[str, list[EnvoyValue]] | None:
    """Family → rows by cluster (largest first); ``None`` when the proxy exposes none of them."""
    if not frames.present:
        return None
    out: dict[str, list[EnvoyValue]] = {}
    for family in (*ENVOY_FAMILIES, *RATE_LIMIT_FAMILIES):
        if family.name not in frames.present:
            continue
        rows = frames.envoy.filter(pl.col("family") == family.name).sort(
            ["value", "cluster_name"], descending=[True, False]
        )
        out[family.name] = cast(list[EnvoyValue], rows.select("cluster_name", "value").to_dicts())
    return out


def missing(frames: MetricsFrames) -> list[str]:
    """What the reader cannot see, and for Envoy families the setting that would show it."""
    notes = []
    if frames.requests.is_empty():
        notes.append("istio_requests_total: no series for this selection and window")
    if frames.latency.is_empty():
        notes.append("istio_request_duration_milliseconds_bucket: no series for this selection and window")
    notes += [f.hint for f in (*ENVOY_FAMILIES, *RATE_LIMIT_FAMILIES) if f.name not in frames.present]
    return notes


def _num(value: Any) -> Any:
    """A float to 15 significant digits: sums of samples carry binary noise in the 17th
    (2585.2970000000005); 15 keep every digit of a counter up to 10^15 and of a small rate."""
    return None if value is None else float(f"{float(value):.15g}")


def metrics_dict(frames: MetricsFrames) -> MetricsReport:
    """The JSON report: window, per-service traffic, Envoy triage families, and what is missing."""
    codes = code_table(frames)
    services: list[ServiceMetrics] = []
    for row in service_table(frames).iter_rows(named=True):
        mine = codes.filter(
            (pl.col("destination_service") == row["destination_service"]) & (pl.col("reporter") == row["reporter"])
        )
        services.append(
            {
                "destination_service": row["destination_service"],
                "reporter": row["reporter"],
                "requests": _num(row["requests"]),
                "requests_per_s": _num(row["requests_per_s"]),
                "errors": _num(row["errors"]),
                "error_ratio": _num(row["error_ratio"]),
                "grpc_error_ratio": _num(row["grpc_error_ratio"]),
                "p50_ms": _num(row.get("p50_ms")),
                "p90_ms": _num(row.get("p90_ms")),
                "p99_ms": _num(row.get("p99_ms")),
                "by_code": [
                    {
                        "response_code": r["response_code"],
                        "response_flags": r["response_flags"],
                        "requests": _num(r["requests"]),
                        "requests_per_s": _num(r["requests_per_s"]),
                    }
                    for r in mine.iter_rows(named=True)
                ],
            }
        )
    return {
        "source": frames.source,
        "window": {"start": frames.start.isoformat(), "end": frames.end.isoformat(), "seconds": _num(frames.seconds)},
        "services": services,
        "envoy": envoy_table(frames),
        "missing": missing(frames),
        "notes": list(frames.notes),
    }


def merged_report(frames: list[MetricsFrames]) -> MetricsReport:
    """One report for several selections of one window (``compare.fetch_selections``): the services
    of each; Envoy's families and what is missing from the first, the one that fetched them."""
    reports = [metrics_dict(f) for f in frames]
    return {**reports[0], "services": [s for r in reports for s in r["services"]]}
