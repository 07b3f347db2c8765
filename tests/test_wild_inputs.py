"""Inputs as they come in the wild: docker compose, kubetail, kail, stern, kubectl, logcli and jq output.

The fixtures (``fixtures/streams``, built by its ``make.py`` from the tools' source) wrap the real
access lines of ``fixtures/envoy/istio{,-json}/access.log``. Each must give the rows of those plain
lines, say for each row the pod / namespace / container / capture time it was built with, account
for every physical line (``physical == logical + joined``) and be named on stderr. Below them, the
cases the fixtures do not show: what must *not* be taken for a wrapper, and the limits.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from meshlog import envelopes
from meshlog.cli import app
from meshlog.envelopes import Unwrapper
from meshlog.figures import count
from meshlog.formats.presets import resolve
from meshlog.parse import lines_frame, parse_lines
from meshlog.sources import SourceStats, read_lines
from tests.conftest import FIXTURES, ROOT

STREAMS = FIXTURES / "streams"
WHERE = ("pod", "namespace", "container", "captured_at")
runner = CliRunner()


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("fixtures_streams_make", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


make = _load(STREAMS / "make.py")
BUILT = make.build()
TEXT, JSON = make.TEXT, make.JSON


def unwrap(path: Path, *, chunk_bytes: int = 1 << 20) -> tuple[pl.DataFrame, int, Unwrapper]:
    """A file read in chunks and unwrapped: the lines frame, the file's physical lines, the unwrapper."""
    unwrapper, stats = Unwrapper(), SourceStats(str(path))
    frames = [unwrapper.feed(chunk) for chunk in read_lines(str(path), stats, chunk_bytes=chunk_bytes)]
    frames.append(unwrapper.flush())
    return pl.concat(frames, how="diagonal_relaxed"), stats.lines, unwrapper


def run(lines: list[str], *, chunk: int | None = None) -> tuple[pl.DataFrame, Unwrapper]:
    """Lines fed whole or ``chunk`` at a time, then flushed."""
    unwrapper, step = Unwrapper(), chunk or max(len(lines), 1)
    frames = [
        unwrapper.feed(lines_frame(lines[i : i + step], source="s", first_line_no=i + 1))
        for i in range(0, len(lines), step)
    ]
    return pl.concat([*frames, unwrapper.flush()], how="diagonal_relaxed"), unwrapper


def where(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    """pod, namespace, container, captured_at of each row (None where the column is not there)."""
    return frame.with_columns(pl.lit(None).alias(c) for c in WHERE if c not in frame.columns).select(WHERE).rows()


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# --- the fixtures ----------------------------------------------------------------------------


def test_the_files_are_what_make_builds() -> None:
    assert sorted(p.name for p in STREAMS.glob("*.log")) == sorted(BUILT)
    for name, fixture in BUILT.items():
        assert (STREAMS / name).read_text() == fixture.text, f"{name}: run python fixtures/streams/make.py"
    readme = (STREAMS / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in BUILT)


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 700], ids=["whole", "700-byte-chunks"])
@pytest.mark.parametrize("name", sorted(BUILT))
def test_fixture_gives_the_rows_of_its_plain_lines(name: str, chunk_bytes: int) -> None:
    fixture = BUILT[name]
    fmt = resolve(fixture.fmt)
    lines, physical, unwrapper = unwrap(STREAMS / name, chunk_bytes=chunk_bytes)
    log = parse_lines(lines, fmt)

    c = log.counts
    assert physical == len(fixture.lines)
    assert (physical, unwrapper.joined) == (c.total + unwrapper.joined, fixture.joined)
    assert (c.access, c.unparsed, c.other) == (len(fixture.access), 0, fixture.other)
    assert unwrapper.detected == fixture.wrappers

    plain = parse_lines(lines_frame([a.line for a in fixture.access], source="plain"), fmt)
    assert plain.counts.access == len(fixture.access)
    columns = [c for c in plain.requests.columns if c not in ("source", "line_no")]
    assert_frame_equal(log.requests.select(columns), plain.requests.select(columns))
    assert where(log.requests) == [(a.pod, a.namespace, a.container, a.captured_at) for a in fixture.access]


@pytest.mark.parametrize("name", sorted(BUILT))
def test_parse_says_what_it_unwrapped(name: str) -> None:
    fixture = BUILT[name]
    result = runner.invoke(app, ["parse", str(STREAMS / name), "-f", fixture.fmt])
    assert result.exit_code == 0, result.stderr
    logical = len(fixture.lines) - fixture.joined
    total = f"lines: {logical:,} total, {len(fixture.access):,} access, 0 unparsed, {fixture.other:,} other"
    assert total in result.stderr
    if fixture.wrappers:
        joined = f"; {count(fixture.joined, 'physical line')} joined into longer ones" if fixture.joined else ""
        assert f"meshlog: input: unwrapped {', '.join(sorted(fixture.wrappers))}{joined}\n" in result.stderr
    else:
        assert "unwrapped" not in result.stderr
    rows = [json.loads(r) for r in result.stdout.splitlines()]
    assert [r["response_code"] for r in rows] == plain_codes(fixture)
    for row, access in zip(rows, fixture.access, strict=True):
        assert (row.get("pod"), row.get("namespace"), row.get("container")) == (
            access.pod,
            access.namespace,
            access.container,
        )


def plain_codes(fixture: Any) -> list[int]:
    lines = [a.line for a in fixture.access]
    return list(parse_lines(lines_frame(lines), resolve(fixture.fmt)).requests["response_code"].to_list())


@pytest.mark.parametrize("name", ["compose-v2-timestamps-ansi.log", "logcli-default.log", "jq-istio-json.log"])
def test_summarize_from_a_pipe(name: str) -> None:
    """``… | meshlog summarize -o json -``: the README's pipelines."""
    fixture = BUILT[name]
    proc = subprocess.run(
        [sys.executable, "-m", "meshlog", "summarize", "-o", "json", "-"],
        input=(STREAMS / name).read_bytes(),
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["requests"] == len(fixture.access)
    assert f"input: unwrapped {', '.join(sorted(fixture.wrappers))}" in proc.stderr.decode()


# --- docker compose --------------------------------------------------------------------------

COMPOSE = [f"envoy-1  | {line}" for line in TEXT]


def test_compose_an_access_line_holding_a_bar_is_no_prefix() -> None:
    """A plain stream whose lines hold `` | `` (a user agent, a custom format) is not compose's."""
    piped = [line.replace('"meshlog-case/', '"probe | meshlog-case/') for line in TEXT]
    custom = [f"outbound | {code} | GET /ok" for code in (200, 503, 200, 404)]  # `%A% | %B%`: one space
    for lines in (piped, custom):
        out, unwrapper = run(lines)
        assert (out["line"].to_list(), unwrapper.detected) == (lines, [])
    out, unwrapper = run([f"sidecar-1  | {line}" for line in piped])
    assert (out["line"].to_list(), out["container"].unique().to_list()) == (piped, ["sidecar-1"])


def test_compose_is_decided_on_the_first_lines() -> None:
    """One prefixed line among plain ones decides nothing; once decided, a later bare line passes unchanged."""
    lines = [*TEXT[:8], COMPOSE[8], *TEXT[9:]]
    assert run(lines)[0]["line"].to_list() == lines
    lines = [*COMPOSE[:10], TEXT[10], "envoy-1 exited with code 0", *COMPOSE[11:]]
    out, unwrapper = run(lines, chunk=4)
    assert out["line"].to_list() == [*TEXT[:11], "envoy-1 exited with code 0", *TEXT[11:]]
    assert out["container"].to_list() == ["envoy-1"] * 10 + [None, None] + ["envoy-1"] * 8
    assert unwrapper.detected == ["compose"]


def test_compose_v1_names_colours_and_timestamps() -> None:
    """docker-compose v1: ``PROJECT_SERVICE_N`` names too, the colour around ``NAME |`` (the space after it)."""
    lines = [
        f"\x1b[36mmesh_front-envoy_1 |\x1b[0m {TEXT[0]}",  # a name as long as the width: one space
        f"\x1b[33mmesh_sidecar_1     |\x1b[0m 2026-11-25T21:24:25.000000001+01:00 {TEXT[1]}",
        f"\x1b[36;1mmesh_front-envoy_1  |\x1b[0m {TEXT[2]}",
        f"mesh_sidecar_1      | {TEXT[3]}",
        f"mesh_front-envoy_1  | {TEXT[4]}",
    ]
    out, unwrapper = run(lines)
    assert out["line"].to_list() == TEXT[:5]
    assert out["container"].to_list() == ["mesh_front-envoy_1", "mesh_sidecar_1"] * 2 + ["mesh_front-envoy_1"]
    assert out["captured_at"].to_list() == [None, at("2026-11-25T20:24:25.000000+00:00"), None, None, None]
    assert unwrapper.detected == ["compose"]


def test_compose_empty_line_and_trailing_space() -> None:
    out, _ = run(["envoy-1  | ", "envoy-1  |", *COMPOSE[:3]])
    assert out["line"].to_list() == ["", "", *TEXT[:3]]


# --- kubetail, kail, stern -------------------------------------------------------------------


def test_kubetail_needs_pod_names_not_a_custom_format_time() -> None:
    """``[%START_TIME(%s)%] …`` looks like ``[POD] …``: a pod name has a letter."""
    lines = [f"[{1764105864 + i}] GET /ok 200" for i in range(5)]
    out, unwrapper = run(lines)
    assert (out["line"].to_list(), unwrapper.detected) == (lines, [])


def test_kubetail_waits_past_its_preamble_and_keeps_the_colour_index() -> None:
    """A first feed of only ``Will tail …`` and the names decides nothing; ``--show-color-index``: ``[N:POD]``."""
    first = ["Will tail 2 logs...", f"1:\x1b[31m{make.JZS87}\x1b(B\x1b[m", f"2:\x1b[32m{make.X2P4Q}\x1b(B\x1b[m"]
    rest = [f"\x1b[31m[\x1b(B\x1b[m1:\x1b[31m{make.JZS87}]\x1b(B\x1b[m {line}" for line in TEXT[:5]]
    out, unwrapper = run([*first, *rest], chunk=3)
    assert out["line"].to_list()[3:] == TEXT[:5]
    assert out["pod"].to_list() == [None] * 3 + [make.JZS87] * 5
    assert unwrapper.detected == ["kubetail"]


def test_kail_in_colour() -> None:
    """kail on a terminal: fatih/color's bold bright white around the prefix and around ``: ``."""
    head = "\x1b[97;1mistio-system/istio-ingressgateway-5d9c7b8f6-q4m2w[istio-proxy]\x1b[0m\x1b[97;1m: \x1b[0m"
    out, unwrapper = run([head + line for line in TEXT[:4]])
    assert out["line"].to_list() == TEXT[:4]
    assert set(out.select("namespace", "pod", "container").rows()) == {
        ("istio-system", "istio-ingressgateway-5d9c7b8f6-q4m2w", "istio-proxy")
    }
    assert unwrapper.detected == ["kail"]


def test_stern_short_timestamps_and_a_single_namespace() -> None:
    """stern ``--timestamps=short`` (``01-02 15:04:05``, no year: taken off, no capture time)."""
    lines = [f"{make.SLEEP} istio-proxy 11-25 21:24:25 {line}" for line in TEXT[:3]]
    lines.append(f"{make.SLEEP} istio-proxy {TEXT[3]}")
    out, unwrapper = run(lines)
    assert out["line"].to_list() == TEXT[:4]
    assert "captured_at" not in out.columns
    assert unwrapper.detected == ["stern"]


def test_stern_with_kubelet_timestamps_keeps_the_long_line_fix() -> None:
    """stern ``--timestamps`` prints kubelet's time reformatted; a >16 KiB line still has #77603's stamps cut."""
    content = TEXT[0].replace("/ok", "/ok?q=" + "a" * 20000)
    raw = content.encode()
    physical = f"{raw[:16384].decode()}2026-11-25T21:24:25.000000002Z {raw[16384:].decode()}"
    out, unwrapper = run([f"{make.SLEEP} istio-proxy 2026-11-25T22:24:25.000000001+01:00 {physical}"] * 3)
    assert out["line"].to_list() == [content] * 3
    assert out["captured_at"].to_list() == [at("2026-11-25T21:24:25+00:00")] * 3
    assert unwrapper.detected == ["stern", "kubectl-timestamps"]


# --- kubectl --timestamps ----------------------------------------------------------------------


def test_kubectl_timestamps_with_an_offset_or_fewer_digits() -> None:
    lines = [
        f"2021-02-01T21:34:35+00:00 {TEXT[0]}",
        f"2021-02-01T22:34:35.5+01:00 {TEXT[1]}",
        f"2021-02-01T21:34:35.123456789Z {TEXT[2]}",
        f"2021-02-01T21:34:35Z {TEXT[3]}",
    ]
    out, unwrapper = run(lines)
    assert out["line"].to_list() == TEXT[:4]
    assert out["captured_at"].to_list() == [
        at("2021-02-01T21:34:35+00:00"),
        at("2021-02-01T21:34:35.5+00:00"),
        at("2021-02-01T21:34:35.123456+00:00"),
        at("2021-02-01T21:34:35+00:00"),
    ]
    assert unwrapper.detected == ["kubectl-timestamps"]
    # pilot-agent's own lines keep their time (a TAB follows it, not a space)
    assert run(make.PILOT)[0]["line"].to_list() == make.PILOT


# --- logcli ------------------------------------------------------------------------------------


def test_logcli_labels_empty_no_labels_and_colour() -> None:
    """All labels common (``{}``), ``--no-labels`` (kubectl's shape: its time is taken), coloured on a terminal."""
    empty = [f"2026-11-25T21:24:25Z {{}} {line}" for line in TEXT[:3]]
    out, unwrapper = run(empty)
    assert (out["line"].to_list(), unwrapper.detected) == (TEXT[:3], ["logcli"])
    assert "pod" not in out.columns
    coloured = [f'\x1b[34m2026-11-25T21:24:25Z\x1b[0m \x1b[31m{{pod="p-1"}}  \x1b[0m {line}' for line in TEXT[:3]]
    out, unwrapper = run(coloured)
    assert (out["line"].to_list(), out["pod"].to_list(), unwrapper.detected) == (TEXT[:3], ["p-1"] * 3, ["logcli"])
    bare = [f"2026-11-25T21:24:25Z {line}" for line in TEXT[:3]]
    out, unwrapper = run(bare)
    assert (out["line"].to_list(), unwrapper.detected) == (TEXT[:3], ["kubectl-timestamps"])


def test_logcli_jsonl_carrying_cri_lines_and_no_labels() -> None:
    """promtail without its ``cri`` stage stores the CRI line: unwrapped once more. ``--no-labels``: no labels key."""
    entries = [
        make.go_json(
            {
                "labels": {"pod_name": "p-1", "namespace_name": "ns"},
                "line": f"2026-11-25T21:24:25.{i}Z stdout F {line}",
                "timestamp": f"2026-11-25T21:24:26.{i}Z",
            }
        )
        for i, line in enumerate(TEXT[:3], start=1)
    ]
    entries.append(make.go_json({"line": TEXT[3], "timestamp": "2026-11-25T22:24:26+01:00"}))
    out, unwrapper = run(entries)
    assert out["line"].to_list() == TEXT[:4]
    assert out.select("pod", "namespace", "stream").rows() == [("p-1", "ns", "stdout")] * 3 + [(None, None, None)]
    assert out["captured_at"].to_list() == [
        at("2026-11-25T21:24:25.1+00:00"),  # the runtime's time wins over Loki's
        at("2026-11-25T21:24:25.2+00:00"),
        at("2026-11-25T21:24:25.3+00:00"),
        at("2026-11-25T21:24:26+00:00"),
    ]
    assert unwrapper.detected == ["logcli-jsonl", "cri"]


def test_json_lines_that_only_look_like_logcli_pass() -> None:
    lines = ['{"line": 42, "timestamp": "2026-11-25T21:24:25Z"}', '{"line": "x"}', '{"labels": {"pod": "p"}, "line']
    out, unwrapper = run(lines)
    assert (out["line"].to_list(), unwrapper.detected) == (lines, [])


# --- pretty-printed JSON ------------------------------------------------------------------------

PRETTY = [physical for line in JSON[:3] for physical in make.jq(line)]


def test_pretty_json_across_feeds_keeps_counting() -> None:
    for chunk in (1, 5, 26, 27):
        out, unwrapper = run(PRETTY, chunk=chunk)
        assert [json.loads(x) for x in out["line"]] == [json.loads(x) for x in JSON[:3]]
        assert out["line_no"].to_list() == [1, 27, 53]
        assert len(PRETTY) == out.height + unwrapper.joined
        assert unwrapper.detected == ["pretty-json"]


def test_a_record_that_never_closes_swallows_nothing() -> None:
    """Broken by a line that is not indented, or never closed at all: its lines come out as they are."""
    broken = PRETTY[:10] + TEXT[:2] + PRETTY[26:]
    out, unwrapper = run(broken, chunk=7)
    assert out["line"].to_list()[:12] == broken[:12]
    assert [json.loads(x) for x in out["line"].to_list()[12:]] == [json.loads(x) for x in JSON[1:3]]
    assert len(broken) == out.height + unwrapper.joined
    unclosed = PRETTY[:25]  # EOF before its `}`
    out, unwrapper = run(unclosed, chunk=4)
    assert (out["line"].to_list(), unwrapper.joined) == (unclosed, 0)


def test_a_record_over_the_cap_is_let_out_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelopes, "PRETTY_LINES", 20)
    out, unwrapper = run([*PRETTY[:26], JSON[1]], chunk=8)  # 26 lines: over the cap
    assert (out["line"].to_list(), unwrapper.joined) == ([*PRETTY[:26], JSON[1]], 0)
    endless = ["{"] + [f'  "k{i}": {i},' for i in range(60)]  # never closes, and more keeps coming
    out, unwrapper = run([*endless, TEXT[0]], chunk=9)
    assert (out["line"].to_list(), unwrapper.joined) == ([*endless, TEXT[0]], 0)


def test_pretty_collector_records_are_unwrapped_too() -> None:
    """``jq .`` of a Fluent Bit ``json_lines`` file: joined, then read as a collector record."""
    record = {"date": 1764105864.5, "log": TEXT[0], "kubernetes": {"pod_name": "p-1", "namespace_name": "default"}}
    out, unwrapper = run(make.jq(json.dumps(record)))
    assert out.select("pod", "namespace", "line").rows() == [("p-1", "default", TEXT[0])]
    assert unwrapper.detected == ["pretty-json", "fluentbit-json"]
