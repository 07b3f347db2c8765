"""A real Prometheus scraping a real Envoy during an incident; `meshlog metrics --prometheus` reads
Envoy's triage counters back as exact ``increase()`` values.

The window runs from a scrape taken before the traffic to one taken after it, so both edges are
samples and Prometheus' increase() needs no extrapolation: it must equal what the traffic caused
(tests/lab/incident.py).
"""

from __future__ import annotations

import datetime as dt
import time

from meshlog.metrics.http import Connection
from meshlog.metrics.prometheus import Prometheus, Selection, fetch_window
from meshlog.metrics.report import metrics_dict
from tests.lab.envoy import EnvoyLab
from tests.lab.incident import OK, RETRIED, expected_counters, run_incident
from tests.lab.prometheus import PrometheusLab


def test_envoy_counters_through_prometheus() -> None:
    with EnvoyLab() as envoy:
        target = envoy.admin.removeprefix("http://")
        with PrometheusLab(scrape_targets=[("envoy", target, "/stats/prometheus")], scrape_interval="1s") as prom:
            before = prom.wait_for_scrape_after(time.time(), "envoy")
            run_incident(envoy)
            after = prom.wait_for_scrape_after(time.time(), "envoy")
            start, end = (dt.datetime.fromtimestamp(t, dt.UTC) for t in (before, after))
            report = metrics_dict(fetch_window(Prometheus(Connection(prom.url)), Selection(), start, end))
    assert report["envoy"] is not None
    got = {family: {r["cluster_name"]: r["value"] for r in rows} for family, rows in report["envoy"].items()}
    for family, clusters in expected_counters().items():
        for cluster, value in clusters.items():
            assert got[family][cluster] == value, (family, cluster, got[family])
    backend = "outbound|8080||backend.default.svc.cluster.local"
    assert got["envoy_cluster_upstream_rq_total"][backend] == OK + 3 * RETRIED
    # every family of the table is exposed by a stock Envoy: nothing is reported missing but istio_*
    assert [m.split(":")[0] for m in report["missing"]] == [
        "istio_requests_total",
        "istio_request_duration_milliseconds_bucket",
    ]
