"""What both metric sources (Prometheus, a direct sidecar scrape) hand to the reports.

Counts are over one window: ``increase()`` in Prometheus, the delta between two scrapes. Rates are
computed once, in the report, from these counts and the window length.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

REQUESTS_SCHEMA = {
    "destination_service": pl.String,
    "reporter": pl.String,
    "response_code": pl.String,
    "response_flags": pl.String,
    "grpc_response_status": pl.String,
    "requests": pl.Float64,
}
LATENCY_SCHEMA = {"destination_service": pl.String, "reporter": pl.String, "le": pl.Float64, "count": pl.Float64}
ENVOY_SCHEMA = {"family": pl.String, "cluster_name": pl.String, "value": pl.Float64}


@dataclass
class MetricsFrames:
    """``requests``: istio_requests_total counts by service/reporter/code/flags/gRPC status;
    ``latency``: cumulative istio_request_duration_milliseconds bucket counts;
    ``envoy``: triage families by cluster; ``present``: the Envoy families the proxy exposes."""

    source: str  # "prometheus" | "scrape"
    start: dt.datetime
    end: dt.datetime
    requests: pl.DataFrame
    latency: pl.DataFrame
    envoy: pl.DataFrame
    present: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max((self.end - self.start).total_seconds(), 1e-9)
