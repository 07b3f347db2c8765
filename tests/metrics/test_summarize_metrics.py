"""`meshlog summarize LOG --prometheus URL`: the log's traffic beside what a real Prometheus counted.

The scenario is built here: per 15 s step, the metrics count what the FLOWS say and the access log
(Istio's text format, the bytes of a real Envoy line with fields filled in) holds what LOGGED says.
Metric counts are checked against Prometheus' own ``increase()`` over the same window; the
disagreements expected follow from the construction (10 % of ratings logged, details' 503 UF not
logged, productpage's client-side 503 UH never reaching its server-side log).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.lab.istio_series import BUCKETS, Flow, anchored_range, openmetrics
from tests.lab.prometheus import PrometheusLab

STEP = 15
STEPS_LOGGED = 40  # the log covers the last 10 minutes of the data
NS = "bookinfo"


def _in_25ms(n: int) -> tuple[int, ...]:
    counts = [0] * (len(BUCKETS) + 1)
    counts[BUCKETS.index(25)] = n  # every request in (10, 25] ms
    return tuple(counts)


def _flow(dst: str, reporter: str, code: str, n: int, flags: str = "-") -> Flow:
    return Flow("productpage-v1", dst, NS, reporter, code, n, _in_25ms(n), 20.0 * n, response_flags=flags)


FLOWS = (
    _flow("reviews", "source", "200", 10),
    _flow("reviews", "source", "503", 1, "URX"),
    _flow("ratings", "source", "200", 10),
    _flow("details", "source", "200", 5),
    _flow("details", "source", "503", 2, "UF"),
    # productpage as a server: its own sidecar saw 4 per step; clients also failed 1 per step (UH)
    Flow("istio-ingressgateway", "productpage", NS, "destination", "200", 4, _in_25ms(4), 80.0),
    Flow("istio-ingressgateway", "productpage", NS, "source", "200", 4, _in_25ms(4), 80.0),
    Flow("istio-ingressgateway", "productpage", NS, "source", "503", 1, _in_25ms(1), 20.0, response_flags="UH"),
)


@dataclass(frozen=True)
class Logged:
    cluster: str
    authority: str
    code: int
    flags: str
    per_step: int


LOGGED = (
    Logged(f"outbound|9080||reviews.{NS}.svc.cluster.local", "reviews:9080", 200, "-", 10),
    Logged(f"outbound|9080||reviews.{NS}.svc.cluster.local", "reviews:9080", 503, "URX", 1),
    Logged(f"outbound|9080||ratings.{NS}.svc.cluster.local", "ratings:9080", 200, "-", 1),  # 1 in 10 logged
    Logged(f"outbound|9080||details.{NS}.svc.cluster.local", "details:9080", 200, "-", 5),  # no 503 UF
    Logged("inbound|9080||", f"productpage.{NS}.svc.cluster.local:9080", 200, "-", 4),
)
# a line Envoy 1.40 wrote with Istio's default format (fixtures/chain/client.log), fields to fill
LINE = (
    '[{ts}] "GET /api HTTP/1.1" {code} {flags} via_upstream - "-" 0 3 20 19 "-" "meshlog-test" "{rid}" '
    '"{authority}" "127.0.0.1:35335" {cluster} 127.0.0.1:58352 127.0.0.1:45503 127.0.0.1:35742 - default'
)


@dataclass(frozen=True)
class Scenario:
    url: str
    log: Path
    first: float  # unix time of the first and last log line
    last: float
    lab: PrometheusLab


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    start, end = anchored_range(3600, STEP)
    lines: list[str] = []
    stamps: list[float] = []
    for k in range(STEPS_LOGGED):  # mid-step, so no line sits on a scrape
        t = end - (STEPS_LOGGED - k) * STEP + STEP / 2
        stamps.append(t)
        ts = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        for entry in LOGGED:
            lines.extend(LINE.format(ts=ts, code=entry.code, flags=entry.flags, rid=uuid.uuid4(),
                                     authority=entry.authority, cluster=entry.cluster)
                         for _ in range(entry.per_step))  # fmt: skip
    log = tmp_path_factory.mktemp("summarize-metrics") / "istio-proxy.log"
    log.write_text("\n".join(lines) + "\n")
    with PrometheusLab(openmetrics=openmetrics(FLOWS, start, end, STEP)) as lab:
        yield Scenario(lab.url, log, stamps[0], stamps[-1], lab)


def _summarize(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshlog", "summarize", *args], check=False, capture_output=True, text=True,
        timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )  # fmt: skip


def _increase(s: Scenario, reporter: str, service: str, codes: str = ".*") -> float:
    """Prometheus' own answer for the log's window."""
    ms = round((s.last - s.first) * 1000)
    promql = (
        f'sum(increase(istio_requests_total{{reporter="{reporter}",destination_service="{service}.{NS}.svc.cluster.local",'
        f'response_code=~"{codes}"}}[{ms}ms]))'
    )
    result = s.lab.query(promql, time=s.last)
    return float(result[0]["value"][1]) if result else 0.0


def test_log_and_metrics_side_by_side(scenario: Scenario) -> None:
    done = _summarize(str(scenario.log), "--prometheus", scenario.url, "-o", "json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["requests"] == STEPS_LOGGED * sum(e.per_step for e in LOGGED)  # the usual report is intact
    m = summary["metrics"]
    assert m["source"] == "prometheus" and m["scaled_to_log_span"] is False
    rows = {(r["reporter"], r["destination_service"].split(".")[0]): r for r in m["services"]}
    for (reporter, service), row in rows.items():
        assert row["metric_requests"] == pytest.approx(_increase(scenario, reporter, service), abs=1e-3)
        assert row["metric_errors"] == pytest.approx(_increase(scenario, reporter, service, "5.."), abs=1e-3)
    assert rows[("source", "reviews")]["log_requests"] == 11 * STEPS_LOGGED
    assert rows[("source", "reviews")]["log_errors"] == STEPS_LOGGED
    assert rows[("destination", "productpage")]["log_requests"] == 4 * STEPS_LOGGED
    assert rows[("source", "productpage")]["log_requests"] == 0  # client view, fetched for the comparison

    found = {(d["kind"], d["service"].split(".")[0]) for d in m["disagreements"]}
    assert found == {
        ("log_partial", "ratings"),  # 10 % logged
        ("log_partial", "details"),  # 5 of 7 per step logged
        ("errors_not_in_log", "details"),  # 503 UF only in the metrics
        ("client_side_only", "productpage"),  # 503 UH seen by clients, never by productpage's sidecar
    }
    details = next(d for d in m["disagreements"] if d["kind"] == "errors_not_in_log")
    assert "× 503 UF for details.bookinfo.svc.cluster.local (reporter=source) but the log has 0" in details["detail"]


def test_text_report_shows_the_comparison(scenario: Scenario) -> None:
    done = _summarize(str(scenario.log), "--prometheus", scenario.url)
    assert done.returncode == 0, done.stderr
    assert "log vs Prometheus" in done.stdout
    assert "≠ the log holds 40 of the ~" in done.stdout and "ratings.bookinfo.svc.cluster.local" in done.stdout
    assert "client sidecars saw ~" in done.stdout


def test_unreachable_prometheus_keeps_the_log_report_and_exits_5(scenario: Scenario) -> None:
    done = _summarize(str(scenario.log), "--prometheus", "http://127.0.0.1:1")
    assert done.returncode == 5
    logged = sum(entry.per_step for entry in LOGGED) * STEPS_LOGGED  # the lines the scenario wrote
    assert done.stdout.startswith(f"{logged} requests from {logged} lines") and "log vs Prometheus" not in done.stdout
    assert (
        "meshlog: error: http://127.0.0.1:1: connection refused (is the port-forward / Prometheus running?) "
        "(the report above is the log's alone)"
    ) in done.stderr.splitlines()


def test_tui_metrics_tab_shows_the_same_window(scenario: Scenario) -> None:
    """`meshlog tui LOG --prometheus URL`: the metrics tab is filled by a worker thread from the real server."""
    import asyncio

    from textual.widgets import DataTable, Static

    from meshlog.metrics.http import Connection
    from meshlog.tui import create_app
    from tests.tui.test_app import SIZE, loaded, until

    app = create_app([str(scenario.log)], prometheus=Connection(scenario.url, timeout=5))

    async def check() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, loaded(app))
            await pilot.press("3")
            services = app.query_one("#metrics-services", DataTable)
            await until(pilot, lambda: services.row_count > 0, timeout=20)
            shown = {
                str(services.get_row_at(i)[0]).split(".")[0]: services.get_row_at(i)
                for i in range(services.row_count)
                if services.get_row_at(i)[1] == "source"
            }
            assert set(shown) == {"reviews", "ratings", "details", "productpage"}
            # details: 5 x 200 + 2 x 503 UF per 15 s step -> 2/7 errors, 0.47 req/s
            assert str(shown["details"][3]) == f"{100 * 2 / 7:.1f}%"
            assert shown["details"][2] == f"{7 / 15:.2f}"
            assert "503 UF" in str(shown["details"][7])
            # the backfilled mesh has no Envoy cluster counters: the panel says so and how to expose them
            said = str(app.query_one("#metrics-hidden", Static).render())
            assert said.startswith(
                "17 Envoy counter families have no series in Prometheus for the window (a default sidecar does not "
                "expose them) (upstream requests, retries, "
            )
            assert 'proxyStatsMatcher: {inclusionRegexps: [".*upstream_rq_total.*", ".*upstream_rq_retry.*"' in said
            # every service from the client side, and productpage, which the log shows as a server, also from
            # its own sidecar: clients saw 4 + 1 UH per step (20% errors), the server 4 and no error
            assert "reporter source + destination" in str(app.query_one("#metrics-status", Static).render())
            rows = [services.get_row_at(i) for i in range(services.row_count)]
            product = {str(r[1]): r for r in rows if str(r[0]).startswith("productpage")}
            assert str(product["source"][3]) == "20.0%" and "503 UH" in str(product["source"][7])
            assert str(product["destination"][3]) == "0.0%" and product["destination"][2] == f"{4 / 15:.2f}"

    asyncio.run(check())


def test_tui_metrics_tab_follows_the_filter(scenario: Scenario) -> None:
    """Filter on one cluster and the metrics tab shows that service only."""
    import asyncio

    from textual.widgets import DataTable, Static

    from meshlog.metrics.http import Connection
    from meshlog.tui import create_app
    from tests.tui.test_app import SIZE, loaded, until

    app = create_app([str(scenario.log)], prometheus=Connection(scenario.url, timeout=5))

    async def check() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, loaded(app))
            services = app.query_one("#metrics-services", DataTable)
            await until(
                pilot, lambda: services.row_count == 5, timeout=20
            )  # 4 from the clients, productpage also served
            app.apply_filter("upstream_cluster~ratings")
            await until(pilot, lambda: services.row_count == 1, timeout=20)
            assert str(services.get_row_at(0)[0]) == f"ratings.{NS}"  # shown without .svc.cluster.local
            app.apply_filter("response_code=999")  # no request: nothing to ask, and nothing left from before
            status = app.query_one("#metrics-status", Static)
            await until(pilot, lambda: "no request matches the filter" in str(status.render()), timeout=20)
            assert services.row_count == 0

    asyncio.run(check())
