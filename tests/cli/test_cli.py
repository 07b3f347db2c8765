"""The CLI surface: exit codes, stderr words, and the ``summarize -o json`` contract on real-Envoy logs."""

from __future__ import annotations

import io
import json
import os
import selectors
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from meshlog.cli import app
from tests.conftest import FIXTURES, ROOT, SHARED

SAMPLE = FIXTURES / "sample" / "istio-proxy.log"
ISTIO = FIXTURES / "envoy" / "istio"
CUSTOM = FIXTURES / "envoy" / "custom"
runner = CliRunner()


def expected(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "expected.jsonl").read_text().splitlines()]


def test_summarize_json_contract_on_the_sample() -> None:
    result = runner.invoke(app, ["summarize", str(SAMPLE), "-o", "json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    sent = expected(ISTIO)
    assert set(out) >= {
        "lines",
        "format",
        "time_range",
        "requests",
        "response_codes",
        "response_flags",
        "latency",
        "retries",
        "hints",
    }
    assert out["lines"] == {"total": 4 + len(sent), "access": len(sent), "unparsed": 0, "other": 4}
    assert out["format"]["name"] == "istio"
    assert out["requests"] == len(sent)
    codes = Counter(r["response_code"] for r in sent)
    assert {(c["code"], c["count"]) for c in out["response_codes"]} == set(codes.items())
    counts = [c["count"] for c in out["response_codes"]]
    assert counts == sorted(counts, reverse=True)
    flags = Counter(f for r in sent for f in r["response_flags"])
    assert {f["flag"]: f["count"] for f in out["response_flags"]} == dict(flags)
    uf = next(f for f in out["response_flags"] if f["flag"] == "UF")
    assert uf["name"] == "UpstreamConnectionFailure" and uf["meaning"]
    assert set(out["latency"]["duration"]) == {"p50", "p90", "p99", "max"}
    assert {c["upstream_cluster"] for c in out["latency"]["by_upstream_cluster"]} == {
        r["upstream_cluster"] for r in sent if r["upstream_cluster"]
    }
    contract = {k: out["retries"][k] for k in ("attempt_counts", "retried_requests", "retry_limit_exceeded")}
    assert contract == {"attempt_counts": None, "retried_requests": None, "retry_limit_exceeded": flags["URX"]}
    urx_by_cluster = Counter(r["upstream_cluster"] for r in sent if "URX" in r["response_flags"])
    assert {c["upstream_cluster"]: c["retry_limit_exceeded"] for c in out["retries"]["clusters"]} == dict(
        urx_by_cluster
    )
    assert out["time_range"]["start"].endswith("Z") and out["time_range"]["start"] <= out["time_range"]["end"]
    assert "format: detected istio" in result.stderr


def test_summarize_retries_from_attempt_counts() -> None:
    result = runner.invoke(
        app, ["summarize", str(CUSTOM / "access.log"), "--format-file", str(CUSTOM / "format.txt"), "-o", "json"]
    )
    assert result.exit_code == 0, result.stderr
    retries = json.loads(result.stdout)["retries"]
    sent = expected(CUSTOM)
    attempts = Counter(r["upstream_request_attempt_count"] for r in sent)
    assert {(a["attempts"], a["count"]) for a in retries["attempt_counts"]} == set(attempts.items())
    assert retries["retried_requests"] == sum(1 for r in sent if r["upstream_request_attempt_count"] > 1)


def test_summarize_text_report_reads_well() -> None:
    result = runner.invoke(app, ["summarize", str(SAMPLE)], env={"NO_COLOR": "1", "COLUMNS": "120"})
    assert result.exit_code == 0
    assert "19 requests from 23 lines (0 unparsed, 4 other)" in result.stdout
    assert "UpstreamRetryLimitExceeded" in result.stdout
    assert "\x1b[" not in result.stdout


def test_parse_ndjson_rows_carry_source_and_line_no() -> None:
    result = runner.invoke(app, ["parse", str(SAMPLE), "-f", "istio"])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line_no"] for r in rows] == list(range(5, 24))
    assert rows[0]["source"] == str(SAMPLE)
    assert rows[0]["start_time"].endswith("Z")
    assert "lines: 23 total, 19 access, 0 unparsed, 4 other" in result.stderr


def test_parse_parquet_keeps_types(tmp_path: Path) -> None:
    out = tmp_path / "rows.parquet"
    result = runner.invoke(app, ["parse", str(ISTIO / "access.log"), "-o", "parquet", "--out", str(out)])
    assert result.exit_code == 0
    frame = pl.read_parquet(out)
    assert frame.height == len(expected(ISTIO))
    assert frame.schema["start_time"] == pl.Datetime("us", "UTC")
    assert frame.schema["response_code"] == pl.Int64


def test_csv_is_safe_in_a_spreadsheet(tmp_path: Path) -> None:
    log = tmp_path / "evil.log"
    log.write_text('[2026-11-25T20:31:22.878Z] 200 "=HYPERLINK(\\"x\\")"\n')
    result = runner.invoke(
        app, ["parse", str(log), "-f", '[%START_TIME%] %RESPONSE_CODE% "%REQ(USER-AGENT)%"', "-o", "csv"]
    )
    assert result.exit_code == 0
    frame = pl.read_csv(io.StringIO(result.stdout))
    assert frame["user_agent"][0].startswith("'=")


def test_strict_fails_on_unparsed_lines(tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    log.write_text((ISTIO / "access.log").read_text().replace(" 404 ", " 4x4 ", 1))
    result = runner.invoke(app, ["parse", str(log), "-f", "istio", "--strict"])
    assert result.exit_code == 4
    assert result.stderr.splitlines()[-1] == (
        f'meshlog: error: 1 line did not parse; first at {log}:4: field response_code: expected an integer, got "4x4"'
    )


def test_missing_file_is_one_line_and_exit_3(tmp_path: Path) -> None:
    result = runner.invoke(app, ["parse", str(tmp_path / "nope.log"), "-f", "istio"])
    assert result.exit_code == 3
    assert f"meshlog: error: {tmp_path / 'nope.log'}: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_lone_missing_input_is_named_and_an_empty_one_is_no_error(tmp_path: Path) -> None:
    for command in (["summarize"], ["trace", "some-id"]):
        missing = runner.invoke(app, [*command, str(tmp_path / "nope.log")])
        assert missing.exit_code == 3
        assert missing.stderr.splitlines() == [f"meshlog: error: {tmp_path / 'nope.log'}: no such file"]
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    result = runner.invoke(app, ["summarize", str(empty)])  # a report of nothing, so `| jq` still gets one
    assert result.exit_code == 0 and result.stdout.startswith("0 requests from 0 lines")
    assert "meshlog: no input lines: the input is empty" in result.stderr.splitlines()
    as_json = json.loads(runner.invoke(app, ["summarize", str(empty), "-o", "json"]).stdout)
    assert as_json["lines"] == {"total": 0, "access": 0, "unparsed": 0, "other": 0}
    assert as_json["format"] == {"name": None, "string": None}


def test_summarize_options_are_checked() -> None:
    top = runner.invoke(app, ["summarize", str(SAMPLE), "--top", "-1"])
    assert top.exit_code == 2 and "-1 is not in the range x>=1" in top.stderr
    by_pod = runner.invoke(app, ["summarize", str(SAMPLE), "--by", "pod"])  # a plain file names no pods
    assert by_pod.exit_code == 2
    assert by_pod.stderr.splitlines()[-1].startswith("meshlog: error: --by pod: this log has no pod column")


def test_a_broken_file_does_not_stop_the_others(tmp_path: Path) -> None:
    result = runner.invoke(app, ["parse", str(tmp_path / "nope.log"), str(ISTIO / "access.log"), "-f", "istio"])
    assert result.exit_code == 3
    assert len(result.stdout.splitlines()) == len(expected(ISTIO))


def test_bad_format_exits_2_with_a_caret() -> None:
    result = runner.invoke(app, ["formats", "--show", '[%START_TIME%] "%REQ(:METHOD)% 100% done"'])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "meshlog: error: format error at column 35: '%' does not start a valid command;"
        " write %% for a literal percent sign",
        '  [%START_TIME%] "%REQ(:METHOD)% 100% done"',
        " " * 36 + "^",
    ]


def test_a_mistyped_preset_is_named_as_one() -> None:
    result = runner.invoke(app, ["formats", "--show", "isito"])
    assert result.exit_code == 2
    from meshlog.formats.presets import PRESETS

    said = f"meshlog: error: unknown preset 'isito' (presets: {', '.join(PRESETS)}; or give a format string)"
    assert result.stderr.splitlines() == [said]
    assert list(PRESETS)[:8] == [
        "istio", "istio-json", "istio-upstream-cluster", "istio-1.8", "istio-1.5", "istio-1.2", "istio-1.1", "envoy",
    ]  # fmt: skip


def test_undetectable_input_asks_for_a_format(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("hello\nworld\n")
    result = runner.invoke(app, ["summarize", str(log)])
    assert result.exit_code == 2
    assert "pass --format" in result.stderr


def test_invalid_utf8_is_kept_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "latin1.log"
    line = (ISTIO / "access.log").read_bytes().splitlines()[0].replace(b"meshlog-case/ok", b"caf\xe9")
    log.write_bytes(line + b"\n")
    result = runner.invoke(app, ["parse", str(log), "-f", "istio"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["user_agent"] == "caf\ufffd"
    assert "1 line with invalid UTF-8" in result.stderr


def test_flags_explains_combined_flags() -> None:
    result = runner.invoke(app, ["flags", "URX,UF"])
    assert result.stdout.splitlines()[0].split()[:2] == ["URX", "UpstreamRetryLimitExceeded"]
    assert result.stdout.splitlines()[1].split()[:2] == ["UF", "UpstreamConnectionFailure"]


def test_every_command_has_help() -> None:
    for command in ("parse", "summarize", "formats", "flags", "metrics", "trace", "listen"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout


@pytest.mark.parametrize("fmt", [["-f", "istio"], []], ids=["given", "detected"])
def test_stdin_rows_come_out_before_eof(fmt: list[str]) -> None:
    """`kubectl logs -f | meshlog parse -` shows each row as its line arrives (a live stream's
    format is detected from its first access line, not after 20 lines that may take minutes)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshlog", "parse", *fmt, "-o", "ndjson", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdin and proc.stdout
    try:
        lines = (ISTIO / "access.log").read_bytes().splitlines(keepends=True)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        for n, line in enumerate(lines[:3], start=1):
            proc.stdin.write(line)
            proc.stdin.flush()
            deadline = time.monotonic() + 20
            assert sel.select(timeout=max(0.0, deadline - time.monotonic())), f"no row for line {n} before EOF"
            assert json.loads(proc.stdout.readline())["line_no"] == n
    finally:
        proc.stdin.close()
        proc.wait(timeout=20)


def test_summarize_outputs_and_filters() -> None:
    sent = expected(ISTIO)
    md = runner.invoke(app, ["summarize", str(ISTIO / "access.log"), "-f", "istio", "-o", "markdown"])
    assert md.exit_code == 0 and md.stdout.startswith("# meshlog summary") and "## Triage hints" in md.stdout
    csv = runner.invoke(app, ["summarize", str(ISTIO / "access.log"), "-f", "istio", "-o", "csv", "--by", "route"])
    table = pl.read_csv(io.StringIO(csv.stdout))
    assert table.columns[:4] == ["route_name", "requests", "errors", "p50"]
    assert table["requests"].sum() == len(sent)  # requests without a route are one row (empty route_name)
    assert table.filter(pl.col("route_name").is_null())["requests"].item() == sum(
        1 for r in sent if not r["route_name"]
    )
    where = runner.invoke(
        app, ["summarize", str(ISTIO / "access.log"), "-f", "istio", "-o", "json", "--where", "response_flags~UF"]
    )
    out = json.loads(where.stdout)
    assert out["requests"] == sum(1 for r in sent if "UF" in r["response_flags"])
    assert out["lines"]["access"] == len(sent)
    bad = runner.invoke(app, ["summarize", str(ISTIO / "access.log"), "-f", "istio", "--where", "nope>1"])
    assert bad.exit_code == 2 and "--where error at column 1: no column 'nope'" in bad.stderr
    regex = runner.invoke(app, ["summarize", str(ISTIO / "access.log"), "-f", "istio", "--where", "path~["])
    assert regex.exit_code == 2
    assert regex.stderr.splitlines()[-3:] == [
        "meshlog: error: --where error at column 6: not a valid regex (unclosed character class)",
        "  path~[",
        "       ^",
    ]
    for option in ("--since", "--until"):
        when = runner.invoke(app, ["summarize", str(ISTIO / "access.log"), "-f", "istio", option, "banana"])
        assert when.exit_code == 2
        assert when.stderr.splitlines()[-1] == (
            f"meshlog: error: {option} error at column 1: expected an ISO-8601 time (2026-11-25T20:31:00Z)"
            " or a duration (15m, 2h), got 'banana'"
        )


def test_where_on_a_wrapper_column_some_inputs_lack(tmp_path: Path) -> None:
    """A node log path names its pod; a plain file names none: --where pod=… keeps the first file's
    requests and reads the second's pod as null, instead of stopping at the second file."""
    lines = (ISTIO / "access.log").read_text()
    pod_dir = tmp_path / "default_web-1_0f9e8d7c-6b5a-4a3b-9c2d-1e0f9a8b7c6d" / "istio-proxy"
    pod_dir.mkdir(parents=True)
    (pod_dir / "0.log").write_text(lines)
    (tmp_path / "plain.log").write_text(lines)
    args = ["summarize", str(pod_dir / "0.log"), str(tmp_path / "plain.log"), "-f", "istio", "-o", "json"]
    kept = runner.invoke(app, [*args, "--where", "pod=web-1"])
    assert kept.exit_code == 0, kept.stderr
    out = json.loads(kept.stdout)
    assert out["requests"] == len(expected(ISTIO)) and out["lines"]["access"] == 2 * len(expected(ISTIO))
    none = runner.invoke(app, [*args, "--where", "not pod~."])
    assert json.loads(none.stdout)["requests"] == len(expected(ISTIO))


def test_terminal_output_escapes_control_characters(tmp_path: Path) -> None:
    log = tmp_path / "evil.log"
    line = (ISTIO / "access.log").read_text().splitlines()[0]
    evil_cluster = "outbound|8080||\x1b]0;pwned\x07\x1b[2J.svc"
    log.write_text(line.replace("outbound|8080||backend.default.svc.cluster.local", evil_cluster) + "\n")
    result = runner.invoke(app, ["summarize", str(log), "-f", "istio"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in result.stdout


def test_wrapped_input_is_unwrapped_and_said(tmp_path: Path) -> None:
    sample = SHARED / "samples" / "streams" / "cri-containerd.log"
    node = tmp_path / "var/log/pods/default_sleep-7656cf8794-7hkmv_2b7f3a5e-1c2d-4e5f-8a9b-0c1d2e3f4a5b/istio-proxy"
    node.mkdir(parents=True)
    cri = node / "0.log"
    cri.write_bytes(sample.read_bytes())
    result = runner.invoke(app, ["parse", str(cri), "-f", "istio-upstream-cluster"])
    assert result.exit_code == 0
    assert "meshlog: input: unwrapped cri; 1 physical line joined into longer ones" in result.stderr
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert {(r["pod"], r["namespace"], r["container"], r["stream"]) for r in rows} == {
        ("sleep-7656cf8794-7hkmv", "default", "istio-proxy", "stdout")
    }
    assert all(r["captured_at"] for r in rows)
    forced = runner.invoke(app, ["parse", str(cri), "-f", "istio-upstream-cluster", "--input", "plain"])
    assert forced.exit_code == 0 and "unwrapped" not in forced.stderr
    assert "lines: 28 total, 0 access" in forced.stderr  # the CRI prefix stays on every line


# -- from a new user's run-through (polish issue) ---------------------------------------------------------


def test_version_and_short_help() -> None:
    from meshlog import __version__

    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.strip() == f"meshlog {__version__}"
    short = runner.invoke(app, ["summarize", "-h"])
    assert short.exit_code == 0 and "--where" in short.stdout
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout


def test_flags_are_matched_in_any_case_and_near_misses_suggested() -> None:
    result = runner.invoke(app, ["flags", "uf", "UpstreamRetryLimitExceeded".lower()])
    assert result.exit_code == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["UF", "URX"]
    miss = runner.invoke(app, ["flags", "ufx"])
    assert miss.exit_code == 1
    assert "ufx: not a built-in Envoy flag; did you mean UF" in miss.stderr


def test_formats_show_prints_the_envoy_format_string() -> None:
    result = runner.invoke(app, ["formats", "--show", "istio"])
    assert result.exit_code == 0
    shown = next(line for line in result.stdout.splitlines() if line.startswith("format: "))
    # Istio's documented default text format (istio.io, Envoy access logs), as the proxy is given it
    assert shown.startswith('format: [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"')
    assert shown.endswith("%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%")


def test_trace_takes_a_unique_prefix_of_a_request_id_and_shows_method_and_path() -> None:
    first = expected(ISTIO)[0]
    result = runner.invoke(app, ["trace", first["request_id"][:8], str(ISTIO / "access.log"), "-o", "json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["request_id"] == first["request_id"] and len(out["hops"]) == 1
    text = runner.invoke(app, ["trace", first["request_id"][:8], str(ISTIO / "access.log")], env={"COLUMNS": "200"})
    assert f"{first['method']} {first['path']}" in text.stdout
    assert "1 line" in text.stdout and "line(s)" not in text.stdout


def test_trace_names_the_ids_an_ambiguous_prefix_fits(tmp_path: Path) -> None:
    ids = [s["request_id"] for s in expected(ISTIO) if s["request_id"]]  # TCP lines carry none
    prefix = next(p for p in (i[:1] for i in ids) if sum(i.startswith(p) for i in ids) > 1)
    result = runner.invoke(app, ["trace", prefix, str(ISTIO / "access.log")])
    assert result.exit_code == 2
    many = sum(i.startswith(prefix) for i in ids)
    assert f"{many} request ids start with {prefix!r}" in result.stderr


def test_counts_read_as_words_with_thousands_separated(tmp_path: Path) -> None:
    one = tmp_path / "one.log"
    one.write_text((ISTIO / "access.log").read_text().splitlines()[0] + "\n")
    result = runner.invoke(app, ["summarize", str(one)])
    assert result.stdout.startswith("1 request from 1 line (0 unparsed, 0 other)"), result.stdout
    lines = (ISTIO / "access.log").read_text().splitlines()
    many = tmp_path / "many.log"
    many.write_text("\n".join(lines[i % len(lines)] for i in range(1900)) + "\n")
    result = runner.invoke(app, ["summarize", str(many)])
    assert result.stdout.startswith("1,900 requests from 1,900 lines"), result.stdout
    assert "meshlog: lines: 1,900 total, 1,900 access, 0 unparsed, 0 other" in result.stderr


def test_bucket_widths_read_as_people_write_them() -> None:
    from meshlog.figures import span

    assert [span(s) for s in (1, 10, 90, 300, 10800, 86400, 0.5)] == ["1s", "10s", "90s", "5m", "3h", "1d", "0.5s"]


def _logged_times(path: Path) -> list[str]:
    """The START_TIME Envoy wrote at the head of each line (``[2026-…Z]``)."""
    return [line[1 : line.index("]")] for line in path.read_text().splitlines()]


def test_parse_takes_where_since_and_until() -> None:
    log = ISTIO / "access.log"
    sent = expected(ISTIO)
    result = runner.invoke(app, ["parse", str(log), "--where", "response_code>=500"])
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["request_id"] for r in rows] == [s["request_id"] for s in sent if s["response_code"] >= 500]
    times = _logged_times(log)
    cut = sorted(times)[len(times) // 2]
    iso = runner.invoke(app, ["parse", str(log), "--since", cut, "-o", "csv"])
    assert pl.read_csv(iso.stdout.encode()).height == sum(t >= cut for t in times)
    last = max(times)
    relative = runner.invoke(app, ["parse", str(log), "--since", "0s"])  # from the last request on
    assert [json.loads(line)["start_time"][:23] for line in relative.stdout.splitlines()] == [
        t[:23] for t in times if t == last
    ]
    bad = runner.invoke(app, ["parse", str(log), "--until", "soon"])
    assert bad.exit_code == 2 and "--until error at column 1" in bad.stderr


def test_every_output_states_the_filter_and_the_window() -> None:
    sent = expected(ISTIO)
    args = [str(ISTIO / "access.log"), "--where", "response_code>=500", "--since", "1h"]
    failed = sum(s["response_code"] >= 500 for s in sent)
    text = runner.invoke(app, ["summarize", *args])
    assert f"{failed} of {len(sent)} requests match `response_code>=500`, since 1h" in text.stdout
    out = json.loads(runner.invoke(app, ["summarize", *args, "-o", "json"]).stdout)
    assert out["filter"] == "response_code>=500"
    assert out["window"]["since"] == "1h" and out["window"]["until"] is None
    last = max(_logged_times(ISTIO / "access.log"))  # 1 h back from the last request
    assert out["window"]["start"][:16] == f"{last[:11]}{int(last[11:13]) - 1:02d}{last[13:16]}"
    markdown = runner.invoke(app, ["summarize", *args, "-o", "markdown"]).stdout
    assert f"{failed} of {len(sent)} requests match `response_code>=500`" in markdown
    plain = json.loads(runner.invoke(app, ["summarize", str(ISTIO / "access.log"), "-o", "json"]).stdout)
    assert plain["filter"] is None and plain["window"] is None


def test_markdown_carries_what_text_shows_of_each_hint() -> None:
    text = runner.invoke(app, ["summarize", str(SAMPLE)], env={"COLUMNS": "250"}).stdout
    markdown = runner.invoke(app, ["summarize", str(SAMPLE), "-o", "markdown"]).stdout
    hints = json.loads(runner.invoke(app, ["summarize", str(SAMPLE), "-o", "json"]).stdout)["hints"]
    refused = next(h for h in hints if h["title"] == "Upstream refuses connections")
    down = "outbound|9999||down.default.svc.cluster.local"  # the fixture's dead cluster (fixtures/regenerate.py)
    assert refused["where"]["upstream_cluster"][0]["value"] == down
    assert "at outbound|9999||down.default (3)" in text  # for people: without the in-mesh suffix
    assert "at outbound\\|9999\\|\\|down.default (3)" in markdown  # the same, table-safe
    for hint in hints:
        assert hint["look_at"] in markdown


def test_top_error_paths_share_counts_every_error() -> None:
    from tests.conftest import failed

    sent = expected(ISTIO)
    errors = [s for s in sent if failed(s)]
    by_path = Counter(s["path"] for s in errors if s["path"])
    out = json.loads(runner.invoke(app, ["summarize", str(ISTIO / "access.log"), "-o", "json"]).stdout)
    assert {p["path"]: p["errors"] for p in out["top_error_paths"]} == dict(by_path)
    for p in out["top_error_paths"]:  # the denominator holds the errors without a path (TCP) too
        assert p["share_of_errors"] == pytest.approx(by_path[p["path"]] / len(errors))
    assert out["overview"]["errors_without_path"] == sum(1 for s in errors if not s["path"])
    text = runner.invoke(app, ["summarize", str(ISTIO / "access.log")], env={"COLUMNS": "200"}).stdout
    assert "top error paths" in text and f"of all {len(errors)}" in text
    if out["overview"]["errors_without_path"]:
        assert f"{out['overview']['errors_without_path']} error" in text and "without a path" in text


@pytest.mark.parametrize(("by", "key"), [("path", "path"), ("response_code", "response_code")])
def test_by_path_and_by_response_code(by: str, key: str) -> None:
    sent = expected(ISTIO)
    args = [str(ISTIO / "access.log"), "--by", by, "--top", "50"]
    out = json.loads(runner.invoke(app, ["summarize", *args, "-o", "json"]).stdout)
    rows = out["latency"][f"by_{key}"]
    want = Counter(s[key] for s in sent)  # a TCP line has no path: a null row in CSV, none in JSON
    assert {r[key]: r["requests"] for r in rows} == {k: v for k, v in want.items() if k is not None}
    csv = runner.invoke(app, ["summarize", *args, "-o", "csv"])
    table = pl.read_csv(csv.stdout.encode(), infer_schema=False)
    assert dict(zip(table[key].to_list(), map(int, table["requests"].to_list()), strict=True)) == {
        (None if k is None else str(k)): v for k, v in want.items()
    }


def test_a_where_error_points_at_its_column_and_names_a_near_miss() -> None:
    result = runner.invoke(app, ["summarize", str(SAMPLE), "--where", "response_code>=500 and respons_flags~UF"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if "--where error at column 24" in line)
    assert "no column 'respons_flags'; did you mean 'response_flags'?" in lines[at]
    assert lines[at + 1] == "  response_code>=500 and respons_flags~UF"
    assert lines[at + 2] == "  " + " " * 23 + "^"


def test_the_report_fits_80_columns_without_cutting_names() -> None:
    result = runner.invoke(app, ["summarize", str(SAMPLE)], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in ("outbound|9999||down.default", "outbound|8080||backend.default"):  # whole, on one line
        assert any(name in line for line in lines), name
    assert not any(line.rstrip().endswith(("cluste", "svc.cl")) for line in lines)


def test_the_json_document_is_the_typed_contract() -> None:
    """Every key ``-o json`` writes is in ``reports.contract.Summary``, and every required one is there."""
    from meshlog.reports.contract import Latency, Summary

    for args in ([str(SAMPLE)], [str(ISTIO / "access.log"), str(FIXTURES / "envoy" / "istio-json" / "access.log")]):
        out = json.loads(runner.invoke(app, ["summarize", *args, "-o", "json", "--by", "route"]).stdout)
        assert Summary.__required_keys__ <= set(out) <= Summary.__required_keys__ | Summary.__optional_keys__
        assert Latency.__required_keys__ <= set(out["latency"]) <= Latency.__required_keys__ | Latency.__optional_keys__


def test_the_package_says_its_version_and_types_once() -> None:
    import importlib.metadata

    import meshlog

    assert importlib.metadata.version("meshlog") == meshlog.__version__  # one place: meshlog/__init__.py
    assert (ROOT / "meshlog" / "py.typed").exists()
