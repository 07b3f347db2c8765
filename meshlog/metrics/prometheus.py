"""Istio and Envoy metrics for one window, from Prometheus (through prometheus-api-client).

Every query is an instant query at the window's end over ``[window]`` (``increase``), so counts are
exact for the window and rates are derived once. Every ``istio_*`` selector carries ``reporter``:
without it a request that passed two sidecars counts twice.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from urllib3.util.retry import Retry

from meshlog.errors import QueryError, UnreachableError
from meshlog.metrics.families import CLUSTER_LABELS, ENVOY_FAMILIES, RATE_LIMIT_FAMILIES
from meshlog.metrics.frames import ENVOY_SCHEMA, LATENCY_SCHEMA, REQUESTS_SCHEMA, MetricsFrames
from meshlog.metrics.http import Connection, http_status_message, talking_to

NO_RETRY = Retry(total=0, redirect=3, raise_on_status=False)


@dataclass(frozen=True)
class Selection:
    """Which traffic: ``--namespace``, ``--workload``/``--service`` (destination side), ``--reporter``."""

    reporter: str = "source"
    namespace: str | None = None
    workload: str | None = None
    service: str | None = None  # a short name (reviews) or a FQDN (reviews.bookinfo.svc.cluster.local)
    services: tuple[str, ...] = ()  # FQDNs, e.g. the services an access log covers

    def matchers(self) -> str:
        parts = [f"reporter={quote(self.reporter)}"]
        if self.namespace:
            parts.append(f"destination_service_namespace={quote(self.namespace)}")
        if self.workload:
            parts.append(f"destination_workload={quote(self.workload)}")
        if self.service:
            key = "destination_service" if "." in self.service else "destination_service_name"
            parts.append(f"{key}={quote(self.service)}")
        if self.services:
            parts.append(f"destination_service=~{quote('|'.join(re.escape(s) for s in self.services))}")
        return ",".join(parts)


def quote(value: str) -> str:
    """A PromQL string literal (user input never breaks out of the quotes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Prometheus:
    """A Prometheus API endpoint; every call is one attempt bounded by the connection's timeout."""

    def __init__(self, conn: Connection) -> None:
        from prometheus_api_client import PrometheusConnect

        self.conn = conn
        self._client = PrometheusConnect(
            url=conn.base,
            headers=conn.headers(),
            auth=conn.auth(),
            session=conn.session(),
            retry=NO_RETRY,  # the client mounts its own adapter; its default retries for 6 s
            timeout=conn.timeout,  # type: ignore[arg-type]  # the client accepts float seconds
        )

    def query(self, promql: str, at: dt.datetime) -> list[dict[str, Any]]:
        """Instant vector at ``at``; errors as ``UnreachableError`` / ``QueryError``."""
        from prometheus_api_client import PrometheusApiClientException
        from requests.exceptions import JSONDecodeError

        with talking_to(self.conn):
            try:
                result = self._client.custom_query(promql, params={"time": f"{at.timestamp():.3f}"})
            except PrometheusApiClientException as exc:
                raise self._api_error(str(exc), promql) from None
            except (JSONDecodeError, KeyError, TypeError):
                raise UnreachableError(
                    self.conn.base, "answered, but not with the Prometheus API (is the URL right?)"
                ) from None
        if not isinstance(result, list):  # a scalar query: [ts, "v"]
            raise QueryError("expected an instant vector", promql)
        return result

    def _api_error(self, text: str, promql: str) -> Exception:
        # the client's message is "HTTP Status Code 400 (b'{...json...}')"
        m = re.match(r"HTTP Status Code (\d+) \((b'.*'|b\".*\")\)$", text, re.DOTALL)
        if not m:
            return UnreachableError(self.conn.base, text)
        status, body = int(m.group(1)), ast.literal_eval(m.group(2))
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status in (400, 422) and isinstance(answer, dict) and answer.get("error"):
            return QueryError(f"{answer.get('errorType', 'error')}: {answer['error']}", promql)
        return UnreachableError(self.conn.base, http_status_message(status, body))


def _frame(result: list[dict[str, Any]], labels: Sequence[str], value: str) -> pl.DataFrame:
    rows = [{**{k: r["metric"].get(k) for k in labels}, value: float(r["value"][1])} for r in result]
    return pl.DataFrame(rows, schema={**dict.fromkeys(labels, pl.String), value: pl.Float64}, orient="row")


def fetch_window(
    prom: Prometheus, selection: Selection, start: dt.datetime, end: dt.datetime, *, envoy: bool = True
) -> MetricsFrames:
    """Requests by code/flag, latency buckets and (unless ``envoy`` is false) Envoy triage families
    for ``[start, end]``."""
    ms = max(round((end - start).total_seconds() * 1000), 1000)
    window = f"[{ms}ms]"  # to the millisecond: a window whose edges are samples is counted exactly
    sel = "{" + selection.matchers() + "}"
    codes = ["destination_service", "reporter", "response_code", "response_flags", "grpc_response_status"]
    requests = _frame(
        prom.query(f"sum by ({', '.join(codes)}) (increase(istio_requests_total{sel}{window}))", end), codes, "requests"
    )
    requests = requests.with_columns(pl.col("grpc_response_status").replace("", None)).select(list(REQUESTS_SCHEMA))
    buckets = _frame(
        prom.query(
            "sum by (destination_service, reporter, le)"
            f" (increase(istio_request_duration_milliseconds_bucket{sel}{window}))",
            end,
        ),
        ["destination_service", "reporter", "le"],
        "count",
    ).with_columns(pl.col("le").cast(pl.Float64, strict=False))
    families, present = _envoy(prom, selection, window, end) if envoy else (pl.DataFrame(schema=ENVOY_SCHEMA), set())
    frames = MetricsFrames("prometheus", end - dt.timedelta(milliseconds=ms), end, requests, buckets, families, present)
    frames.latency = frames.latency.select(list(LATENCY_SCHEMA))
    return frames


def _envoy(prom: Prometheus, selection: Selection, window: str, end: dt.datetime) -> tuple[pl.DataFrame, set[str]]:
    env_sel = "{" + (f"namespace={quote(selection.namespace)}" if selection.namespace else "") + "}"
    by = ", ".join(CLUSTER_LABELS)
    parts, present = [], set()
    for family in (*ENVOY_FAMILIES, *RATE_LIMIT_FAMILIES):
        if family.kind == "counter":
            promql = f"sum by ({by}) (increase({family.name}{env_sel}{window}))"
        else:
            promql = f"max by ({by}) (last_over_time({family.name}{env_sel}{window}))"
        result = prom.query(promql, end)
        if not result:
            continue  # absent: not exposed, or no series in the window
        present.add(family.name)
        frame = _frame(result, CLUSTER_LABELS, "value")
        parts.append(
            frame.select(
                pl.lit(family.name).alias("family"),
                pl.coalesce(*CLUSTER_LABELS, pl.lit("")).alias("cluster_name"),
                "value",
            )
        )
    envoy = pl.concat(parts) if parts else pl.DataFrame(schema=ENVOY_SCHEMA)
    if selection.service:
        envoy = envoy.filter(
            pl.col("cluster_name").str.contains(_cluster_pattern(selection.service)) | (pl.col("cluster_name") == "")
        )
    return envoy, present


def _cluster_pattern(service: str) -> str:
    """Istio clusters end in the service FQDN: ``outbound|9080|v1|reviews.bookinfo.svc.cluster.local``."""
    return r"\|" + re.escape(service) + (r"$" if "." in service else r"\.")
