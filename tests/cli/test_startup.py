"""What a command loads before it works: `--help`, `flags` and `formats` never load polars (most of
every start-up), and none loads textual but `tui`. Timings are the benchmark's (bench/run.py); this
holds the imports, which is what the timings follow from."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("polars", "pyparsing", "textual", "pyspark")
PROBE = """
import json, runpy, sys
sys.argv = ["meshlog", *json.loads(sys.argv[1])]
try:
    runpy.run_module("meshlog", run_name="__main__")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in json.loads(HEAVY) if m in sys.modules)), file=sys.stderr)
""".replace("HEAVY", repr(json.dumps(HEAVY)))


def _loaded(args: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, check=False)
    return list(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("args", "may_load"),
    [
        (["--help"], set()),
        (["summarize", "--help"], set()),
        (["flags", "UF"], set()),
        (["formats"], {"pyparsing"}),
        (["formats", "--show", "istio"], {"pyparsing"}),
    ],
)
def test_commands_that_need_no_frames_load_no_polars(args: list[str], may_load: set[str]) -> None:
    assert set(_loaded(args)) <= may_load


def test_the_probe_sees_what_a_real_run_loads() -> None:
    from tests.conftest import FIXTURES

    assert {"polars", "pyparsing"} <= set(_loaded(["summarize", str(FIXTURES / "sample" / "istio-proxy.log")]))
