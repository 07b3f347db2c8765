"""Synthetic access lines in Istio's default text format, generated vectorised with polars.

The line layout is taken from ``meshlog.formats.presets.ISTIO`` itself: every ``%OPERATOR%``
becomes a ``{}`` of ``pl.format`` and gets the column that ``_values`` builds for it, so
the lines follow the preset exactly (a new operator in the preset fails with a KeyError).
Randomness is the row number hashed with a per-column seed: deterministic and fast.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import polars as pl

from meshlog.formats.presets import ISTIO

BATCH = 250_000
START_US = 1_795_640_400_000_000  # 2026-11-25T21:00:00Z
_OPERATOR = re.compile(r"%([A-Z_]+(?:\([^)]*\))?)%")
TEMPLATE = _OPERATOR.sub("{}", ISTIO.removesuffix("\n"))
OPERATORS = _OPERATOR.findall(ISTIO)


@dataclass(frozen=True)
class Outcome:
    """One kind of request outcome, as Envoy prints it."""

    weight: int
    code: str
    flags: str = "-"
    details: str = "via_upstream"
    tfr: str = "-"  # %UPSTREAM_TRANSPORT_FAILURE_REASON%
    host: bool = True  # an upstream host was picked
    local: bool = True  # an upstream connection was made (%UPSTREAM_LOCAL_ADDRESS%)
    ust: bool = True  # the upstream answered (x-envoy-upstream-service-time)
    routed: bool = True  # a route, so a cluster, matched
    sent: int = -1  # a local reply's fixed body size; -1: random
    dur_min: int = 0
    dur_mean: int = 12
    tcp: bool = False  # a TCP proxy line: "- - -", no HTTP headers


_RESET = "upstream_reset_before_response_started"
_REFUSED = "delayed_connect_error:_Connection_refused"
_TLS = "TLS_error:_268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED"
_NO_UPSTREAM: dict[str, Any] = {"host": False, "local": False, "ust": False}
_FAILED: dict[str, Any] = {"local": False, "ust": False}
# fmt: off
OUTCOMES: tuple[Outcome, ...] = (
    Outcome(8700, "200"),
    Outcome(300, "404", sent=153),
    Outcome(50, "500", sent=21, dur_mean=40),
    Outcome(300, "404", "NR", "route_not_found", routed=False, sent=0, dur_mean=0, **_NO_UPSTREAM),
    Outcome(100, "503", "UF,URX", f"{_RESET}{{remote_connection_failure|{_REFUSED}}}", _REFUSED, sent=121,
            dur_min=25, dur_mean=20, **_FAILED),
    Outcome(100, "503", "URX,UF", f"{_RESET}{{remote_connection_failure|{_REFUSED}}}", _REFUSED, sent=121,
            dur_min=25, dur_mean=20, **_FAILED),
    Outcome(30, "503", "UF", f"{_RESET}{{connection_failure,{_TLS}}}", _TLS, sent=190, dur_mean=3, **_FAILED),
    Outcome(30, "503", "UF", f"{_RESET}{{connection_failure}}", "delayed_connect_error:_111", sent=91, dur_mean=2,
            **_FAILED),
    Outcome(150, "503", "UH", "no_healthy_upstream", sent=19, dur_mean=0, **_NO_UPSTREAM),
    Outcome(100, "504", "UT", "response_timeout", ust=False, sent=24, dur_min=15000, dur_mean=3),
    Outcome(100, "0", "DC", "downstream_remote_disconnect", ust=False, sent=0, dur_min=50, dur_mean=2000),
    Outcome(80, "429", "RL", "local_rate_limited", sent=18, dur_mean=0, **_NO_UPSTREAM),
    Outcome(40, "503", "UC", f"{_RESET}{{connection_termination}}", ust=False, sent=95, dur_mean=5),
    Outcome(100, "0", details="-", ust=False, dur_min=100, dur_mean=30000, tcp=True),
)
# (service, namespace, port, subsets)
SERVICES = (
    ("productpage", "default", 9080, ("v1",)), ("reviews", "default", 9080, ("v1", "v2", "v3")),
    ("ratings", "default", 9080, ("v1",)), ("details", "default", 9080, ("v1",)),
    ("httpbin", "foo", 8000, ("",)), ("payments", "shop", 8080, ("v1", "v2")),
)
METHODS = {"GET": 70, "POST": 18, "PUT": 4, "DELETE": 2, "PATCH": 1, "HEAD": 1, "OPTIONS": 2}
PATHS = {  # a path ending in "/" or "=" gets a number appended
    "/productpage": 20, "/reviews/": 15, "/ratings/": 15, "/details/": 10, "/api/v1/products": 8,
    "/api/v1/products/": 8, "/static/bootstrap/css/bootstrap.min.css": 3, "/login": 2, "/logout": 1,
    "/healthz/ready": 5, "/status/418": 1, "/anything?show_env=1&x=": 2, "/api/v1/orders?page=": 4,
    "/api/v1/orders/": 6,
}
AGENTS = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36": 250,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 "
    "Safari/605.1.15": 120,
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0": 60,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148": 80,
    "Go-http-client/1.1": 120, "python-requests/2.31.0": 60, "curl/8.5.0": 40, "okhttp/4.12.0": 40,
    "grpc-go/1.62.1": 50, "kube-probe/1.29": 50, "Apache-HttpClient/4.5.14 (Java/17.0.10)": 40,
    "Prometheus/2.51.2": 20, "Envoy/HC": 10, "-": 59,
    'Mozilla/5.0 (compatible; "Scanbot"/2.1; +http://scan.example/bot)': 1,  # holds '"': ~0.1% of lines
}
XFF = {"-": 880, "203.0.113.{n}": 100, "198.51.100.{n},10.244.3.17": 10, "2001:db8::{n}": 10}
# fmt: on


class _Rand:
    """Per-row pseudo-random columns for rows ``start…`` (row number hashed with a seed)."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.seed = 0

    def u(self) -> pl.Expr:
        self.seed += 1
        return (pl.int_range(pl.len(), dtype=pl.UInt64) + self.start).hash(self.seed)

    def integer(self, lo: int, hi: int) -> pl.Expr:
        """Uniform integer in [lo, hi)."""
        return (self.u() % (hi - lo)).cast(pl.Int64) + lo

    def text(self, lo: int, hi: int) -> pl.Expr:
        return self.integer(lo, hi).cast(pl.String)

    def exp(self, mean: pl.Expr | float) -> pl.Expr:
        """Exponentially distributed integer (long-tailed sizes and latencies)."""
        u = (self.u() % 1_000_000).cast(pl.Float64) / 1_000_000
        return (-(1.0 - u).log() * mean).floor().cast(pl.Int64)

    def pick(self, values: list[object]) -> pl.Expr:
        """A uniform choice from ``values`` (repeat a value to weight it)."""
        return pl.lit(pl.Series(values)).gather(self.u() % len(values))

    def weighted(self, weights: dict[str, int]) -> pl.Expr:
        return self.pick([v for v, w in weights.items() for _ in range(w)])


def _uuids(n: int) -> pl.Series:
    """Random version-4 UUIDs."""
    h = os.urandom(16 * n).hex()
    c = pl.col("h").str
    parts = [c.slice(0, 8), c.slice(8, 4), "4" + c.slice(13, 3), "a" + c.slice(17, 3), c.slice(20, 12)]
    frame = pl.DataFrame({"h": [h[i : i + 32] for i in range(0, 32 * n, 32)]})
    return frame.select(pl.concat_str(parts, separator="-")).to_series()


def _draw(r: _Rand, n: int, t0_ms: int) -> pl.DataFrame:
    """The random ingredients of ``n`` lines, one column each."""
    outcome = r.pick([i for i, o in enumerate(OUTCOMES) for _ in range(o.weight)])
    svc = [(s, ns, port, sub) for s, ns, port, subs in SERVICES for sub in subs]
    which = r.pick(list(range(len(svc))))

    def per_service(fn: Callable[[tuple[str, str, int, str]], str]) -> pl.Expr:
        return pl.lit(pl.Series([fn(x) for x in svc])).gather(which)

    def pod_ip() -> pl.Expr:
        return pl.format("10.244.{}.{}", r.integer(0, 16), r.integer(2, 254))

    return (
        pl.DataFrame({"rid": _uuids(n)})
        .with_columns(
            **{
                f.name: pl.lit(pl.Series([getattr(o, f.name) for o in OUTCOMES])).gather(outcome)
                for f in fields(Outcome)
            },
            ms=t0_ms + r.integer(0, 3).cum_sum(),
            inbound=r.u() % 10 < 4,
            ipv6=r.u() % 100 == 0,
            method=r.weighted(METHODS),
            path=r.weighted(PATHS),
            proto=r.weighted({"HTTP/1.1": 7, "HTTP/2": 3}),
            ua=r.weighted(AGENTS),
            xff=r.weighted(XFF).str.replace("{n}", r.text(1, 255), literal=True),
            num=r.text(0, 5000),
            port=per_service(lambda x: str(x[2])),
            fqdn=per_service(lambda x: f"{x[0]}.{x[1]}.svc.cluster.local"),
            subset=per_service(lambda x: x[3]),
            authority=per_service(lambda x: f"{x[0]}:{x[2]}" if x[1] == "default" else f"{x[0]}.{x[1]}:{x[2]}"),
            own_ip=pod_ip(),
            peer_ip=pod_ip(),
            vip=pl.format("10.96.{}.{}", r.integer(0, 4), r.integer(1, 254)),
            v6_local=pl.format("[fd00:10:244:{}::{}]", r.integer(0, 16), r.integer(2, 254)),
            v6_remote=pl.format("[fd00:10:244:{}::{}]", r.integer(0, 16), r.integer(2, 254)),
            eph1=r.text(32768, 61000),
            eph2=r.text(32768, 61000),
            jitter=r.integer(0, 3),
            recv_tcp=r.exp(2000.0),
            recv_body=20 + r.exp(800.0),
            sent_random=100 + r.exp(6000.0),
        )
        .with_columns(dur=pl.col("dur_min") + r.exp(pl.col("dur_mean").cast(pl.Float64)))
    )


def _values(c: Callable[[str], pl.Expr]) -> dict[str, pl.Expr]:
    """Operator → the text Envoy prints for it, from the drawn columns."""
    http, inbound, dash = ~c("tcp"), c("inbound"), pl.lit("-")

    def h(e: pl.Expr) -> pl.Expr:  # HTTP-only values are "-" on TCP lines
        return pl.when(http).then(e).otherwise(dash)

    serving = pl.when(inbound).then(c("own_ip")).otherwise(c("peer_ip")) + ":" + c("port")
    path = c("path").str.ends_with("/") | c("path").str.ends_with("=")
    outbound = pl.format("outbound|{}|{}|{}", c("port"), c("subset"), c("fqdn"))
    cluster = pl.when(inbound).then(pl.format("inbound|{}||", c("port"))).otherwise(outbound)
    down_local = pl.when(c("ipv6")).then(c("v6_local")).when(inbound).then(c("own_ip")).otherwise(c("vip"))
    down_remote = pl.when(c("ipv6")).then(c("v6_remote")).when(inbound).then(c("peer_ip")).otherwise(c("own_ip"))
    recv = pl.when(c("tcp")).then(c("recv_tcp")).when(c("method").is_in(["POST", "PUT", "PATCH"]))
    return {
        "START_TIME": (START_US + c("ms") * 1000).cast(pl.Datetime("us")).dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ"),
        "REQ(:METHOD)": h(c("method")),
        "REQ(X-ENVOY-ORIGINAL-PATH?:PATH)": h(pl.when(path).then(c("path") + c("num")).otherwise(c("path"))),
        "PROTOCOL": h(c("proto")),
        "RESPONSE_CODE": c("code"),
        "RESPONSE_FLAGS": c("flags"),
        "RESPONSE_CODE_DETAILS": c("details"),
        "CONNECTION_TERMINATION_DETAILS": dash,
        "UPSTREAM_TRANSPORT_FAILURE_REASON": c("tfr"),
        "BYTES_RECEIVED": recv.then(c("recv_body")).otherwise(0),
        "BYTES_SENT": pl.when(c("sent") >= 0).then(c("sent")).otherwise(c("sent_random")),
        "DURATION": c("dur"),
        "RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)": pl.when(c("ust")).then((c("dur") - c("jitter")).clip(0).cast(pl.String)),
        "REQ(X-FORWARDED-FOR)": h(c("xff")),
        "REQ(USER-AGENT)": h(c("ua")),
        "REQ(X-REQUEST-ID)": h(c("rid")),
        "REQ(:AUTHORITY)": h(c("authority")),
        "UPSTREAM_HOST": pl.when(c("host")).then(serving),
        "UPSTREAM_CLUSTER_RAW": pl.when(c("routed")).then(cluster),
        "UPSTREAM_LOCAL_ADDRESS": pl.when(c("local")).then(
            pl.when(inbound).then(pl.lit("127.0.0.6")).otherwise(c("own_ip")) + ":" + c("eph1")
        ),
        "DOWNSTREAM_LOCAL_ADDRESS": pl.concat_str(down_local, pl.lit(":"), c("port")),
        "DOWNSTREAM_REMOTE_ADDRESS": pl.concat_str(down_remote, pl.lit(":"), c("eph2")),
        "REQUESTED_SERVER_NAME": pl.when(inbound).then(
            pl.format("outbound_.{}_.{}_.{}", c("port"), c("subset"), c("fqdn"))
        ),
        "ROUTE_NAME": h(pl.when(c("routed")).then(pl.lit("default"))),
    }


def generate_batch(start: int, n: int, t0_ms: int) -> tuple[pl.DataFrame, int]:
    """``n`` lines (column ``line``) for rows ``start…``, times from ``t0_ms`` on; also the last time."""
    drawn = _draw(_Rand(start), n, t0_ms)
    values = _values(pl.col)
    cols = [values[op].cast(pl.String).fill_null("-") for op in OPERATORS]
    return drawn.select(pl.format(TEMPLATE, *cols).alias("line")), int(drawn["ms"][-1])


def write_lines(path: Path, n: int) -> None:
    """Write ``n`` synthetic lines to ``path``, ``BATCH`` at a time."""
    t0 = 0
    with open(path, "wb") as out:
        for start in range(0, n, BATCH):
            lines, t0 = generate_batch(start, min(BATCH, n - start), t0)
            lines.write_csv(out, include_header=False, quote_style="never")
