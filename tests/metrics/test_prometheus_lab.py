"""The Prometheus lab itself: real PromQL answers equal the answers computed from the specs.

Plain HTTP only (no meshlog), so a failure here means the lab or the expectations are wrong,
not the product. Counter increases are integers and must match exactly; rates, ratios and
quantiles are floats that Prometheus sums and divides in its own order, so they are compared
to 1e-9 relative.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.lab.istio_series import (
    BOOKINFO,
    BUCKETS,
    Flow,
    anchored_range,
    cumulative_buckets,
    expected_increase,
    expected_quantile,
    openmetrics,
    quantile_on_bucket_edge,
    scenario_expected,
)
from tests.lab.prometheus import PrometheusLab, PrometheusLabError

from .conftest import BookinfoPrometheus

REL = 1e-9
SERVICES = ("checkout", "ratings", "reviews")


def by_service(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"]["destination_service_name"]: float(r["value"][1]) for r in result}


def window(bp: BookinfoPrometheus) -> str:
    return f"{bp.window_s}s"


# ------------------------------------------------------------------------- backfilled BOOKINFO


@pytest.mark.parametrize("reporter", ["source", "destination"])
def test_increase_is_exact(bookinfo_prometheus: BookinfoPrometheus, reporter: str) -> None:
    bp = bookinfo_prometheus
    got = by_service(
        bp.lab.query(
            f'sum by (destination_service_name)(increase(istio_requests_total{{reporter="{reporter}"}}[10m]))',
            time=bp.end,
        )
    )
    want = {svc: n for (rep, svc), n in bp.expected.increase.items() if rep == reporter}
    assert got == want
    assert bp.window_s == 600  # the [10m] above


def test_increase_per_flow_is_exact(bookinfo_prometheus: BookinfoPrometheus) -> None:
    """Every single series, matched on its full Istio label set."""
    bp = bookinfo_prometheus
    result = bp.lab.query(f"increase(istio_requests_total[{window(bp)}])", time=bp.end)
    got = {frozenset(r["metric"].items()): float(r["value"][1]) for r in result}
    want = {frozenset(f.labels.items()): expected_increase([f], bp.window_s, bp.step) for f in bp.flows}
    assert got == want


@pytest.mark.parametrize("reporter", ["source", "destination"])
def test_rate(bookinfo_prometheus: BookinfoPrometheus, reporter: str) -> None:
    bp = bookinfo_prometheus
    got = by_service(
        bp.lab.query(
            f'sum by (destination_service_name)(rate(istio_requests_total{{reporter="{reporter}"}}[{window(bp)}]))',
            time=bp.end,
        )
    )
    want = {svc: v for (rep, svc), v in bp.expected.requests_per_second.items() if rep == reporter}
    assert got == pytest.approx(want, rel=REL)


@pytest.mark.parametrize("reporter", ["source", "destination"])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_histogram_quantile(bookinfo_prometheus: BookinfoPrometheus, reporter: str, q: float) -> None:
    bp = bookinfo_prometheus
    got = by_service(
        bp.lab.query(
            f"histogram_quantile({q}, sum by (le, destination_service_name)"
            f'(rate(istio_request_duration_milliseconds_bucket{{reporter="{reporter}"}}[{window(bp)}])))',
            time=bp.end,
        )
    )
    want = {svc: v for (rep, svc, qq), v in bp.expected.quantile_ms.items() if rep == reporter and qq == q}
    assert got == pytest.approx(want, rel=REL)


def test_quantile_in_inf_bucket_is_the_last_finite_bound(bookinfo_prometheus: BookinfoPrometheus) -> None:
    """checkout's p99 lands in +Inf (a 1.5 h stream): Prometheus answers 3600000, not infinity."""
    assert bookinfo_prometheus.expected.quantile_ms[("source", "checkout", 0.99)] == BUCKETS[-1]


def test_error_ratio_5xx(bookinfo_prometheus: BookinfoPrometheus) -> None:
    bp = bookinfo_prometheus
    sel, w = 'reporter="source"', window(bp)
    got = by_service(
        bp.lab.query(
            f'sum by (destination_service_name)(rate(istio_requests_total{{{sel},response_code=~"5.."}}[{w}]))'
            f" / sum by (destination_service_name)(rate(istio_requests_total{{{sel}}}[{w}]))",
            time=bp.end,
        )
    )
    want = {svc: r for svc, r in bp.expected.error_ratio_5xx.items() if r > 0}
    assert got == pytest.approx(want, rel=REL)
    # PromQL gotcha worth knowing: a service without any 5xx series vanishes instead of showing 0.
    assert "checkout" not in got and bp.expected.error_ratio_5xx["checkout"] == 0.0


def test_grpc_error_ratio_kiali_style(bookinfo_prometheus: BookinfoPrometheus) -> None:
    bp = bookinfo_prometheus
    sel, w = 'reporter="source",destination_service_name="checkout"', window(bp)
    got = bp.lab.query(
        f'sum(rate(istio_requests_total{{{sel},grpc_response_status=~"^[1-9]$|^1[0-6]$",'
        f'response_code!~"^0$|^[4-5]\\\\d\\\\d$"}}[{w}])) / sum(rate(istio_requests_total{{{sel}}}[{w}]))',
        time=bp.end,
    )
    assert float(got[0]["value"][1]) == pytest.approx(bp.expected.grpc_error_ratio["checkout"], rel=REL)
    assert bp.expected.grpc_error_ratio == {"checkout": 0.1}


@pytest.mark.parametrize("reporter", ["source", "destination"])
def test_mean_latency(bookinfo_prometheus: BookinfoPrometheus, reporter: str) -> None:
    bp = bookinfo_prometheus
    sel, w = f'reporter="{reporter}"', window(bp)
    got = by_service(
        bp.lab.query(
            f"sum by (destination_service_name)(rate(istio_request_duration_milliseconds_sum{{{sel}}}[{w}]))"
            f" / sum by (destination_service_name)(rate(istio_request_duration_milliseconds_count{{{sel}}}[{w}]))",
            time=bp.end,
        )
    )
    want = {svc: v for (rep, svc), v in bp.expected.mean_ms.items() if rep == reporter}
    assert got == pytest.approx(want, rel=REL)


def test_series_shape(bookinfo_prometheus: BookinfoPrometheus) -> None:
    """Names, le spellings and the Istio label set arrive as a sidecar would expose them."""
    bp = bookinfo_prometheus
    les = bp.lab.query("count by (le)(istio_request_duration_milliseconds_bucket)", time=bp.end)
    assert sorted((r["metric"]["le"] for r in les), key=float) == [
        "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000",
        "60000", "300000", "600000", "1800000", "3600000", "+Inf",
    ]  # fmt: skip
    series = bp.lab.query('istio_requests_total{destination_service_name="checkout",reporter="destination"}', bp.end)
    assert len(series) == 1
    labels = series[0]["metric"]
    assert labels["__name__"] == "istio_requests_total"
    assert labels["destination_service"] == "checkout.shop.svc.cluster.local"
    assert labels["destination_workload"] == "checkout-v1"
    assert labels["source_app"] == "frontend" and labels["source_version"] == "v1"
    assert labels["request_protocol"] == "grpc" and labels["grpc_response_status"] == "0"
    assert labels["connection_security_policy"] == "mutual_tls"
    assert len(labels) == 26  # __name__ + 24 Istio labels + grpc_response_status
    http = bp.lab.query('count(istio_requests_total{request_protocol="http",grpc_response_status!=""})', bp.end)
    assert http == []  # HTTP flows carry no grpc_response_status at all


def test_lookback_is_five_minutes(bookinfo_prometheus: BookinfoPrometheus) -> None:
    """Why the data ends just before 'now' and tests query at ``end``: older data is invisible."""
    bp = bookinfo_prometheus
    assert bp.lab.query("count(istio_requests_total)", time=bp.end + 299)[0]["value"][1] == str(len(BOOKINFO))
    assert bp.lab.query("count(istio_requests_total)", time=bp.end + 301) == []


def test_bad_promql_raises(bookinfo_prometheus: BookinfoPrometheus) -> None:
    with pytest.raises(PrometheusLabError, match="bad_data"):
        bookinfo_prometheus.lab.query("sum(rate(istio_requests_total[5m])")


def test_bookinfo_answers() -> None:
    """The numbers the scenario promises (handy to read; they are also what meshlog tests assert)."""
    e = scenario_expected(BOOKINFO, 600, 15)
    assert e.requests_per_second == {
        ("destination", "checkout"): 1.8,
        ("destination", "ratings"): 1.0,
        ("destination", "reviews"): 2.0,
        ("source", "checkout"): 2.0,
        ("source", "ratings"): 1.0,
        ("source", "reviews"): 34 / 15,
    }
    assert e.error_ratio_5xx == {"checkout": 0.0, "ratings": 0.2, "reviews": 4 / 34}
    assert {k: round(v, 6) for k, v in e.quantile_ms.items() if k[0] == "source"} == {
        ("source", "checkout", 0.5): 17.5,
        ("source", "checkout", 0.9): 75.0,
        ("source", "checkout", 0.99): 3600000.0,
        ("source", "ratings", 0.5): 4.0,
        ("source", "ratings", 0.9): 9.375,
        ("source", "ratings", 0.99): 22.75,
        ("source", "reviews", 0.5): 14.0,
        ("source", "reviews", 0.9): 41.25,
        ("source", "reviews", 0.99): 415.0,
    }


# ------------------------------------------------------------------------- expected_quantile alone


def test_expected_quantile_rules() -> None:
    inf = math.inf
    b = [(1.0, 0.0), (10.0, 10.0), (100.0, 20.0), (inf, 20.0)]
    assert expected_quantile(b, 0.5) == 10.0
    assert expected_quantile(b, 0.25) == 5.5  # linear inside (1, 10]
    assert expected_quantile([(10.0, 4.0), (inf, 4.0)], 0.5) == 5.0  # first bucket starts at 0
    assert expected_quantile([(10.0, 1.0), (50.0, 2.0), (inf, 4.0)], 0.9) == 50.0  # +Inf -> last finite bound
    assert expected_quantile([(-1.0, 2.0), (inf, 2.0)], 0.5) == -1.0  # non-positive first bound: no interpolation
    assert expected_quantile(b, -0.1) == -inf and expected_quantile(b, 1.1) == inf
    assert math.isnan(expected_quantile([(1.0, 0.0), (inf, 0.0)], 0.5))  # no observations
    assert math.isnan(expected_quantile([(1.0, 1.0), (10.0, 2.0)], 0.5))  # no +Inf bucket
    with pytest.raises(ValueError, match="decrease"):
        expected_quantile([(1.0, 3.0), (10.0, 2.0), (inf, 3.0)], 0.5)


def test_flow_rejects_inconsistent_spec() -> None:
    zero = (0,) * (len(BUCKETS) + 1)
    with pytest.raises(ValueError, match="add up"):
        Flow("a-v1", "b", "ns", "source", "200", 2, zero, 0.0)
    one_in_first = (1, *zero[1:])
    with pytest.raises(ValueError, match="impossible"):
        Flow("a-v1", "b", "ns", "source", "200", 1, one_in_first, 0.6)  # > 0.5 ms cannot be in (0, 0.5]


def test_openmetrics_text_shape() -> None:
    text = openmetrics(BOOKINFO[:1], 0, 30, 15)
    lines = text.splitlines()
    assert lines[0].startswith("# HELP istio_requests ") and lines[1] == "# TYPE istio_requests counter"
    assert lines[-1] == "# EOF"
    assert [ln.rsplit(" ", 2)[1:] for ln in lines if ln.startswith("istio_requests_total")] == [
        ["0", "0"],
        ["30", "15"],
        ["60", "30"],
    ]
    assert "# TYPE istio_request_duration_milliseconds histogram" in lines
    assert sum(ln.startswith("istio_request_duration_milliseconds_bucket") for ln in lines) == 3 * 20


def test_random_histograms_match_prometheus() -> None:
    """expected_quantile/expected_increase against the real engine on seeded random bucket shapes.

    Windows that are not a multiple of the step exercise rate() extrapolation; ranks that sit on
    an edge before an empty bucket are ill-posed (see quantile_on_bucket_edge) and skipped.
    """
    rng = random.Random(20261125)
    flows = []
    for i in range(24):
        counts = [0] * (len(BUCKETS) + 1)
        for _ in range(rng.randint(1, 25)):
            counts[rng.choice([rng.randrange(len(counts)), rng.randrange(3, 9)])] += 1
        low = sum(n * lo for n, lo in zip(counts, (0.0, *BUCKETS), strict=True))
        flows.append(Flow(f"client{i}-v1", f"svc{i}", "fuzz", "source", "200", sum(counts), tuple(counts), low + 0.25))
    step = 15
    start, end = anchored_range(900, step)
    checked = 0
    with PrometheusLab(openmetrics=openmetrics(flows, start, end, step)) as prom:
        for w in (30, 100, 600):
            inc = by_service(
                prom.query(f"sum by (destination_service_name)(increase(istio_requests_total[{w}s]))", end)
            )
            for f in flows:
                assert inc[f.destination_service_name] == pytest.approx(expected_increase([f], w, step), rel=1e-15)
                if w % step == 0:
                    assert inc[f.destination_service_name] == expected_increase([f], w, step)
            for q in (0.05, 0.25, 0.5, 0.75, 0.9, 0.99):
                got = by_service(
                    prom.query(
                        f"histogram_quantile({q}, sum by (le, destination_service_name)"
                        f"(rate(istio_request_duration_milliseconds_bucket[{w}s])))",
                        end,
                    )
                )
                for f in flows:
                    if not quantile_on_bucket_edge([f], q):
                        want = expected_quantile(cumulative_buckets([f], w, step), q)
                        assert got[f.destination_service_name] == pytest.approx(want, rel=REL), (w, q, f.bucket_counts)
                        checked += 1
    assert checked > 350


def test_promtool_failure_is_reported() -> None:
    with pytest.raises(PrometheusLabError, match="promtool backfill failed"), PrometheusLab(openmetrics="nonsense\n"):
        pass


# ------------------------------------------------------------------------- live scrape


class _Exposition(BaseHTTPRequestHandler):
    """Serves one counter in the text format; the value is set by the test."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _CounterServer

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr request log."""

    def do_GET(self) -> None:
        if self.path != "/stats/prometheus":
            self.send_error(404)
            return
        body = (
            f'# TYPE meshlog_lab_requests_total counter\nmeshlog_lab_requests_total{{path="/ok"}} {self.server.value}\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _CounterServer(ThreadingHTTPServer):
    daemon_threads = True
    value = 0


@pytest.fixture
def exposition() -> Iterator[_CounterServer]:
    server = _CounterServer(("127.0.0.1", 0), _Exposition)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_scrapes_a_live_target(exposition: _CounterServer) -> None:
    port = exposition.server_address[1]
    with PrometheusLab(scrape_targets=[("sidecar", f"127.0.0.1:{port}", "/stats/prometheus")]) as prom:
        for value in (5, 42):
            exposition.value = value
            changed = time.time()
            scraped = prom.wait_for_scrape_after(changed, "sidecar", timeout=30)
            assert scraped > changed
            got = prom.query('meshlog_lab_requests_total{job="sidecar",path="/ok"}')
            assert [float(r["value"][1]) for r in got] == [value]
            assert prom.query('up{job="sidecar"}')[0]["value"][1] == "1"
