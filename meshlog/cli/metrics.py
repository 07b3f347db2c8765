"""``meshlog metrics``: mesh and sidecar metrics for a window, from Prometheus or a sidecar scrape."""

from __future__ import annotations

import datetime as dt
import json
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from meshlog.cli import app, boundary, say
from meshlog.errors import UsageError

if TYPE_CHECKING:
    from meshlog.metrics.http import Connection


class MetricsOutput(StrEnum):
    text = "text"
    json = "json"
    csv = "csv"


class Reporter(StrEnum):
    source = "source"
    destination = "destination"
    waypoint = "waypoint"


TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="MESHLOG_PROMETHEUS_TOKEN", help="Bearer token (or $MESHLOG_PROMETHEUS_TOKEN)."),
]
UserOpt = Annotated[str | None, typer.Option("--user", help="Basic auth as name:password.")]
CaFileOpt = Annotated[str | None, typer.Option("--ca-file", help="CA bundle to verify the server's TLS certificate.")]
InsecureOpt = Annotated[bool, typer.Option("--insecure", help="Do not verify TLS certificates.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for each answer.")]


def connection(
    url: str, token: str | None, user: str | None, ca_file: str | None, insecure: bool, timeout: float
) -> Connection:
    """The server and how to talk to it (requests is imported only by commands that need it)."""
    from meshlog.metrics.http import Connection

    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{url}: expected an http:// or https:// URL")
    return Connection(url, token=token, user=user, ca_file=ca_file, insecure=insecure, timeout=timeout)


def window(since: str, until: str | None) -> tuple[dt.datetime, dt.datetime]:
    """``--since 1h`` / ``--until`` relative to now (or ISO times)."""
    from meshlog.filters import parse_time

    now = dt.datetime.now(dt.UTC)
    end = parse_time(until, now, option="--until") if until else now
    start = parse_time(since, end)
    if start >= end:
        raise UsageError("--since must be before --until")
    return start, end


@app.command()
@boundary
def metrics(
    prometheus: Annotated[
        str | None, typer.Option("--prometheus", help="Prometheus URL, e.g. http://127.0.0.1:9090.")
    ] = None,
    scrape: Annotated[
        str | None,
        typer.Option("--scrape", help="A sidecar's stats URL, e.g. http://127.0.0.1:15020/stats/prometheus."),
    ] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Destination namespace.")] = None,
    workload: Annotated[str | None, typer.Option("--workload", help="Destination workload (e.g. reviews-v1).")] = None,
    service: Annotated[str | None, typer.Option("--service", help="Destination service: name or FQDN.")] = None,
    since: Annotated[str, typer.Option("--since", help="Window start: 15m, 1h, or an ISO time.")] = "1h",
    until: Annotated[str | None, typer.Option("--until", help="Window end: ISO time or 10m (before now).")] = None,
    reporter: Annotated[
        Reporter,
        typer.Option(
            "--reporter",
            help="source: client sidecars (sees failures that never reach the server); destination: server sidecars.",
        ),
    ] = Reporter.source,
    interval: Annotated[
        float, typer.Option("--interval", help="--scrape: seconds between the two snapshots (>= 6).")
    ] = 10.0,
    output: Annotated[
        MetricsOutput, typer.Option("--output", "-o", help="text, json, or csv (one row per code).")
    ] = MetricsOutput.text,
    token: TokenOpt = None,
    user: UserOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Request rate, errors by code and flag, latency, and Envoy's retry/timeout/breaker counters."""
    from meshlog.cli.render_metrics import metrics_rows, render_metrics
    from meshlog.export import write_rows
    from meshlog.metrics.report import metrics_dict

    if (prometheus is None) == (scrape is None):
        raise UsageError("give exactly one of --prometheus URL or --scrape URL")
    if scrape:
        from meshlog.metrics.scrape import MIN_INTERVAL, scrape_window

        if interval < MIN_INTERVAL:
            raise UsageError(f"--interval must be at least {MIN_INTERVAL:g} s: Envoy moves histograms only every 5 s")
        conn = connection(scrape, token, user, ca_file, insecure, timeout)
        frames, _ = scrape_window(conn, interval, on_wait=lambda s: say(f"scraped {conn.base}; again in {s:g} s"))
        if namespace or workload or service:
            say("note: --namespace/--workload/--service filter nothing in a scrape: it is one pod's view")
    else:
        from meshlog.metrics.prometheus import Prometheus, Selection, fetch_window

        assert prometheus is not None
        conn = connection(prometheus, token, user, ca_file, insecure, timeout)
        start, end = window(since, until)
        selection = Selection(reporter.value, namespace, workload, service)
        frames = fetch_window(Prometheus(conn), selection, start, end)
    report = metrics_dict(frames)
    if output is MetricsOutput.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif output is MetricsOutput.csv:
        write_rows(metrics_rows(report), "csv", sys.stdout.buffer)
    else:
        render_metrics(report, conn.base)
