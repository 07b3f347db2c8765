"""Direct sidecar scrape: the text parser on real Envoy output, and two scrapes of a live Envoy.

Expected values come from the LAB figures documented beside the captured Envoy output
(../shared/reference/sidecar-metrics.md) and, for the live Envoy, from the traffic the test sends
(tests/lab/incident.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import polars as pl
import pytest

from meshlog.errors import UnreachableError
from meshlog.metrics.exposition import label, parse_exposition
from meshlog.metrics.families import ENVOY_FAMILIES
from meshlog.metrics.http import Connection
from meshlog.metrics.report import metrics_dict
from meshlog.metrics.scrape import fetch_exposition, frames_from_delta, snapshot_delta
from tests.conftest import ROOT, SHARED
from tests.lab.envoy import EnvoyLab
from tests.lab.incident import OK, RETRIED, expected_counters, run_incident

SAMPLES = SHARED / "samples" / "metrics"
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def _values(samples: pl.DataFrame, name: str, by: str = "cluster_name") -> dict[str, float]:
    rows = samples.filter(pl.col("name") == name).with_columns(label(by))
    return dict(zip(rows[by].to_list(), rows["value"].to_list(), strict=True))


def test_real_envoy_text_keeps_raw_names() -> None:
    """prometheus_client renames `envoy_cluster_upstream_rq` to `…_total`, merging two counters; not here."""
    samples = parse_exposition((SAMPLES / "envoy-stats-istio.prom").read_text()).samples
    assert samples.height == 1724  # LAB: 1,724 samples
    totals = _values(samples, "envoy_cluster_upstream_rq_total")
    assert len(totals) == 5 and totals["outbound|18081||app.lab.svc.cluster.local"] == 118
    by_code = samples.filter(pl.col("name") == "envoy_cluster_upstream_rq").with_columns(label("response_code_class"))
    assert by_code.height == 12  # 6 by response_code + 6 by response_code_class
    assert by_code.filter(pl.col("response_code_class") == "5xx")["value"].sum() == 10 + 8 + 5 + 5
    # the LAB table: 40 retries, 20 succeeded, 5 limit exceeded
    assert _values(samples, "envoy_cluster_upstream_rq_retry")["outbound|18081||app.lab.svc.cluster.local"] == 40
    assert (
        _values(samples, "envoy_cluster_upstream_rq_retry_success")["outbound|18081||app.lab.svc.cluster.local"] == 20
    )
    limit = _values(samples, "envoy_cluster_upstream_rq_retry_limit_exceeded")
    assert limit["outbound|18089||dead.lab.svc.cluster.local"] == 5
    buckets = samples.filter(pl.col("name") == "envoy_cluster_upstream_rq_time_bucket").with_columns(label("le"))
    assert buckets["le"].unique().len() == 20 and "3600000" in buckets["le"].to_list()
    assert set(samples.filter(pl.col("family") == "envoy_cluster_upstream_rq_time")["type"]) == {"histogram"}


def test_openmetrics_flavour_and_default_istio_matcher_parse() -> None:
    om = parse_exposition((SAMPLES / "envoy-stats-istio.accept-openmetrics.txt").read_text())
    assert om.rejected.is_empty() and om.samples.height > 1724
    default = parse_exposition((SAMPLES / "envoy-stats-istio-default.prom").read_text())
    assert default.rejected.is_empty()
    assert not default.samples["name"].str.starts_with("envoy_cluster_upstream_rq").any()


def test_label_escapes_and_bad_lines_are_reported() -> None:
    text = (
        "# HELP x a counter\n# TYPE x counter\n"
        'x{path="/a\\"b",note="back\\\\slash, and \\n newline",le="+Inf"} 3\n'
        "x{} NaN\n"
        "this is not a sample\n"
        'y{broken="1" 2\n'
        "# EOF\n"
    )
    parsed = parse_exposition(text)
    first = parsed.samples.row(0, named=True)
    assert {d["name"]: d["value"] for d in first["labels"]} == {
        "path": '/a"b',
        "note": "back\\slash, and \n newline",
        "le": "+Inf",
    }
    assert first["type"] == "counter" and first["value"] == 3
    assert parsed.rejected.to_dicts() == [
        {"line_no": 5, "line": "this is not a sample"},
        {"line_no": 6, "line": 'y{broken="1" 2'},
    ]


def test_stock_tags_cut_cluster_names_are_put_back_together() -> None:
    """Stock tags split ``app.lab.svc.cluster.local`` into the metric name; the report undoes it."""
    samples = parse_exposition((SAMPLES / "envoy-stats-envoy.prom").read_text()).samples
    zero = samples.with_columns(pl.lit(0.0).alias("value"))
    report = metrics_dict(frames_from_delta(snapshot_delta(zero, samples), NOW - dt.timedelta(seconds=10), NOW))
    envoy = report["envoy"]
    assert envoy is not None
    retry = {r["cluster_name"]: r["value"] for r in envoy["envoy_cluster_upstream_rq_retry"]}
    assert retry["outbound|18081||app.lab.svc.cluster.local"] == 40
    assert retry["outbound|18089||dead.lab.svc.cluster.local"] == 5
    limited = envoy["envoy_http_local_rate_limiter_http_local_rate_limit_rate_limited"]
    assert limited == [{"cluster_name": "", "value": 3.0}]  # LAB: 3 rate limited


def test_a_counter_going_down_is_a_restart() -> None:
    before = parse_exposition('# TYPE c counter\nc{cluster_name="a"} 10\n# TYPE g gauge\ng 7\n').samples
    after = parse_exposition('# TYPE c counter\nc{cluster_name="a"} 3\n# TYPE g gauge\ng 2\n').samples
    delta = snapshot_delta(before, after)
    assert dict(zip(delta["name"], delta["delta"], strict=True)) == {"c": 3.0, "g": 2.0}
    assert delta.filter(pl.col("name") == "c")["reset"].item() is True
    frames = frames_from_delta(delta, NOW - dt.timedelta(seconds=10), NOW)
    assert frames.notes == ["1 counter went down between the scrapes: the proxy restarted; counted from 0"]


def test_istio_requests_from_two_scrapes() -> None:
    """Rates, error ratio and quantiles from istio_* deltas (the sidecar's own series)."""
    labels = 'reporter="source",destination_service="reviews.bookinfo.svc.cluster.local"'

    def exposition(ok: int, uf: int, buckets: list[int]) -> str:
        les = ["1", "5", "10", "+Inf"]
        lines = ["# TYPE istio_requests_total counter"]
        lines.append(f'istio_requests_total{{{labels},response_code="200",response_flags="-"}} {ok}')
        lines.append(f'istio_requests_total{{{labels},response_code="503",response_flags="UF"}} {uf}')
        lines.append("# TYPE istio_request_duration_milliseconds histogram")
        lines += [
            f'istio_request_duration_milliseconds_bucket{{{labels},le="{le}"}} {n}'
            for le, n in zip(les, buckets, strict=True)
        ]
        return "\n".join(lines) + "\n"

    before = parse_exposition(exposition(100, 5, [0, 50, 100, 105])).samples
    after = parse_exposition(exposition(160, 25, [0, 90, 180, 185])).samples  # +60 ok, +20 UF in 10 s
    report = metrics_dict(frames_from_delta(snapshot_delta(before, after), NOW - dt.timedelta(seconds=10), NOW))
    (service,) = report["services"]
    assert service["requests"] == 80 and service["requests_per_s"] == 8.0
    assert service["error_ratio"] == 0.25
    assert service["by_code"][0] == {
        "response_code": "200",
        "response_flags": "-",
        "requests": 60.0,
        "requests_per_s": 6.0,
    }
    # bucket deltas 0/40/80/80: p50 rank 40 -> top of (1,5]; p90 rank 72 -> 5 + 5 * 32/40
    assert (service["p50_ms"], service["p90_ms"]) == (5.0, 9.0)


# -- a live Envoy ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def envoy() -> Iterator[EnvoyLab]:
    with EnvoyLab() as lab:
        yield lab


def _meshlog(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "meshlog", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )  # fmt: skip


def test_scrape_a_live_envoy_during_an_incident(envoy: EnvoyLab) -> None:
    """`meshlog metrics --scrape` snapshots, the incident happens, the second snapshot shows it."""
    proc = _meshlog("metrics", "--scrape", envoy.admin + "/stats/prometheus", "--interval", "6", "-o", "json")
    assert proc.stderr is not None
    first = proc.stderr.readline()  # printed once the first snapshot is taken
    assert first.startswith("meshlog: scraped http://127.0.0.1:") and "again in 6 s" in first
    run_incident(envoy)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["source"] == "scrape" and 6 <= report["window"]["seconds"] < 20
    got = {family: {r["cluster_name"]: r["value"] for r in rows} for family, rows in report["envoy"].items()}
    for family, clusters in expected_counters().items():
        for cluster, value in clusters.items():
            assert got[family][cluster] == value, (family, cluster)
    backend = "outbound|8080||backend.default.svc.cluster.local"
    assert got["envoy_cluster_upstream_rq_total"][backend] == OK + 3 * RETRIED  # every attempt counts
    # a plain Envoy has no istio_* series: said, not silently empty
    assert report["services"] == [] and report["missing"][0].startswith("istio_requests_total: no series")


def test_default_istio_matcher_names_the_setting_to_change() -> None:
    with EnvoyLab(istio_default_matcher=True) as lab:
        conn = Connection(lab.admin + "/stats/prometheus")
        first = fetch_exposition(conn)
        lab.get("/status/503")  # a retried request: the counters exist, but are not exposed
        second = fetch_exposition(conn)
    report = metrics_dict(frames_from_delta(snapshot_delta(first.samples, second.samples), NOW, NOW))
    assert report["envoy"] is None
    hints = [m for m in report["missing"] if m.startswith("envoy_cluster_upstream_rq_retry:")]
    assert hints == [
        (
            "envoy_cluster_upstream_rq_retry: not exposed by the sidecar; "
            'add inclusionRegexps: [".*upstream_rq_retry.*"] '
            "to meshConfig.defaultConfig.proxyStatsMatcher or the proxy.istio.io/config pod annotation"
        )
    ]
    assert len([m for m in report["missing"] if "not exposed" in m]) == len(ENVOY_FAMILIES) + 1


# -- what goes wrong -------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    seen_accept: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Handler.seen_accept.append(self.headers.get("Accept", ""))
        if self.path == "/proto":
            body, kind = b"\x0a\x05hello", "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily"
        elif self.path == "/html":
            body, kind = b"<html>hello</html>", "text/html"
        elif self.path == "/hang":
            time.sleep(3)
            body, kind = b"", "text/plain"
        else:
            self.send_response(403)
            self.end_headers()
            self.wfile.write(b"RBAC: access denied")
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # /hang: the client gave up
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def odd_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("path", "timeout", "message"),
    [
        ("/proto", 5.0, "answered in application/vnd.google.protobuf, not the text format"),
        ("/html", 5.0, "answered, but with no metric samples (is this a /stats/prometheus URL?)"),
        ("/denied", 5.0, "HTTP 403 Forbidden (check --token / --user): RBAC: access denied"),
        ("/hang", 0.5, "no answer within 0.5 s (--timeout)"),
    ],
)
def test_scrape_errors_are_one_line(odd_server: str, path: str, timeout: float, message: str) -> None:
    with pytest.raises(UnreachableError) as err:
        fetch_exposition(Connection(odd_server + path, timeout=timeout))
    assert str(err.value) == f"{odd_server}{path}: {message}"
    assert _Handler.seen_accept[-1] == "text/plain;version=0.0.4"  # never invite protobuf


def test_cli_scrape_errors(tmp_path: Path) -> None:
    closed = _meshlog("metrics", "--scrape", "http://127.0.0.1:1/stats/prometheus", "--interval", "6")
    out, err = closed.communicate(timeout=30)
    assert closed.returncode == 5 and out == ""
    assert err == (
        "meshlog: error: http://127.0.0.1:1/stats/prometheus: connection refused "
        "(is the port-forward / Prometheus running?)\n"
    )
    short = _meshlog("metrics", "--scrape", "http://127.0.0.1:1/stats/prometheus", "--interval", "2")
    out, err = short.communicate(timeout=30)
    assert short.returncode == 2
    assert err == "meshlog: error: --interval must be at least 6 s: Envoy moves histograms only every 5 s\n"
    both = _meshlog("metrics")
    assert both.communicate(timeout=30)[1] == "meshlog: error: give exactly one of --prometheus URL or --scrape URL\n"
    assert both.returncode == 2
