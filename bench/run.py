"""meshlog throughput benchmark: synthetic Istio access lines, each contender timed in its own process.

Usage (with the project's Python; the repo root is put on PYTHONPATH for the runs)::

    python bench/run.py                             # 1,000,000 lines in a temp file
    python bench/run.py --lines 100000 --keep /tmp/istio-100k.log
    python bench/run.py --profile                   # always break `meshlog parse` down by stage
    python bench/run.py --inputs --repeat 3         # only meshlog by path, through stdin and from FILE.gz

Peak RSS is per run: a tiny wrapper process spawns each contender and reaps it with
``os.wait4(pid)``, whose ``rusage`` covers that one child, never this process or earlier
runs (see ``measure`` and ``bench/README.md``). A stdin run is a pipeline ``cat FILE | meshlog … -``
that the wrapper builds itself: wall time covers both processes, peak RSS is meshlog's.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib.util
import json
import os
import platform
import re
import shutil
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
sys.path.insert(0, str(REPO))

from synth import write_lines  # noqa: E402 - bench/ is on sys.path as the script's folder; kept with the path set-up

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


READ, ENVELOPES, DETECT, PARSE = (
    "sources.LineReader: read, decode, split",
    "envelopes",
    "format detection",
    "parse_lines",
)
EXTRACT, CAST, CLUSTER = "text.extract: split plan + regex fallback", "cast.cast_fields", "derive.cluster_columns"
REASONS, REST = "text.failure_reasons", "rest: row index, joins, other_kind, filters, sort"
WRITE, GLUE = "write_rows: write_parquet", "CLI glue / unaccounted (negative: parse workers overlap)"
# (stage, level) in print order; level 1 are steps inside parse_lines
STAGES: tuple[tuple[str, int], ...] = (
    *((name, 0) for name in (READ, ENVELOPES, DETECT, PARSE)),
    *((name, 1) for name in (EXTRACT, CAST, CLUSTER, REASONS, REST)),
    *((name, 0) for name in (WRITE, GLUE)),
)


def child_profile(path: str, out: str) -> dict[str, Any]:
    """Run ``meshlog parse PATH -o parquet --out OUT`` in-process with timers around its stages.

    Each library function is wrapped where its caller looks it up, so the real code path runs.
    """
    from meshlog import cli, envelopes, export, parse, sources, stream
    from meshlog.parse import text

    timers = Timers()
    sources.LineReader.__iter__ = timers.wrap_iter(READ, sources.LineReader.__iter__)  # type: ignore[method-assign]
    envelopes.Unwrapper.feed = timers.wrap(ENVELOPES, envelopes.Unwrapper.feed)  # type: ignore[method-assign]
    envelopes.Unwrapper.flush = timers.wrap(ENVELOPES, envelopes.Unwrapper.flush)  # type: ignore[method-assign]
    stream.detect = timers.wrap(DETECT, stream.detect)
    stream.parse_lines = timers.wrap(PARSE, stream.parse_lines)  # in the parse workers: summed over threads
    text.extract = timers.wrap(EXTRACT, text.extract)
    parse.cast_fields = timers.wrap(CAST, parse.cast_fields)
    parse.cluster_columns = timers.wrap(CLUSTER, parse.cluster_columns)
    text.failure_reasons = timers.wrap(REASONS, text.failure_reasons)
    export.write_rows = timers.wrap(WRITE, export.write_rows)
    t = time.perf_counter()
    with contextlib.suppress(SystemExit):
        cli.app(["parse", path, "-o", "parquet", "--out", out], standalone_mode=False)
    total = time.perf_counter() - t
    sec = timers.seconds
    sec[REST] = sec.get(PARSE, 0.0) - sum(sec.get(n, 0.0) for n, level in STAGES if level == 1)
    sec[GLUE] = total - sum(sec.get(n, 0.0) for n, level in STAGES if level == 0)
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
    input: str | None = None  # "path", "stdin", "gz" or "engine" for the rows that compare how input arrives
    vs_path: float | None = None  # wall time over the by-path run of the same command
    base: str | None = None  # name of that by-path run


@dataclass(frozen=True)
class Case:
    name: str
    command: list[str]  # a "|" argument separates the commands of a pipeline (see _WRAPPER)
    input: str | None = None
    base: str | None = None  # name of the by-path case this one is compared with
    is_baseline: bool = False  # writes its counts as JSON to stdout (baselines.py)


# A tiny, separate process starts each run and reports that run's rusage. Reaping the run
# directly from here would be wrong: at exec a child keeps the peak RSS of the address
# space it was forked/vforked from, so every run would report at least this process's
# peak (polars + the generated batches). Through the wrapper the floor is the wrapper's own
# few MiB (``rss_floor_mib`` in the environment: /bin/true measured the same way).
# A "|" argument makes a pipeline: the wrapper joins the commands with pipes (each one spawned,
# then reaped with os.wait4), times until all have exited and reports the LAST command's peak
# RSS; the exit code is the last one's, or else the first non-zero one (pipefail).
_WRAPPER = """import os, sys, time
cmds, cur = [], []
for a in sys.argv[2:]:
    if a == "|":
        cmds.append(cur)
        cur = []
    else:
        cur.append(a)
cmds.append(cur)
t = time.perf_counter()
pids, prev = [], None
for i, cmd in enumerate(cmds):
    acts, nxt = [], None
    if prev is not None:
        acts.append((os.POSIX_SPAWN_DUP2, prev, 0))
    if i < len(cmds) - 1:
        nxt, w = os.pipe()
        acts.append((os.POSIX_SPAWN_DUP2, w, 1))
    pids.append(os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=acts))
    if prev is not None:
        os.close(prev)
    if nxt is not None:
        os.close(w)
    prev = nxt
reaped = [os.wait4(pid, 0) for pid in pids]
wall = time.perf_counter() - t
codes = [os.waitstatus_to_exitcode(status) for _, status, _ in reaped]
rc = codes[-1] or next((c for c in codes if c), 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{wall!r} {reaped[-1][2].ru_maxrss} {rc}")
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
    m = re.search(r"lines: ([\d,]+) total, ([\d,]+) access, ([\d,]+) unparsed, ([\d,]+) other", stderr)
    if m is None:
        return {}
    numbers = (int(g.replace(",", "")) for g in m.groups())
    return dict(zip(("lines", "access", "unparsed", "other"), numbers, strict=True))


# GoAccess has no Envoy preset: Istio's default text format in its --log-format language (DPE and
# TCP "- - -" lines are rejected by GoAccess; --no-strict-status keeps status 0).
GOACCESS_ISTIO = [
    "--log-format",
    '[%dT%t.%^] "%m %U %H" %s %^ %^ %^ "%^" %^ %b %L %^ "%^" "%u" "%^" "%v" "%^" %e %^ %^ %h:%^ %^ %^',
    "--date-format=%Y-%m-%d",
    "--time-format=%H:%M:%S",
    "--no-strict-status",
    "--no-global-config",
]


def cases_for(path: Path, gz: Path, work: Path, inputs_only: bool) -> list[Case]:
    """The contenders, in print order; ``inputs_only`` keeps only meshlog by path, stdin and .gz."""
    py = sys.executable
    cat = shutil.which("cat") or "/bin/cat"
    meshlog = [py, "-m", "meshlog"]
    parquet = ["-o", "parquet", "--out", str(work / "x.parquet")]
    parse, summarize = "meshlog parse -o parquet", "meshlog summarize -o json"
    piped = [cat, str(path), "|", *meshlog]  # stdin fed from a pipe: `cat FILE | meshlog ... -`
    ways = [
        Case(parse, [*meshlog, "parse", str(path), *parquet], input="path"),
        Case("cat | meshlog parse -o parquet -", [*piped, "parse", *parquet, "-"], "stdin", parse),
        Case(summarize, [*meshlog, "summarize", str(path), "-o", "json"], input="path"),
        Case("cat | meshlog summarize -o json -", [*piped, "summarize", "-o", "json", "-"], "stdin", summarize),
        Case("meshlog summarize -o json FILE.gz", [*meshlog, "summarize", str(gz), "-o", "json"], "gz", summarize),
    ]
    if importlib.util.find_spec("pyspark") and shutil.which("java"):  # the engine: Spark in this process's JVM
        spark = [*meshlog, "summarize", str(path), "-o", "json", "--engine", "spark", "--spark-remote", "local[2]"]
        ways.append(Case("meshlog summarize --engine spark local[2]", spark, "engine", summarize))
    else:
        print("  (no pyspark or java: pip install 'meshlog[spark]' to time the Spark engine)", file=sys.stderr)
    if inputs_only:
        return ways
    cases = [
        Case("B: python read loop", [py, str(HERE / "baselines.py"), "read", str(path)], is_baseline=True),
        Case("A: python re.match loop", [py, str(HERE / "baselines.py"), "re", str(path)], is_baseline=True),
        *ways,
        *startup_cases(work),
    ]
    goaccess = shutil.which("goaccess")
    if goaccess:  # the peer a user would reach for: Debian's goaccess, a full report of the same file
        report = [goaccess, str(path), *GOACCESS_ISTIO, "-o", str(work / "g.json")]
        cases.insert(2, Case("C: goaccess full report (JSON)", report))
    else:
        print("  (goaccess not installed: apt-get install goaccess to compare with it)", file=sys.stderr)
    return cases


STARTUP = ("(startup: python -c 'import polars')", "(startup: python -m meshlog --help)",
           "(startup: meshlog summarize, 20 lines)")  # fmt: skip


def startup_cases(work: Path) -> list[Case]:
    """What every run pays before its first line: polars alone, ``--help``, a 20-line ``summarize``."""
    py = sys.executable
    small = work / "twenty.log"
    sample = (REPO / "fixtures" / "sample" / "istio-proxy.log").read_text().splitlines(keepends=True)
    small.write_text("".join(sample[:20]))
    return [
        Case(STARTUP[0], [py, "-c", "import polars"]),
        Case(STARTUP[1], [py, "-m", "meshlog", "--help"]),
        Case(STARTUP[2], [py, "-m", "meshlog", "summarize", str(small), "-o", "json"]),
    ]


def print_startup(results: list[Result]) -> None:
    """The start-up targets: ``--help`` ≤ 0.25 s; a 20-line ``summarize`` ≤ 0.2 s over polars' import."""
    by = {r.name: r for r in results}
    if not all(name in by for name in STARTUP):
        return
    polars, help_, small = (by[name].wall_s for name in STARTUP)
    print(f"\nstart-up: --help {help_:.2f} s (target <= 0.25 s); summarize of 20 lines {small:.2f} s = "
          f"import polars {polars:.2f} s + {small - polars:.2f} s (target <= +0.20 s)")  # fmt: skip


def run_all(cases: list[Case], n: int, work: Path, repeat: int) -> list[Result]:
    """Every case on the same bytes: the fastest of ``repeat`` runs, with the highest peak RSS seen.

    The repeats go round-robin over the cases (all cases, then all again), so a change in the
    machine's load falls on every row rather than on one, which matters for the ratios.
    """
    runs: dict[str, list[Result]] = {c.name: [] for c in cases}
    for rep in range(repeat):
        for case in cases:
            out = work / "child.json"
            wall, rss, rc, err = measure(case.command, out if case.is_baseline else None)
            if rc != 0:
                print(f"  {case.name}: exit {rc}\n{err[-2000:]}", file=sys.stderr)
            counts = json.loads(out.read_text()) if case.is_baseline and rc == 0 else _meshlog_counts(err)
            if "goaccess" in case.name and rc == 0:
                general = json.loads((work / "g.json").read_text())["general"]
                counts = {"lines": general["total_requests"], "valid": general["valid_requests"]}
            lines = 0 if case.name.startswith("(startup") else n
            result = Result(case.name, case.command, wall, lines / wall, rss, rc, counts, case.input, base=case.base)
            runs[case.name].append(result)
            print(f"  [{rep + 1}/{repeat}] {case.name:38} {wall:7.2f} s", file=sys.stderr, flush=True)
    results: list[Result] = []
    for case in cases:
        best = min(runs[case.name], key=lambda r: r.wall_s)
        best.peak_rss_mib = max(r.peak_rss_mib for r in runs[case.name])
        if best.lines_per_s and best.counts.get("lines") != n:
            print(f"  warning: {case.name} saw {best.counts.get('lines')} lines, expected {n}", file=sys.stderr)
        results.append(best)
    by = {r.name: r for r in results}
    for case, r in zip(cases, results, strict=True):  # one result per case
        if case.input == "path":
            r.vs_path = 1.0
        elif case.base in by:
            r.vs_path = r.wall_s / by[case.base].wall_s
    return results


def write_gz(path: Path) -> tuple[Path, float | None]:
    """``PATH.gz`` next to the log (Python's gzip, level 6), reused while it is newer than the log."""
    gz = path.with_name(path.name + ".gz")
    if gz.exists() and gz.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return gz, None
    t = time.perf_counter()
    tmp = gz.with_name(gz.name + ".tmp")
    with open(path, "rb") as src, open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    os.replace(tmp, gz)
    return gz, time.perf_counter() - t


def environment() -> dict[str, Any]:
    """Where the numbers come from."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
    cpu = models[0] if cpuinfo.exists() and models else platform.processor()
    git = ["git", "-C", str(REPO), "describe", "--always", "--dirty"]
    commit = subprocess.run(git, check=False, capture_output=True, text=True)
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
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),  # other work on the machine skews wall times
    }


def print_table(results: list[Result]) -> None:
    print(f"\n{'run':38} {'wall s':>8} {'lines/s':>12} {'peak RSS MiB':>13} {'vs path':>8}  counts")
    for r in results:
        rate = f"{r.lines_per_s:,.0f}" if r.lines_per_s else "-"
        vs = f"{r.vs_path:.2f}x" if r.vs_path is not None else ""
        counts = " ".join(f"{k}={v}" for k, v in r.counts.items())
        print(f"{r.name:38} {r.wall_s:8.2f} {rate:>12} {r.peak_rss_mib:13.1f} {vs:>8}  {counts}")


def print_inputs(results: list[Result]) -> None:
    """One line per command: each way of feeding it next to the by-path run."""
    label = {"stdin": "stdin", "gz": ".gz", "engine": "Spark local[2]"}
    print("\nsame bytes, other ways in (wall vs the by-path run; peak RSS, MiB):")
    for base in ("meshlog parse -o parquet", "meshlog summarize -o json"):
        path = next((r for r in results if r.name == base), None)
        others = [r for r in results if r.base == base and r.vs_path is not None]
        if path is None or not others:
            continue
        parts = [f"{label.get(str(r.input), r.input)} {r.vs_path:.2f}x file (RSS {r.peak_rss_mib:.0f})" for r in others]
        print(f"  {base:26} file {path.wall_s:.2f} s (RSS {path.peak_rss_mib:.0f}); " + ", ".join(parts))


def print_profile(prof: dict[str, Any]) -> None:
    total = prof["command_seconds"]
    print("\nmeshlog parse, stage profile in one process (wall time per stage; polars uses all threads inside each)")
    print(f"  {'command total (imports excluded: see the startup row)':58} {total:7.2f} s  100.0%")
    for st in prof["stages"]:
        label = "  " * (st["level"] + 1) + st["stage"]
        calls = f"  {st['calls']} calls" if st["calls"] > 1 else ""
        print(f"{label:60} {st['seconds']:7.2f} s {100 * st['seconds'] / total:6.1f}%{calls}")


def state_size(path: Path) -> dict[str, int]:
    """The size of the whole file's summary state (``reports.state``): what a remote engine returns."""
    from meshlog.pipeline import Run, parse_paths
    from meshlog.reports.fold import Folded
    from meshlog.reports.state import STATE_COLUMNS

    folded = Folded()
    for piece in parse_paths([str(path)], Run(), columns=STATE_COLUMNS, then=folded.chunk):
        folded.add(piece)
    state = folded.state
    tables = (state.requests, state.durations, state.upstream_times, state.gaps, state.attempts,
              state.error_paths, state.grid, state.slowest)  # fmt: skip
    return {"bytes": state.nbytes(), "rows": sum(t.height for t in tables)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="synthetic lines to generate (default 1,000,000)")
    ap.add_argument("--keep", type=Path, help="reuse this log file if it has --lines lines, else write it there")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender; the fastest is reported")
    ap.add_argument("--profile", action="store_true", help="always run the stage profile of `meshlog parse`")
    ap.add_argument(
        "--inputs", action="store_true", help="run only meshlog by path, through stdin (cat |) and from FILE.gz"
    )
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
        gz, gz_s = write_gz(path)
        gz_size = gz.stat().st_size
        how = f"written in {gz_s:.1f} s" if gz_s is not None else "reused"
        print(f"gzip: {gz} ({gz_size / 2**20:,.1f} MiB, level 6, {how})", file=sys.stderr)

        env = environment()
        results = run_all(cases_for(path, gz, work, args.inputs), args.lines, work, args.repeat)
        by = {r.name: r for r in results}
        ratio = None
        if "A: python re.match loop" in by:
            ratio = by["A: python re.match loop"].wall_s / by["meshlog parse -o parquet"].wall_s
        state = state_size(path)
        profile = None
        if args.profile or (ratio is not None and ratio < 1):
            out = work / "child.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--profile-child", str(path), str(work / "p.parquet")]
            _, rss, rc, err = measure(cmd, out)
            profile = {**json.loads(out.read_text()), "peak_rss_mib": rss} if rc == 0 else {"error": err[-2000:]}

    gen = f", generated in {gen_s:.1f} s" if gen_s else ""
    print(f"\n{args.lines:,} lines, {size / 2**20:,.1f} MiB{gen}; FILE.gz {gz_size / 2**20:,.1f} MiB (gzip level 6)")
    print_table(results)
    print_inputs(results)
    print_startup(results)
    if ratio is not None:
        faster = "faster" if ratio >= 1 else "slower"
        print(f"\nmeshlog parse vs re loop: {ratio:.2f}x {faster} (re wall / meshlog wall)")
    if "C: goaccess full report (JSON)" in by:
        g = by["C: goaccess full report (JSON)"].wall_s / by["meshlog summarize -o json"].wall_s
        print(f"meshlog summarize vs goaccess full report: {g:.1f}x faster (target: >= 30x)")
    if profile and "stages" in profile:
        print_profile(profile)
    elif profile:
        print(f"\nprofile failed:\n{profile['error']}")
    print(f"\nsummary state: {state['bytes']:,} bytes ({state['rows']:,} table rows) for {args.lines:,} lines; "
          "what an engine sends back")  # fmt: skip
    print("\nenvironment: " + ", ".join(f"{k}={v}" for k, v in env.items()))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "lines": args.lines,
        "file_bytes": size,
        "gz_bytes": gz_size,
        "gz_write_seconds": gz_s,
        "generate_seconds": gen_s,
        "environment": env,
        "results": [asdict(r) for r in results],
        "meshlog_parse_vs_re_speedup": ratio,
        "summary_state": state,
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
