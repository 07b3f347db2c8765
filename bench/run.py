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

from synth import write_lines  # bench/ is on sys.path as the script's folder

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
    "sources.read_lines: read, decode, split",
    "envelopes",
    "format detection",
    "parse_lines",
)
EXTRACT, CAST, CLUSTER = "text.extract: split plan + regex fallback", "cast.cast_fields", "derive.cluster_columns"
REASONS, REST = "text.failure_reasons", "rest: row index, joins, other_kind, filters, sort"
CONCAT, WRITE, GLUE = "AccessLog.concat: chunks -> one frame", "write_rows: write_parquet", "CLI glue / unaccounted"
# (stage, level) in print order; level 1 are steps inside parse_lines
STAGES: tuple[tuple[str, int], ...] = (
    *((name, 0) for name in (READ, ENVELOPES, DETECT, PARSE)),
    *((name, 1) for name in (EXTRACT, CAST, CLUSTER, REASONS, REST)),
    *((name, 0) for name in (CONCAT, WRITE, GLUE)),
)


def child_profile(path: str, out: str) -> dict[str, Any]:
    """Run ``meshlog parse PATH -o parquet --out OUT`` in-process with timers around its stages.

    Each library function is wrapped where its caller looks it up, so the real code path runs.
    """
    from meshlog import cli, envelopes, parse, pipeline
    from meshlog.cli import commands
    from meshlog.parse import text

    timers = Timers()
    pipeline.read_lines = timers.wrap_iter(READ, pipeline.read_lines)
    envelopes.Unwrapper.feed = timers.wrap(ENVELOPES, envelopes.Unwrapper.feed)  # type: ignore[method-assign]
    envelopes.Unwrapper.flush = timers.wrap(ENVELOPES, envelopes.Unwrapper.flush)  # type: ignore[method-assign]
    pipeline.detect = timers.wrap(DETECT, pipeline.detect)
    pipeline.parse_lines = timers.wrap(PARSE, pipeline.parse_lines)
    text.extract = timers.wrap(EXTRACT, text.extract)
    parse.cast_fields = timers.wrap(CAST, parse.cast_fields)
    parse.cluster_columns = timers.wrap(CLUSTER, parse.cluster_columns)
    text.failure_reasons = timers.wrap(REASONS, text.failure_reasons)
    parse.AccessLog.concat = staticmethod(timers.wrap(CONCAT, parse.AccessLog.concat))  # type: ignore[method-assign]
    commands.write_rows = timers.wrap(WRITE, commands.write_rows)
    t = time.perf_counter()
    try:
        cli.app(["parse", path, "-o", "parquet", "--out", out], standalone_mode=False)
    except SystemExit:
        pass
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
    goaccess = shutil.which("goaccess")
    if goaccess:  # the peer a user would reach for: Debian's goaccess, a full report of the same file
        cases.insert(
            2,
            (
                "C: goaccess full report (JSON)",
                [goaccess, str(path), *GOACCESS_ISTIO, "-o", str(work / "g.json")],
                False,
            ),
        )
    else:
        print("  (goaccess not installed: apt-get install goaccess to compare with it)", file=sys.stderr)
    results: list[Result] = []
    for name, cmd, is_baseline in cases:
        runs: list[Result] = []
        for _ in range(repeat):
            out = work / "child.json"
            wall, rss, rc, err = measure(cmd, out if is_baseline else None)
            if rc != 0:
                print(f"  {name}: exit {rc}\n{err[-2000:]}", file=sys.stderr)
            counts = json.loads(out.read_text()) if is_baseline and rc == 0 else _meshlog_counts(err)
            if "goaccess" in name and rc == 0:
                general = json.loads((work / "g.json").read_text())["general"]
                counts = {"lines": general["total_requests"], "valid": general["valid_requests"]}
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
    print(f"\n{'run':38} {'wall s':>8} {'lines/s':>12} {'peak RSS MiB':>13}  counts")
    for r in results:
        rate = f"{r.lines_per_s:,.0f}" if r.lines_per_s else "-"
        counts = " ".join(f"{k}={v}" for k, v in r.counts.items())
        print(f"{r.name:38} {r.wall_s:8.2f} {rate:>12} {r.peak_rss_mib:13.1f}  {counts}")


def print_profile(prof: dict[str, Any]) -> None:
    total = prof["command_seconds"]
    print("\nmeshlog parse, stage profile in one process (wall time per stage; polars uses all threads inside each)")
    print(f"  {'command total (imports excluded: see the startup row)':58} {total:7.2f} s  100.0%")
    for st in prof["stages"]:
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
    if "C: goaccess full report (JSON)" in by:
        g = by["C: goaccess full report (JSON)"].wall_s / by["meshlog summarize -o json"].wall_s
        print(f"meshlog summarize vs goaccess full report: {g:.1f}x faster (target: >= 30x)")
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
