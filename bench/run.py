"""meshlog throughput benchmark: synthetic Istio access lines, each contender timed in its own process.

Usage (with the project's Python; the repo root is put on PYTHONPATH for the runs)::

    python bench/run.py                             # 1,000,000 lines in a temp file
    python bench/run.py --lines 100000 --keep /tmp/istio-100k.log
    python bench/run.py --profile                   # always break `meshlog parse` down by stage

Peak RSS is per run: a tiny wrapper process spawns each contender and reaps it with
``os.wait4(pid)``, whose ``rusage`` covers that one child, never this process or earlier
runs (see ``measure`` and ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BATCH = 250_000
START_US = 1_795_640_400_000_000  # 2026-11-25T21:00:00Z in microseconds

# ---------------------------------------------------------------- synthetic lines


@dataclass(frozen=True)
class Outcome:
    """One kind of request outcome, as Envoy prints it in the Istio format."""

    weight: int
    code: str
    flags: str = "-"
    details: str = "via_upstream"
    tfr: str = "-"  # %UPSTREAM_TRANSPORT_FAILURE_REASON%
    host: bool = True  # an upstream host was picked
    local: bool = True  # an upstream connection exists (%UPSTREAM_LOCAL_ADDRESS%)
    ust: bool = True  # x-envoy-upstream-service-time was returned
    routed: bool = True  # a route (and so a cluster) matched
    sent: int = -1  # fixed %BYTES_SENT% (a local reply body), -1: random
    dur_min: int = 0
    dur_mean: int = 12
    tcp: bool = False  # a TCP proxy line: "- - -" and no HTTP headers


_REFUSED = "delayed_connect_error:_Connection_refused"
_TLS = "TLS_error:_268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED"
OUTCOMES: tuple[Outcome, ...] = (
    Outcome(8700, "200"),
    Outcome(300, "404", sent=153),
    Outcome(50, "500", sent=21, dur_mean=40),
    Outcome(300, "404", "NR", "route_not_found", host=False, local=False, ust=False, routed=False, sent=0, dur_mean=0),
    Outcome(
        100,
        "503",
        "UF,URX",
        f"upstream_reset_before_response_started{{remote_connection_failure|{_REFUSED}}}",
        _REFUSED,
        local=False,
        ust=False,
        sent=121,
        dur_min=25,
        dur_mean=20,
    ),
    Outcome(
        100,
        "503",
        "URX,UF",
        f"upstream_reset_before_response_started{{remote_connection_failure|{_REFUSED}}}",
        _REFUSED,
        local=False,
        ust=False,
        sent=121,
        dur_min=25,
        dur_mean=20,
    ),
    Outcome(
        30,
        "503",
        "UF",
        f"upstream_reset_before_response_started{{connection_failure,{_TLS}}}",
        _TLS,
        local=False,
        ust=False,
        sent=190,
        dur_mean=3,
    ),
    Outcome(
        30,
        "503",
        "UF",
        "upstream_reset_before_response_started{connection_failure}",
        "delayed_connect_error:_111",
        local=False,
        ust=False,
        sent=91,
        dur_mean=2,
    ),
    Outcome(150, "503", "UH", "no_healthy_upstream", host=False, local=False, ust=False, sent=19, dur_mean=0),
    Outcome(100, "504", "UT", "response_timeout", ust=False, sent=24, dur_min=15000, dur_mean=3),
    Outcome(100, "0", "DC", "downstream_remote_disconnect", ust=False, sent=0, dur_min=50, dur_mean=2000),
    Outcome(80, "429", "RL", "local_rate_limited", host=False, local=False, ust=False, sent=18, dur_mean=0),
    Outcome(
        40,
        "503",
        "UC",
        "upstream_reset_before_response_started{connection_termination}",
        ust=False,
        sent=95,
        dur_mean=5,
    ),
    Outcome(100, "0", details="-", ust=False, dur_min=100, dur_mean=30000, tcp=True),
)

# (service, namespace, port, subsets)
SERVICES = (
    ("productpage", "default", 9080, ("v1",)),
    ("reviews", "default", 9080, ("v1", "v2", "v3")),
    ("ratings", "default", 9080, ("v1",)),
    ("details", "default", 9080, ("v1",)),
    ("httpbin", "foo", 8000, ("",)),
    ("payments", "shop", 8080, ("v1", "v2")),
)
METHODS = {"GET": 70, "POST": 18, "PUT": 4, "DELETE": 2, "PATCH": 1, "HEAD": 1, "OPTIONS": 2}
PATHS = {
    "/productpage": 20,
    "/reviews/": 15,
    "/ratings/": 15,
    "/details/": 10,
    "/api/v1/products": 8,
    "/api/v1/products/": 8,
    "/static/bootstrap/css/bootstrap.min.css": 3,
    "/login": 2,
    "/logout": 1,
    "/healthz/ready": 5,
    "/status/418": 1,
    "/anything?show_env=1&x=": 2,
    "/api/v1/orders?page=": 4,
    "/api/v1/orders/": 6,
}  # a path ending in "/" or "=" gets a random number appended
AGENTS = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36": 250,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15": 120,
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0": 60,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148": 80,
    "Go-http-client/1.1": 120,
    "python-requests/2.31.0": 60,
    "curl/8.5.0": 40,
    "okhttp/4.12.0": 40,
    "grpc-go/1.62.1": 50,
    "kube-probe/1.29": 50,
    "Apache-HttpClient/4.5.14 (Java/17.0.10)": 40,
    "Prometheus/2.51.2": 20,
    "Envoy/HC": 10,
    "-": 59,
    'Mozilla/5.0 (compatible; "Scanbot"/2.1; +http://scan.example/bot)': 1,  # a double quote: ~0.1%
}
XFF = {"-": 880, "203.0.113.{n}": 100, "198.51.100.{n},10.244.3.17": 10, "2001:db8::{n}": 10}


def _u(seed: int, start: int) -> pl.Expr:
    """Deterministic pseudo-random UInt64 per row (row number hashed with a seed)."""
    return (pl.int_range(pl.len(), dtype=pl.UInt64) + start).hash(seed)


def _pick(weights: dict[str, int], seed: int, start: int) -> pl.Expr:
    """A weighted random choice per row from a small table of strings."""
    pool = pl.Series([v for v, w in weights.items() for _ in range(w)], dtype=pl.String)
    return pl.lit(pool).gather(_u(seed, start) % len(pool))


def _int(seed: int, start: int, lo: int, hi: int) -> pl.Expr:
    """Uniform integer in [lo, hi)."""
    return (_u(seed, start) % (hi - lo)).cast(pl.Int64) + lo


def _exp(seed: int, start: int, mean: pl.Expr) -> pl.Expr:
    """Exponentially distributed integer with the given mean (long-tailed sizes and latencies)."""
    u = (_u(seed, start) % 1_000_000).cast(pl.Float64) / 1_000_000
    return (-(1.0 - u).log() * mean).floor().cast(pl.Int64)


def _s(e: pl.Expr) -> pl.Expr:
    return e.cast(pl.String)


def _uuids(n: int) -> pl.Series:
    """Random version-4 UUIDs."""
    h = os.urandom(16 * n).hex()
    raw = pl.Series("h", [h[i : i + 32] for i in range(0, 32 * n, 32)])
    c = pl.col("h").str
    return (
        pl.DataFrame(raw)
        .select(
            pl.concat_str(
                [
                    c.slice(0, 8),
                    c.slice(8, 4),
                    pl.lit("4") + c.slice(13, 3),
                    pl.lit("a") + c.slice(17, 3),
                    c.slice(20, 12),
                ],
                separator="-",
            )
        )
        .to_series()
    )


def _outcome_col(name: str, idx: pl.Expr) -> pl.Expr:
    values = [getattr(o, name) for o in OUTCOMES]
    return pl.lit(pl.Series(values)).gather(idx)


def generate_batch(start: int, n: int, t0_ms: int) -> tuple[pl.DataFrame, int]:
    """``n`` Istio-format lines (column ``line``) for rows ``start…``; returns the frame and the last ms offset."""
    pool = [i for i, o in enumerate(OUTCOMES) for _ in range(o.weight)]
    idx = pl.lit(pl.Series(pool, dtype=pl.UInt32)).gather(_u(1, start) % len(pool))
    svc = [(s, ns, port, sub) for s, ns, port, subs in SERVICES for sub in subs]
    svc_idx = _u(2, start) % len(svc)

    def svc_col(fn: Callable[[tuple[str, str, int, str]], str]) -> pl.Expr:
        return pl.lit(pl.Series([fn(x) for x in svc])).gather(svc_idx)

    frame = pl.DataFrame({"rid": _uuids(n)}).with_columns(
        **{
            f: _outcome_col(f, idx)
            for f in (
                "code",
                "flags",
                "details",
                "tfr",
                "host",
                "local",
                "ust",
                "routed",
                "sent",
                "dur_min",
                "dur_mean",
                "tcp",
            )
        },
        ms=t0_ms + _int(3, start, 0, 3).cum_sum(),
        inbound=_u(4, start) % 10 < 4,
        ipv6=_u(5, start) % 100 == 0,
        method=_pick(METHODS, 6, start),
        path=_pick(PATHS, 7, start),
        proto=_pick({"HTTP/1.1": 7, "HTTP/2": 3}, 8, start),
        ua=_pick(AGENTS, 9, start),
        xff=_pick(XFF, 10, start),
        port=svc_col(lambda x: str(x[2])),
        fqdn=svc_col(lambda x: f"{x[0]}.{x[1]}.svc.cluster.local"),
        subset=svc_col(lambda x: x[3]),
        authority=svc_col(lambda x: f"{x[0]}:{x[2]}" if x[1] == "default" else f"{x[0]}.{x[1]}:{x[2]}"),
        own_ip=pl.concat_str([pl.lit("10.244."), _s(_int(11, start, 0, 16)), pl.lit("."), _s(_int(12, start, 2, 254))]),
        peer_ip=pl.concat_str(
            [pl.lit("10.244."), _s(_int(13, start, 0, 16)), pl.lit("."), _s(_int(14, start, 2, 254))]
        ),
        vip=pl.concat_str([pl.lit("10.96."), _s(_int(15, start, 0, 4)), pl.lit("."), _s(_int(16, start, 1, 254))]),
        eph1=_s(_int(17, start, 32768, 61000)),
        eph2=_s(_int(18, start, 32768, 61000)),
        num=_s(_int(19, start, 0, 5000)),
        n8=_s(_int(20, start, 1, 255)),
        v6=pl.concat_str(
            [pl.lit("[fd00:10:244:"), _s(_int(21, start, 0, 16)), pl.lit("::"), _s(_int(22, start, 2, 254))]
        ),
    )
    c = pl.col
    dur = c("dur_min") + _exp(23, start, c("dur_mean").cast(pl.Float64))
    body = c("method").is_in(["POST", "PUT", "PATCH"])
    frame = frame.with_columns(
        ts=(pl.lit(START_US) + c("ms") * 1000).cast(pl.Datetime("us", "UTC")).dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ"),
        dur=dur,
        ust_v=pl.when(c("ust")).then(_s((dur - _int(24, start, 0, 3)).clip(0))).otherwise(pl.lit("-")),
        recv=_s(
            pl.when(c("tcp"))
            .then(_exp(25, start, pl.lit(2000.0)))
            .when(body)
            .then(20 + _exp(26, start, pl.lit(800.0)))
            .otherwise(0)
        ),
        sent_v=_s(pl.when(c("sent") >= 0).then(c("sent")).otherwise(100 + _exp(27, start, pl.lit(6000.0)))),
        path=pl.when(c("path").str.ends_with("/") | c("path").str.ends_with("="))
        .then(c("path") + c("num"))
        .otherwise(c("path")),
        xff=c("xff").str.replace("{n}", c("n8"), literal=True),
        dst=pl.when(c("inbound")).then(c("own_ip")).otherwise(c("peer_ip")) + ":" + c("port"),  # the serving pod
        src_addr=pl.when(c("ipv6"))
        .then(c("v6") + "]:" + c("eph2"))
        .otherwise(pl.when(c("inbound")).then(c("peer_ip")).otherwise(c("own_ip")) + ":" + c("eph2")),
    )
    http = ~c("tcp")
    dash = pl.lit("-")
    cluster = (
        pl.when(~c("routed"))
        .then(dash)
        .when(c("inbound"))
        .then(pl.lit("inbound|") + c("port") + "||")
        .otherwise(pl.concat_str([pl.lit("outbound"), c("port"), c("subset"), c("fqdn")], separator="|"))
    )
    parts: list[pl.Expr] = [
        pl.lit("["),
        c("ts"),
        pl.lit('] "'),
        pl.when(http).then(c("method") + " " + c("path") + " " + c("proto")).otherwise(pl.lit("- - -")),
        pl.lit('" '),
        c("code"),
        pl.lit(" "),
        c("flags"),
        pl.lit(" "),
        c("details"),
        pl.lit(' - "'),
        c("tfr"),
        pl.lit('" '),
        c("recv"),
        pl.lit(" "),
        c("sent_v"),
        pl.lit(" "),
        _s(c("dur")),
        pl.lit(" "),
        c("ust_v"),
        pl.lit(' "'),
        pl.when(http).then(c("xff")).otherwise(dash),
        pl.lit('" "'),
        pl.when(http).then(c("ua")).otherwise(dash),
        pl.lit('" "'),
        pl.when(http).then(c("rid")).otherwise(dash),
        pl.lit('" "'),
        pl.when(http).then(c("authority")).otherwise(dash),
        pl.lit('" "'),
        pl.when(c("host")).then(c("dst")).otherwise(dash),
        pl.lit('" '),
        cluster,
        pl.lit(" "),
        pl.when(~c("local"))
        .then(dash)
        .when(c("inbound"))
        .then(pl.lit("127.0.0.6:") + c("eph1"))
        .otherwise(c("own_ip") + ":" + c("eph1")),
        pl.lit(" "),
        pl.when(c("ipv6"))
        .then(c("v6") + "]:" + c("port"))
        .when(c("inbound"))
        .then(c("dst"))
        .otherwise(c("vip") + ":" + c("port")),
        pl.lit(" "),
        c("src_addr"),
        pl.lit(" "),
        pl.when(c("inbound"))
        .then(pl.concat_str([pl.lit("outbound_"), c("port") + "_", c("subset") + "_", c("fqdn")], separator="."))
        .otherwise(dash),
        pl.lit(" "),
        pl.when(c("routed") & http).then(pl.lit("default")).otherwise(dash),
    ]
    lines = frame.select(pl.concat_str(parts).alias("line"))
    return lines, int(frame["ms"][-1]) if n else t0_ms


def write_lines(path: Path, n: int) -> None:
    """Write ``n`` synthetic lines to ``path`` in batches."""
    t0 = 0
    with open(path, "wb") as out:
        for start in range(0, n, BATCH):
            lines, t0 = generate_batch(start, min(BATCH, n - start), t0)
            lines.write_csv(out, include_header=False, quote_style="never")


# ---------------------------------------------------------------- stage profile of `meshlog parse` (child)


@dataclass
class Timers:
    """Accumulated wall seconds per stage."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t)

        return timed

    def wrap_iter(self, name: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        """Time only the generator's own steps (not the consumer's work between them)."""

        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            it = fn(*args, **kwargs)
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    self.add(name, time.perf_counter() - t)
                    return
                self.add(name, time.perf_counter() - t)
                yield item

        return timed

    def add(self, name: str, dt: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        self.calls[name] = self.calls.get(name, 0) + 1


# (label, indent) in print order; parse_lines' own steps are indented under it.
STAGES: tuple[tuple[str, int], ...] = (
    ("import meshlog.cli (polars, typer)", 0),
    ("sources.read_lines: read, decode, split into lines", 0),
    ("envelopes.detect + unwrap", 0),
    ("format detection (parse.detect)", 0),
    ("parse_lines", 0),
    ("text.extract: split plan + regex fallback", 1),
    ("cast.cast_fields: types + reasons", 1),
    ("derive.cluster_columns", 1),
    ("text.failure_reasons", 1),
    ("rest: row index, joins, other_kind, filters, sort", 1),
    ("AccessLog.concat: chunks -> one frame", 0),
    ("write_rows: write_parquet", 0),
    ("CLI glue / unaccounted", 0),
)


def child_profile(path: str, out: str) -> dict[str, Any]:
    """Run ``meshlog parse PATH -o parquet --out OUT`` in-process with timers around its stages.

    Each library function is wrapped where its caller looks it up, so the real code path runs.
    """
    t = time.perf_counter()
    import meshlog.cli as cli
    import meshlog.cli.commands as commands
    import meshlog.envelopes as envelopes
    import meshlog.parse as parse
    import meshlog.parse.text as text
    import meshlog.pipeline as pipeline

    timers = Timers()
    timers.add(STAGES[0][0], time.perf_counter() - t)
    names = [name for name, _ in STAGES]
    pipeline.read_lines = timers.wrap_iter(names[1], pipeline.read_lines)
    envelopes.detect = timers.wrap(names[2], envelopes.detect)
    envelopes.unwrap = timers.wrap(names[2], envelopes.unwrap)
    pipeline.detect = timers.wrap(names[3], pipeline.detect)
    pipeline.parse_lines = timers.wrap(names[4], pipeline.parse_lines)
    text.extract = timers.wrap(names[5], text.extract)
    parse.cast_fields = timers.wrap(names[6], parse.cast_fields)
    parse.cluster_columns = timers.wrap(names[7], parse.cluster_columns)
    text.failure_reasons = timers.wrap(names[8], text.failure_reasons)
    parse.AccessLog.concat = staticmethod(timers.wrap(names[10], parse.AccessLog.concat))  # type: ignore[method-assign]
    commands.write_rows = timers.wrap(names[11], commands.write_rows)
    t = time.perf_counter()
    try:
        cli.app(["parse", path, "-o", "parquet", "--out", out], standalone_mode=False)
    except SystemExit:
        pass
    total = time.perf_counter() - t
    sec = timers.seconds
    sec[names[9]] = sec.get(names[4], 0.0) - sum(sec.get(n, 0.0) for n, level in STAGES if level == 1)
    sec[names[12]] = total - sum(sec.get(n, 0.0) for n, level in STAGES[1:12] if level == 0)
    stages = [
        {"stage": n, "level": lv, "seconds": sec.get(n, 0.0), "calls": timers.calls.get(n, 0)} for n, lv in STAGES
    ]
    return {"command_seconds": total, "stages": stages}


# ---------------------------------------------------------------- measuring


@dataclass
class Result:
    name: str
    command: list[str]
    wall_s: float
    lines_per_s: float
    peak_rss_mib: float
    returncode: int
    counts: dict[str, int]


# A tiny, separate process starts each run and reports that run's rusage. Reaping the run
# directly from here would be wrong: at exec a child keeps the peak RSS of the address
# space it was forked/vforked from, so every run would report at least this process's
# peak (polars + the generated batches). Through the wrapper the floor is the wrapper's own
# few MiB (``rss_floor_mib`` in the environment: /bin/true measured the same way).
_WRAPPER = """import os, sys, time
t = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t
with open(sys.argv[1], "w") as f:
    f.write(f"{wall!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def measure(cmd: list[str], stdout: Path | None) -> tuple[float, float, int, str]:
    """Run ``cmd`` via the wrapper: wall seconds, peak RSS of that run (MiB), exit code, stderr text."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with (
        tempfile.NamedTemporaryFile("r", suffix=".rusage") as report,
        open(stdout or os.devnull, "wb") as out,
        tempfile.TemporaryFile() as err,
    ):
        subprocess.run(
            [sys.executable, "-I", "-S", "-c", _WRAPPER, report.name, *cmd], stdout=out, stderr=err, env=env, check=True
        )
        wall, maxrss_kib, rc = report.read().split()
        err.seek(0)
        return float(wall), int(maxrss_kib) / 1024, int(rc), err.read().decode(errors="replace")


def _meshlog_counts(stderr: str) -> dict[str, int]:
    m = re.search(r"lines: (\d+) total, (\d+) access, (\d+) unparsed, (\d+) other", stderr)
    return dict(zip(("lines", "access", "unparsed", "other"), map(int, m.groups()))) if m else {}


def run_all(path: Path, n: int, work: Path, repeat: int) -> list[Result]:
    """Every contender on the same file: the fastest of ``repeat`` runs, with the highest peak RSS seen."""
    py = sys.executable
    parquet = work / "x.parquet"
    cases: list[tuple[str, list[str], bool]] = [
        ("B: python read loop", [py, str(HERE / "baselines.py"), "read", str(path)], True),
        ("A: python re.match loop", [py, str(HERE / "baselines.py"), "re", str(path)], True),
        (
            "meshlog parse -o parquet",
            [py, "-m", "meshlog", "parse", str(path), "-o", "parquet", "--out", str(parquet)],
            False,
        ),
        ("meshlog summarize -o json", [py, "-m", "meshlog", "summarize", str(path), "-o", "json"], False),
        ("(startup: python -m meshlog --help)", [py, "-m", "meshlog", "--help"], False),
    ]
    results: list[Result] = []
    for name, cmd, is_baseline in cases:
        runs: list[Result] = []
        for _ in range(repeat):
            out = work / "child.json"
            wall, rss, rc, err = measure(cmd, out if is_baseline else None)
            if rc != 0:
                print(f"  {name}: exit {rc}\n{err[-2000:]}", file=sys.stderr)
            counts = json.loads(out.read_text()) if is_baseline and rc == 0 else _meshlog_counts(err)
            lines = 0 if "--help" in cmd else n
            runs.append(Result(name, cmd, wall, lines / wall, rss, rc, counts))
        best = min(runs, key=lambda r: r.wall_s)
        best.peak_rss_mib = max(r.peak_rss_mib for r in runs)
        if lines and best.counts.get("lines") != n:
            print(f"  warning: {name} saw {best.counts.get('lines')} lines, expected {n}", file=sys.stderr)
        results.append(best)
        print(f"  {name:38} {best.wall_s:7.2f} s", file=sys.stderr, flush=True)
    return results


def environment() -> dict[str, Any]:
    """Where the numbers come from."""
    cpu = (
        next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
        if os.path.exists("/proc/cpuinfo")
        else platform.processor()
    )
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu,
        "polars_threads": pl.thread_pool_size(),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "platform": platform.platform(),
        "meshlog_commit": commit.stdout.strip() or None,
        "rss_floor_mib": round(measure(["/bin/true"], None)[1], 1),
    }


def print_table(results: list[Result]) -> None:
    print(f"\n{'run':38} {'wall s':>8} {'lines/s':>12} {'peak RSS MiB':>13}  counts")
    for r in results:
        rate = f"{r.lines_per_s:,.0f}" if r.lines_per_s else "-"
        counts = " ".join(f"{k}={v}" for k, v in r.counts.items())
        print(f"{r.name:38} {r.wall_s:8.2f} {rate:>12} {r.peak_rss_mib:13.1f}  {counts}")


def print_profile(prof: dict[str, Any]) -> None:
    total = prof["command_seconds"]
    print(f"\nmeshlog parse, stage profile in one process (wall time per stage; polars uses all threads inside each)")
    first, *rest = prof["stages"]
    print(f"  {first['stage'] + ' (before the command, not in its total)':58} {first['seconds']:7.2f} s")
    print(f"  {'command total':58} {total:7.2f} s  100.0%")
    for st in rest:
        label = "  " * (st["level"] + 1) + st["stage"]
        calls = f"  {st['calls']} calls" if st["calls"] > 1 else ""
        print(f"{label:60} {st['seconds']:7.2f} s {100 * st['seconds'] / total:6.1f}%{calls}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="synthetic lines to generate (default 1,000,000)")
    ap.add_argument("--keep", type=Path, help="reuse this log file if it has --lines lines, else write it there")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender; the fastest is reported")
    ap.add_argument("--profile", action="store_true", help="always run the stage profile of `meshlog parse`")
    ap.add_argument("--json", type=Path, default=HERE / "out" / "results.json", help="where to write results")
    ap.add_argument("--profile-child", nargs=2, metavar=("LOG", "PARQUET"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.profile_child:
        print(json.dumps(child_profile(*args.profile_child)))
        return 0

    with tempfile.TemporaryDirectory(prefix="meshlog-bench-") as tmp:
        work = Path(tmp)
        path = args.keep or work / "istio.log"
        gen_s = None
        if args.keep and path.exists() and _count_lines(path) == args.lines:
            print(f"reusing {path}", file=sys.stderr)  # a file with another line count is rewritten
        else:
            t = time.perf_counter()
            write_lines(path, args.lines)
            gen_s = time.perf_counter() - t
            print(f"generated {args.lines:,} lines in {gen_s:.1f} s", file=sys.stderr)
        size = path.stat().st_size
        print(f"file: {path} ({size / 2**20:,.1f} MiB, {size / args.lines:.0f} bytes/line)", file=sys.stderr)

        env = environment()
        results = run_all(path, args.lines, work, args.repeat)
        by = {r.name: r for r in results}
        ratio = by["A: python re.match loop"].wall_s / by["meshlog parse -o parquet"].wall_s
        profile = None
        if args.profile or ratio < 1:
            out = work / "child.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--profile-child", str(path), str(work / "p.parquet")]
            _, rss, rc, err = measure(cmd, out)
            profile = {**json.loads(out.read_text()), "peak_rss_mib": rss} if rc == 0 else {"error": err[-2000:]}

    print(f"\n{args.lines:,} lines, {size / 2**20:,.1f} MiB" + (f", generated in {gen_s:.1f} s" if gen_s else ""))
    print_table(results)
    print(f"\nmeshlog parse vs re loop: {ratio:.2f}x {'faster' if ratio >= 1 else 'slower'} (re wall / meshlog wall)")
    if profile and "stages" in profile:
        print_profile(profile)
    elif profile:
        print(f"\nprofile failed:\n{profile['error']}")
    print("\nenvironment: " + ", ".join(f"{k}={v}" for k, v in env.items()))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "lines": args.lines,
        "file_bytes": size,
        "generate_seconds": gen_s,
        "environment": env,
        "results": [asdict(r) for r in results],
        "meshlog_parse_vs_re_speedup": ratio,
        "parse_profile": profile,
    }
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results: {args.json}")
    return 0


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))


if __name__ == "__main__":
    sys.exit(main())
