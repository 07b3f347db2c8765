"""`meshlog metrics --prometheus` against a real Prometheus 2.42 holding backfilled Istio series.

Expected answers come from the scenario's spec (tests/lab/istio_series.py) and, for quantiles,
also from Prometheus' own ``histogram_quantile`` over the same window.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from meshlog.errors import QueryError, UnreachableError
from meshlog.metrics.families import ENVOY_FAMILIES, RATE_LIMIT_FAMILIES
from meshlog.metrics.http import Connection
from meshlog.metrics.prometheus import Prometheus, Selection, fetch_window
from meshlog.metrics.report import metrics_dict
from tests.conftest import ROOT
from tests.lab.istio_series import BOOKINFO, anchored_range, openmetrics
from tests.lab.prometheus import BASIC_AUTH, PrometheusLab
from tests.metrics.conftest import BookinfoPrometheus

FQDN = {"reviews": "reviews.bookinfo.svc.cluster.local", "ratings": "ratings.bookinfo.svc.cluster.local",
        "checkout": "checkout.shop.svc.cluster.local"}  # fmt: skip
SHORT = {v: k for k, v in FQDN.items()}


def _report(prom: BookinfoPrometheus, selection: Selection) -> Any:
    end = dt.datetime.fromtimestamp(prom.end, dt.UTC)
    frames = fetch_window(Prometheus(Connection(prom.url)), selection, end - dt.timedelta(seconds=prom.window_s), end)
    return metrics_dict(frames)


@pytest.mark.parametrize("reporter", ["source", "destination"])
def test_services_match_the_scenario(bookinfo_prometheus: BookinfoPrometheus, reporter: str) -> None:
    prom, want = bookinfo_prometheus, bookinfo_prometheus.expected
    report = _report(prom, Selection(reporter))
    assert report["source"] == "prometheus" and report["window"]["seconds"] == prom.window_s
    got = {SHORT[s["destination_service"]]: s for s in report["services"]}
    assert {s["reporter"] for s in report["services"]} == {reporter}
    assert set(got) == {svc for (r, svc) in want.requests_per_second if r == reporter}
    for svc, s in got.items():
        assert s["requests"] == pytest.approx(want.increase[(reporter, svc)], rel=1e-9)
        assert s["requests_per_s"] == pytest.approx(want.requests_per_second[(reporter, svc)], rel=1e-6)
        for q, key in ((0.5, "p50_ms"), (0.9, "p90_ms"), (0.99, "p99_ms")):
            assert s[key] == pytest.approx(want.quantile_ms[(reporter, svc, q)], rel=1e-6), (svc, key)
        if reporter == "source":
            assert s["error_ratio"] == pytest.approx(want.error_ratio_5xx[svc], rel=1e-6)
            assert s["grpc_error_ratio"] == pytest.approx(want.grpc_error_ratio.get(svc, 0.0), rel=1e-6)


def test_codes_and_flags_of_the_client_view(bookinfo_prometheus: BookinfoPrometheus) -> None:
    report = _report(bookinfo_prometheus, Selection("source", service="reviews"))
    (reviews,) = report["services"]
    codes = {(c["response_code"], c["response_flags"]): c["requests_per_s"] for c in reviews["by_code"]}
    step = bookinfo_prometheus.step
    # per step (15 s): 30 x 200, 3 x 503 UF, 1 x 504 UT
    assert codes == pytest.approx({("200", "-"): 30 / step, ("503", "UF"): 3 / step, ("504", "UT"): 1 / step})


def test_quantiles_equal_prometheus_own_histogram_quantile(bookinfo_prometheus: BookinfoPrometheus) -> None:
    prom = bookinfo_prometheus
    report = _report(prom, Selection("source"))
    for s in report["services"]:
        for q, key in ((0.5, "p50_ms"), (0.9, "p90_ms"), (0.99, "p99_ms")):
            promql = (
                f"histogram_quantile({q}, sum by (le) (increase(istio_request_duration_milliseconds_bucket"
                f'{{reporter="source",destination_service="{s["destination_service"]}"}}[{prom.window_s}s])))'
            )
            (answer,) = prom.lab.query(promql, time=prom.end)
            assert s[key] == pytest.approx(float(answer["value"][1]), rel=1e-9)


def test_selection_by_namespace_and_service(bookinfo_prometheus: BookinfoPrometheus) -> None:
    shop = _report(bookinfo_prometheus, Selection("source", namespace="shop"))
    assert [s["destination_service"] for s in shop["services"]] == [FQDN["checkout"]]
    by_fqdn = _report(bookinfo_prometheus, Selection("destination", service=FQDN["ratings"]))
    assert [s["destination_service"] for s in by_fqdn["services"]] == [FQDN["ratings"]]
    nothing = _report(bookinfo_prometheus, Selection("source", workload='no"such'))  # quotes stay quoted
    assert nothing["services"] == []
    assert nothing["missing"][:2] == [
        "istio_requests_total: no series for this selection and window",
        "istio_request_duration_milliseconds_bucket: no series for this selection and window",
    ]


def test_absent_envoy_families_are_named_with_the_setting(bookinfo_prometheus: BookinfoPrometheus) -> None:
    report = _report(bookinfo_prometheus, Selection("source"))
    assert report["envoy"] is None
    assert len(report["missing"]) == len(ENVOY_FAMILIES) + len(RATE_LIMIT_FAMILIES)
    assert all("proxyStatsMatcher" in m for m in report["missing"])


def _meshlog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshlog", *args], check=False, capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )  # fmt: skip


def test_cli_json_contract_and_text(bookinfo_prometheus: BookinfoPrometheus) -> None:
    prom = bookinfo_prometheus
    end = dt.datetime.fromtimestamp(prom.end, dt.UTC)
    window = ["--since", (end - dt.timedelta(seconds=prom.window_s)).isoformat(), "--until", end.isoformat()]
    done = _meshlog("metrics", "--prometheus", prom.url, *window, "-o", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"source", "window", "services", "envoy", "missing"} <= set(report)
    assert {"start", "end"} <= set(report["window"])
    assert dt.datetime.fromisoformat(report["window"]["end"]) == end
    service_keys = {
        "destination_service",
        "reporter",
        "requests_per_s",
        "error_ratio",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "by_code",
    }
    for s in report["services"]:
        assert service_keys <= set(s)
        assert all({"response_code", "response_flags", "requests_per_s"} <= set(c) for c in s["by_code"])
    text = _meshlog("metrics", "--prometheus", prom.url, *window)
    assert text.returncode == 0, text.stderr
    assert "traffic by destination service" in text.stdout and "reviews.bookinfo.svc.cluster.local" in text.stdout
    assert "503 UF 0.200/s" in text.stdout and "not visible" in text.stdout
    csv = _meshlog("metrics", "--prometheus", prom.url, *window, "-o", "csv", "--service", "reviews")
    assert csv.stdout.splitlines()[0].startswith("destination_service,reporter,response_code,response_flags,requests")
    assert len(csv.stdout.splitlines()) == 1 + 3


def test_bad_promql_is_a_query_error(bookinfo_prometheus: BookinfoPrometheus) -> None:
    prom = Prometheus(Connection(bookinfo_prometheus.url))
    with pytest.raises(QueryError) as err:
        prom.query("sum(rate(istio_requests_total[5m])", dt.datetime.now(dt.UTC))
    assert str(err.value) == (
        'Prometheus rejected the query: bad_data: invalid parameter "query": 1:35: parse error: unclosed left '
        "parenthesis (query: sum(rate(istio_requests_total[5m]))"
    )


class _NotPrometheus(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(2)
        try:
            if self.path.startswith("/down"):  # a proxy in front of a Prometheus that is not there
                self.send_response(503)
                self.end_headers()
                self.wfile.write(
                    b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"
                )
                return
            if self.path.startswith("/auth") and self.headers.get("Authorization") != "Bearer s3cret":
                self.send_response(401)
                self.end_headers()
                self.wfile.write(b"Unauthorized")
                return
            body = (
                b'{"status":"success","data":{"resultType":"vector","result":[]}}'
                if "/auth" in self.path
                else b"<h1>hi</h1>"
            )
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def not_prometheus() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotPrometheus)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_server_errors_are_one_line(not_prometheus: str) -> None:
    now = dt.datetime.now(dt.UTC)
    cases = [
        (Connection(not_prometheus), "answered, but not with the Prometheus API (is the URL right?)"),
        (Connection(not_prometheus + "/slow", timeout=0.5), "no answer within 0.5 s (--timeout)"),
        (Connection(not_prometheus + "/auth"), "HTTP 401 Unauthorized (check --token / --user): Unauthorized"),
        (
            Connection(not_prometheus + "/down"),
            (
                "HTTP 503 Service Unavailable: upstream connect error or disconnect/reset before headers. "
                "reset reason: connection failure"
            ),
        ),
        (
            Connection(not_prometheus + "/auth", token="wrong"),
            "HTTP 401 Unauthorized (check --token / --user): Unauthorized",
        ),
    ]
    for conn, message in cases:
        with pytest.raises(UnreachableError) as err:
            Prometheus(conn).query("up", now)
        assert str(err.value) == f"{conn.base}: {message}"
    assert Prometheus(Connection(not_prometheus + "/auth", token="s3cret")).query("up", now) == []


def test_cli_unreachable_prometheus_fails_fast() -> None:
    started = time.monotonic()
    done = _meshlog("metrics", "--prometheus", "http://127.0.0.1:1")
    assert done.returncode == 5 and done.stdout == ""
    assert done.stderr == (
        "meshlog: error: http://127.0.0.1:1: connection refused (is the port-forward / Prometheus running?)\n"
    )
    assert time.monotonic() - started < 5  # no 6 s of library retries
    bad_url = _meshlog("metrics", "--prometheus", "127.0.0.1:9090")
    assert bad_url.returncode == 2
    assert bad_url.stderr == "meshlog: error: 127.0.0.1:9090: expected an http:// or https:// URL\n"


@pytest.fixture(scope="module")
def secured() -> Iterator[tuple[PrometheusLab, int]]:
    """A Prometheus behind TLS (its own self-signed certificate) and basic auth, with 30 min of data."""
    start, end = anchored_range(1800, 15)
    with PrometheusLab(openmetrics=openmetrics(BOOKINFO, start, end, 15), tls=True, basic_auth=True) as lab:
        yield lab, end


def test_tls_and_basic_auth(secured: tuple[PrometheusLab, int]) -> None:
    lab, end = secured
    at = dt.datetime.fromtimestamp(end, dt.UTC)
    user = ":".join(BASIC_AUTH)
    good = Connection(lab.url, user=user, ca_file=str(lab.ca_file))
    frames = fetch_window(Prometheus(good), Selection("source", service="ratings"), at - dt.timedelta(minutes=10), at)
    assert frames.requests["requests"].sum() == pytest.approx(600.0)
    assert Prometheus(Connection(lab.url, user=user, insecure=True)).query("up", at) == []
    failures = [
        (
            Connection(lab.url, user=user),
            "TLS certificate not trusted (pass --ca-file, or --insecure to skip verification)",
        ),
        (
            Connection(lab.url, user="meshlog:wrong", ca_file=str(lab.ca_file)),
            "HTTP 401 Unauthorized (check --token / --user): Unauthorized",
        ),
        (Connection(lab.url, ca_file=str(lab.ca_file)), "HTTP 401 Unauthorized (check --token / --user): Unauthorized"),
    ]
    for conn, message in failures:
        with pytest.raises(UnreachableError) as err:
            Prometheus(conn).query("up", at)
        assert str(err.value) == f"{lab.url}: {message}"
    window = ["--since", (at - dt.timedelta(minutes=10)).isoformat(), "--until", at.isoformat()]
    done = _meshlog(
        "metrics", "--prometheus", lab.url, "--user", user, "--ca-file", str(lab.ca_file), *window, "-o", "json"
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["services"]) == 3
