"""``summarize --engine spark`` against a real Spark Connect server gives the local engine's report.

One server per test session (``tests/lab/spark.py``: PyPI pyspark's own jars, Java from Debian),
reached as a user would, through ``--spark-remote sc://127.0.0.1:PORT``. The inputs are logs a real
Envoy wrote (the fixtures); the reference is the local
engine on the same files, compared key by key (counts, percentiles, line numbers) — and the local
engine is itself held to the row-level reports (``tests/reports/test_state.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from meshlog.cli import app
from tests.conftest import FIXTURES, SHARED
from tests.lab.spark import SparkConnect

LAB = True  # a real Spark: not in the fast loop
runner = CliRunner()
ENVOY = FIXTURES / "envoy"
# (input, its format file) — the text formats a real Envoy wrote
INPUTS = [
    (ENVOY / "istio" / "access.log", None),
    (ENVOY / "envoy" / "access.log", None),
    (ENVOY / "custom" / "access.log", ENVOY / "custom" / "format.txt"),
    (ENVOY / "envoy-gateway" / "envoy-gateway" / "access.log", None),
    (FIXTURES / "sample" / "istio-proxy.log", None),
    (FIXTURES / "chain" / "client.log", FIXTURES / "chain" / "format.txt"),
]


@pytest.fixture(scope="session")
def spark_url() -> Iterator[str]:
    with SparkConnect() as server:
        yield server.url


def _summarize(args: list[str]) -> dict[str, Any]:
    result = runner.invoke(app, ["summarize", "-o", "json", *args])
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


def _on_spark(args: list[str], url: str) -> dict[str, Any]:
    """``summarize --engine spark`` in a process of its own, as a user runs it: the Spark Connect
    client's gRPC threads then never live in the test process, whose later forks (the Envoy labs'
    ``preexec_fn``) they would break."""
    cmd = [sys.executable, "-m", "meshlog", "summarize", "-o", "json", *args, "--engine", "spark"]
    cmd += ["--spark-remote", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _format_args(fmt: Path | None) -> list[str]:
    return ["--format-file", str(fmt)] if fmt else []


@pytest.mark.parametrize(("path", "fmt"), INPUTS, ids=[str(p.relative_to(p.parents[2])) for p, _ in INPUTS])
@pytest.mark.parametrize("by", [[], ["--by", "path"]], ids=["default", "by-path"])
def test_spark_gives_the_local_report(spark_url: str, path: Path, fmt: Path | None, by: list[str]) -> None:
    args = [str(path), *_format_args(fmt), *by]
    local = _summarize(args)
    remote = _on_spark(args, spark_url)
    assert local["requests"] > 0
    for key in local:
        assert remote.get(key) == local[key], key


def test_spark_reads_a_directory_as_its_files(spark_url: str, tmp_path: Path) -> None:
    for name in ("a.log", "b.log"):
        (tmp_path / name).write_text((ENVOY / "istio" / "access.log").read_text())
    local = _summarize([str(tmp_path / "a.log"), str(tmp_path / "b.log")])
    remote = _on_spark([str(tmp_path)], spark_url)
    for key in ("lines", "requests", "response_codes", "latency", "response_flags", "hints", "timeline"):
        assert remote[key] == local[key], key


def test_an_unreachable_spark_is_exit_5_in_one_line() -> None:
    result = runner.invoke(app, ["summarize", str(ENVOY / "istio" / "access.log"), "--engine", "spark",
                                 "--spark-remote", "sc://127.0.0.1:1"])  # fmt: skip
    assert result.exit_code == 5
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("meshlog: error: sc://127.0.0.1:1: Spark Connect does not answer")
    )


def test_without_pyspark_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # as when the extra is not installed
    result = runner.invoke(app, ["summarize", str(ENVOY / "istio" / "access.log"), "--engine", "spark"])
    assert result.exit_code != 0
    assert "pip install 'meshlog[spark]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_options_the_spark_engine_does_not_take_stop_first() -> None:
    result = runner.invoke(app, ["summarize", str(ENVOY / "istio" / "access.log"), "--engine", "spark",
                                 "--strict"])  # fmt: skip
    assert result.exit_code == 2
    assert "--engine spark does not take --strict yet" in result.stderr


# -- the differential test: many inputs, filters and windows, one Spark session -----------------------

SAMPLE = FIXTURES / "sample" / "istio-proxy.log"
ISTIO = ENVOY / "istio" / "access.log"
# the stream samples whose wrappers Spark SQL expresses (engines/spark_lines.py): kubectl's prefix and
# timestamps, CRI files (P chunks joined), docker json-file (partials joined)
STREAMS = [
    "kubectl-plain", "kubectl-timestamps", "kubectl-prefix", "kubectl-prefix-timestamps",
    "kubectl-follow-selector-prefix", "kubectl-selector-all-containers-prefix", "cri-containerd", "cri-crio",
    "docker-json-file", "istio-json-kubectl-plain", "istio-json-cri-containerd",
]  # fmt: skip
JSON_INPUTS = [ENVOY / "istio-json" / "access.log", ENVOY / "envoy-gateway" / "envoy-gateway-json" / "access.log"]
WHERE = [
    "response_code>=500",
    "response_flags~UF and upstream_cluster~reviews",
    "not (method=GET or method=HEAD)",
    "duration>5, response_code=200",
    "upstream_cluster!~outbound or response_code=0",
    "authority~'^[a-z]+:9080$'",
]


def _batch(jobs: list[dict[str, Any]], url: str, tmp: Path) -> list[dict[str, Any]]:
    """Every job's Spark summary, from one process and one Spark session (``spark_batch``)."""
    path = tmp / "jobs.json"
    path.write_text(json.dumps(jobs))
    cmd = [sys.executable, "-m", "tests.engines.spark_batch", url, str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout))


def _args(job: dict[str, Any]) -> list[str]:
    """The local ``summarize`` command line of a job."""
    out = [*job["paths"]]
    for key in ("format_file", "by", "where", "since", "until"):
        if job.get(key):
            value = (
                {"route_name": "route", "upstream_cluster": "cluster"}.get(job[key], job[key])
                if key == "by"
                else job[key]
            )
            out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def _columns(path: Path, fmt: Path | None) -> set[str]:
    """The request columns of a log (what ``--by`` may name for it)."""
    from meshlog.pipeline import FormatOptions, Run, compile_options, parse_paths

    run = Run(compile_options(FormatOptions(format_file=str(fmt) if fmt else None)))
    return {c for log in parse_paths([str(path)], run) for c in log.requests.columns}


def _same(local: dict[str, Any], remote: dict[str, Any], label: str) -> None:
    for key in remote:
        assert remote[key] == local[key], (label, key)


def _broken(tmp: Path) -> list[Path]:
    """Real records with broken ones among them, text and JSON: a value that does not fit its type, a
    line cut short, a JSON record under a text format, an object that is no record, invalid JSON.
    Both engines must count each the same and say why, at the same line."""
    text = ISTIO.read_text().splitlines()
    records = JSON_INPUTS[0].read_text().splitlines()
    bad_text = [
        text[0],
        text[1].replace(" 200 ", " 2x0 ", 1),
        text[2][:70],
        records[0],
        text[3],
        "",
        "some app line",
        text[4].replace("HTTP/1.1", "HTTP/1.1", 1),
    ]
    bad_json = [
        records[0],
        records[1][:40],
        records[2].replace('"response_code":', '"response_code":"abc","was":', 1),
        '{"level":"info","msg":"hello"}',
        '{"note": "an object, no record"}',
        records[3],
    ]
    out = []
    for name, lines in (("broken-text.log", bad_text), ("broken-json.log", bad_json)):
        (tmp / name).write_text("\n".join(lines) + "\n")
        out.append(tmp / name)
    return out


def _property_logs(tmp: Path, n: int = 20) -> list[tuple[Path, Path]]:
    """``n`` of the property test's random formats (its operator pool and separators, a fixed seed),
    each a logger of one real Envoy that serves the same requests: (log, format file) pairs."""
    import random

    from tests.lab.envoy import run_formats
    from tests.test_property_envoy import ITEMS, SEPARATORS, spec, text_format

    rng = random.Random(20261202)
    formats = {}
    for i in range(n):
        items = rng.sample(ITEMS, rng.randint(2, 9))
        seps = [rng.choice(SEPARATORS) for _ in range(rng.randint(1, 3))]
        formats[f"f{i}"] = text_format(items, seps)
    sent: list[dict[str, Any]] = [
        {"a": "alpha", "b": None, "ua": "curl/8.5", "method": "GET", "path": "/ok", "body": b""},
        {"a": None, "b": "bravo-2", "ua": "Go-http-client/1.1", "method": "POST", "path": "/echo", "body": b"x" * 40},
        {"a": "c", "b": "d", "ua": "k6 (https://k6.io)", "method": "GET", "path": "/ok", "body": b""},
        {"a": None, "b": None, "ua": "python-requests/2", "method": "POST", "path": "/echo", "body": b"hello"},
    ]
    logs = run_formats(formats, {}, [spec(s) for s in sent * 2])
    out = []
    for name, text in formats.items():
        (tmp / f"{name}.log").write_bytes(logs[name])
        (tmp / f"{name}.format").write_text(text)
        out.append((tmp / f"{name}.log", tmp / f"{name}.format"))
    return out


def test_spark_gives_the_local_report_everywhere(spark_url: str, tmp_path: Path) -> None:
    """Every fixture log by --by dimension, the stream samples Spark unwraps, twenty random formats
    through a real Envoy, --where filters, and --since/--until windows (ISO and relative): Spark's
    summary equals the local one, key by key."""
    jobs: list[dict[str, Any]] = [
        {"paths": [str(path)], "format_file": str(fmt) if fmt else None, "by": by}
        for path, fmt in INPUTS
        for by in ("route_name", "authority", "response_code")
        if by in _columns(path, fmt)
    ]
    for where in WHERE:
        jobs += [{"paths": [str(SAMPLE)], "where": where}, {"paths": [str(ISTIO)], "where": where}]
    jobs += [
        {"paths": [str(SAMPLE)], "since": "2026-11-25T21:21:28.9Z"},
        {"paths": [str(SAMPLE)], "until": "2026-11-25T21:21:28.96Z", "where": "response_code>=400"},
        {"paths": [str(SAMPLE)], "since": "1s"},
        {"paths": [str(SAMPLE)], "since": "10m", "until": "300ms"},
        {"paths": [str(ISTIO)], "since": "500ms", "by": "path"},
    ]
    jobs += [{"paths": [str(p)]} for p in JSON_INPUTS]
    jobs += [{"paths": [str(p)], "where": "response_code>=400"} for p in JSON_INPUTS]
    jobs += [{"paths": [str(p)]} for p in _broken(tmp_path)]
    samples = [SHARED / "samples" / "streams" / f"{name}.log" for name in STREAMS]
    jobs += [{"paths": [str(p)]} for p in samples]
    jobs += [{"paths": [str(p)], "by": "pod"} for p in samples if "prefix" in p.name]
    jobs.append({"paths": [str(samples[2])], "where": "pod~httpbin or response_code>=500"})
    for log, fmt in _property_logs(tmp_path):
        jobs.append({"paths": [str(log)], "format_file": str(fmt)})
    remote = _batch(jobs, spark_url, tmp_path)
    assert len(remote) == len(jobs)
    chosen = 0
    for job, summary in zip(jobs, remote, strict=True):
        local = _summarize(_args(job))
        _same(local, summary, json.dumps(job))
        chosen += local["requests"] > 0
        if "broken" in job["paths"][0]:  # each kind of broken line, counted and explained alike
            assert local["lines"]["unparsed"] == 3 and len(summary["unparsed_lines"]) == 3
    assert chosen >= len(jobs) - 6  # the filters and windows choose requests, not nothing
