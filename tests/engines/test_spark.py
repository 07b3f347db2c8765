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
from tests.conftest import FIXTURES
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
    assert result.stderr.strip().splitlines()[-1].startswith(
        "meshlog: error: sc://127.0.0.1:1: Spark Connect does not answer"
    )


def test_without_pyspark_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # as when the extra is not installed
    result = runner.invoke(app, ["summarize", str(ENVOY / "istio" / "access.log"), "--engine", "spark"])
    assert result.exit_code != 0
    assert "pip install 'meshlog[spark]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_options_the_spark_engine_does_not_take_stop_first() -> None:
    result = runner.invoke(app, ["summarize", str(ENVOY / "istio" / "access.log"), "--engine", "spark",
                                 "--where", "response_code>=500"])  # fmt: skip
    assert result.exit_code == 2
    assert "--engine spark does not take --where yet" in result.stderr
