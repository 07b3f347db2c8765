"""The streaming core: every input as fast as a file, each source's own format, nothing lost at the edges.

Each defect test here failed before the stream parser (issue: one streaming core). Inputs are the
real-Envoy fixtures; expected values come from their ``expected.jsonl`` (what the generator sent).
"""

from __future__ import annotations

import gzip
import json
import os
import pty
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import polars as pl
import pytest

from meshlog.pipeline import Run, parse_paths
from meshlog.stream import StreamParser
from meshlog.tui.forward import ForwardFeed
from meshlog.tui.state import LogState
from tests.conftest import FIXTURES, ROOT

ISTIO = FIXTURES / "envoy" / "istio"
ISTIO_JSON = FIXTURES / "envoy" / "istio-json"
ENVOY = FIXTURES / "envoy" / "envoy"
SAMPLE = FIXTURES / "sample" / "istio-proxy.log"
MESHLOG = [sys.executable, "-m", "meshlog"]
STARTUP = SAMPLE.read_text().splitlines()[:4]  # pilot-agent / Envoy start-up lines of a real sidecar
NOT_ENVOY = [f"conn {i} from 10.0.0.{i} took {i}ms result=ok" for i in range(30)]  # no preset fits these


def sent(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "expected.jsonl").read_text().splitlines()]


def meshlog(*args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*MESHLOG, *args], input=stdin, capture_output=True, timeout=timeout, cwd=ROOT, env=_env(), check=False
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    """meshlog with stdin, stdout and stderr as pipes: a live stream the test writes and reads."""
    return subprocess.Popen(
        [*MESHLOG, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=_env()
    )


def istio_lines(n: int) -> bytes:
    """``n`` real Envoy lines (the fixture's, repeated)."""
    lines = (ISTIO / "access.log").read_bytes().splitlines(keepends=True)
    return b"".join(lines[i % len(lines)] for i in range(n))


# -- batching: a pipe is read in blocks as large as a file's, and a live one is not kept waiting ---------


def test_a_fast_pipe_is_parsed_in_few_large_chunks(tmp_path: Path) -> None:
    data = istio_lines(20_000)  # ~7 MB: ~110 pipe reads of 64 KiB, each parsed on its own before
    read_fd, write_fd = os.pipe()
    writer = threading.Thread(target=_write_all, args=(write_fd, data))
    writer.start()
    with os.fdopen(read_fd, "rb") as stdin:
        run = Run(None, stdin=stdin)
        chunks = list(parse_paths(["-"], run))
    writer.join()
    assert sum(c.requests.height for c in chunks) == 20_000
    assert len(chunks) <= 4, [c.requests.height for c in chunks]
    assert run.tally.counts.total == 20_000


def _write_all(fd: int, data: bytes, *, piece: int = 4096) -> None:
    with os.fdopen(fd, "wb", buffering=0) as out:
        for i in range(0, len(data), piece):
            out.write(data[i : i + piece])


def test_a_live_pipe_shows_its_first_row_within_the_time_bound() -> None:
    """A writer sends 3 lines, then pauses 3 s: the rows must come out during the pause (start-up included)."""
    proc = _spawn("parse", "-o", "ndjson", "-")
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(istio_lines(3))
        proc.stdin.flush()
        t0 = time.monotonic()
        rows = [json.loads(_read_line(proc.stdout, timeout=2.8)) for _ in range(3)]
        took = time.monotonic() - t0
        assert took < 2.8  # the pause is 3 s: the rows came before the writer went on
        assert [r["request_id"] for r in rows] == [s["request_id"] for s in sent(ISTIO)[:3]]
        time.sleep(max(0.0, 3 - took))
        proc.stdin.write(b"".join(istio_lines(5).splitlines(keepends=True)[3:]))
        proc.stdin.close()
        rest = proc.stdout.read().splitlines()
        assert len(rest) == 2
    finally:
        proc.kill()
        proc.wait()


def _read_line(stream: IO[bytes], *, timeout: float) -> bytes:
    """One line from a pipe, or fail after ``timeout`` (a reader thread: a pipe read cannot time out)."""
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert out and out[0], f"no row within {timeout} s"
    return out[0]


# -- each source its own format ----------------------------------------------------------------------


def test_each_input_has_its_format_detected_on_its_own() -> None:
    result = meshlog("summarize", "-o", "json", str(ISTIO / "access.log"), str(ISTIO_JSON / "access.log"))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    both = sent(ISTIO) + sent(ISTIO_JSON)
    assert out["requests"] == len(both)
    assert out["lines"] == {"total": len(both), "access": len(both), "unparsed": 0, "other": 0}
    assert {c["code"]: c["count"] for c in out["response_codes"]} == dict(Counter(s["response_code"] for s in both))
    stderr = result.stderr.decode()
    assert f"format: detected istio for {ISTIO / 'access.log'}" in stderr
    assert f"format: detected istio-json for {ISTIO_JSON / 'access.log'}" in stderr


def test_an_input_no_preset_fits_is_named_and_its_lines_counted(tmp_path: Path) -> None:
    odd = tmp_path / "odd.log"
    odd.write_text("\n".join(NOT_ENVOY) + "\n")
    result = meshlog("summarize", "-o", "json", str(ISTIO / "access.log"), str(odd))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["requests"] == len(sent(ISTIO))
    assert out["lines"] == {
        "total": len(sent(ISTIO)) + len(NOT_ENVOY),
        "access": len(sent(ISTIO)),
        "unparsed": len(NOT_ENVOY),
        "other": 0,
    }
    assert f"warning: {odd}: no preset matches" in result.stderr.decode()
    alone = meshlog("summarize", str(odd))  # nothing else to report: a usage error naming the input
    assert alone.returncode == 2
    assert f"error: {odd}: no preset matches the first 30 non-blank lines" in alone.stderr.decode()


def test_a_stream_of_start_up_lines_only_has_no_access_lines_yet() -> None:
    result = meshlog("summarize", "-", stdin=("\n".join(STARTUP) + "\n").encode())
    assert result.returncode == 0, result.stderr
    stderr = result.stderr.decode()
    assert "no access lines yet (4 other lines)" in stderr
    assert "no preset" not in stderr


def test_start_up_lines_are_held_until_the_first_access_line_tells_the_format() -> None:
    stream = StreamParser()
    lines = pl.DataFrame({"source": ["s"] * 4, "line_no": [1, 2, 3, 4], "line": STARTUP})
    assert stream.ready(lines, paused=True) == []  # nothing to tell the format from yet
    access = (ISTIO / "access.log").read_text().splitlines()[:1]
    jobs = stream.ready(pl.DataFrame({"source": ["s"], "line_no": [5], "line": access}), paused=True)
    assert [j.format.name for j in jobs if j.format] == ["istio"]
    parsed = stream.parse(jobs[0])
    assert parsed.log is not None and parsed.log.requests["line_no"].to_list() == [5]
    assert parsed.tally.counts.other == 4 and parsed.tally.counts.access == 1


# -- the TUI's forward feed keeps what it cannot parse -----------------------------------------------------


def test_forward_feed_counts_a_tag_no_preset_fits_and_says_so() -> None:
    state = LogState()
    problems: list[str] = []
    feed = ForwardFeed(state, None, on_problem=problems.append)
    n = 250  # past the detection sample: the feed gives up on this tag and says so
    odd = pl.DataFrame({"source": ["forward:odd"] * n, "line_no": range(1, n + 1), "line": NOT_ENVOY * 8 + ["x"] * 10})
    feed(odd)
    feed.finish()
    assert state.lines.total == n and state.lines.unparsed == n
    assert len(problems) == 1 and problems[0].startswith("forward:odd: no preset matches")


# -- defects -------------------------------------------------------------------------------------------


def test_parse_csv_of_inputs_with_different_wrapper_columns_keeps_one_header(tmp_path: Path) -> None:
    """A plain file and a kubelet node file (CRI, pod/namespace/container from the path)."""
    plain = ISTIO / "access.log"
    node = tmp_path / "var/log/pods/default_reviews-v1-abc_0f1e2d3c-1111-2222-3333-444455556666/istio-proxy/0.log"
    node.parent.mkdir(parents=True)
    node.write_text(
        "".join(f"2026-11-25T21:24:2{i % 10}.000000000Z stdout F {line}\n"
                for i, line in enumerate(plain.read_text().splitlines()))
    )  # fmt: skip
    result = meshlog("parse", "-o", "csv", "-f", "istio", str(plain), str(node))
    assert result.returncode == 0, result.stderr
    rows = pl.read_csv(result.stdout, infer_schema=False)
    assert rows.height == 2 * len(sent(ISTIO))
    codes = [str(s["response_code"]) for s in sent(ISTIO)]
    assert rows["response_code"].to_list() == codes + codes
    assert rows["request_id"].to_list() == [s["request_id"] for s in sent(ISTIO)] * 2
    assert rows["pod"].to_list() == [None] * len(codes) + ["reviews-v1-abc"] * len(codes)
    assert rows["container"].to_list() == [None] * len(codes) + ["istio-proxy"] * len(codes)
    assert rows["captured_at"][len(codes)] == "2026-11-25T21:24:20.000000Z"


def test_summarize_reads_a_duration_past_int32() -> None:
    """A long-lived TCP / gRPC stream: 3,000,000,000 ms (~35 days) is a valid duration."""
    line = (ISTIO / "access.log").read_text().splitlines()[0]
    assert ' "-" 0 3 1 0 "-" ' in line  # bytes received, sent, duration, upstream time
    long = line.replace(' "-" 0 3 1 0 "-" ', ' "-" 0 3 3000000000 0 "-" ')
    result = meshlog("summarize", "-o", "json", "-", stdin=(line + "\n" + long + "\n").encode())
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["latency"]["duration"]["max"] == 3_000_000_000
    assert out["requests"] == 2


@pytest.mark.parametrize("args", [["-f", "istio"], ["-f", "istio", "-o", "json"], ["-f", "envoy", "-o", "markdown"]])
def test_summarize_of_an_empty_input_with_a_format_is_zero_counts(args: list[str]) -> None:
    result = meshlog("summarize", *args, "-", stdin=b"")
    assert result.returncode == 0, result.stderr
    assert "no input lines: the input is empty" in result.stderr.decode()
    assert "internal error" not in result.stderr.decode()
    if "json" in args:
        assert json.loads(result.stdout)["lines"] == {"total": 0, "access": 0, "unparsed": 0, "other": 0}


def test_summarize_of_envoys_default_format_reports_by_what_the_log_has() -> None:
    result = meshlog("summarize", "-o", "json", str(ENVOY / "access.log"))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    by = out["latency"]["by_authority"]
    assert sum(r["requests"] for r in by) == len([s for s in sent(ENVOY) if s["authority"]])  # TCP: none
    assert {r["authority"] for r in by} == {s["authority"] for s in sent(ENVOY) if s["authority"]}
    assert "latency by authority (this log has no upstream_cluster" in result.stderr.decode()
    explicit = meshlog("summarize", "--by", "cluster", str(ENVOY / "access.log"))
    assert explicit.returncode == 2
    assert "--by cluster: this log has no upstream_cluster column" in explicit.stderr.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "5x"], "--since error at column 1: expected an ISO-8601 time"),
        (["--until", "yesterday"], "--until error at column 1"),
        (["--where", "response_code>"], "--where error"),
    ],
)
def test_bad_options_stop_before_any_input_is_read(args: list[str], message: str) -> None:
    """stdin stays open and silent: the run must not wait for it."""
    proc = _spawn("summarize", *args, "-")
    try:
        code = proc.wait(timeout=20)
    finally:
        proc.kill()
        assert proc.stdin is not None
        proc.stdin.close()
    assert code == 2
    assert proc.stderr is not None and message in proc.stderr.read().decode()


def test_by_pod_on_a_stream_without_pods_stops_at_its_first_rows() -> None:
    proc = _spawn("summarize", "--by", "pod", "-")
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write(istio_lines(40))
        proc.stdin.flush()  # and the pipe stays open
        code = proc.wait(timeout=20)
    finally:
        proc.kill()
    assert code == 2
    assert "--by pod: this log has no pod column" in proc.stderr.read().decode()


def _closed_stdout(args: list[str], stdin: bytes | None = None) -> tuple[int, str]:
    """Run with stdout a pipe whose reader is already gone (what `| head` leaves behind)."""
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    try:
        result = subprocess.run(
            [*MESHLOG, *args], input=stdin, stdout=write_fd, stderr=subprocess.PIPE, cwd=ROOT, env=_env(),
            timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write_fd)
    return result.returncode, result.stderr.decode()


@pytest.mark.parametrize(
    "args",
    [
        ["summarize", str(SAMPLE)],
        ["summarize", "-o", "json", str(SAMPLE)],
        ["summarize", "-o", "markdown", str(SAMPLE)],
        ["parse", "-o", "parquet", str(SAMPLE)],
        ["parse", "-o", "ndjson", str(SAMPLE)],
        ["parse", "-o", "csv", str(SAMPLE)],
        ["flags"],
    ],
)
def test_a_closed_stdout_ends_the_run_quietly(args: list[str]) -> None:
    code, stderr = _closed_stdout(args)
    assert code == 0, stderr
    assert "error" not in stderr and "Traceback" not in stderr


def _on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run with stdout on a pseudo-terminal (as the TUI needs), stderr captured."""
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [*MESHLOG, *args], stdin=subprocess.DEVNULL, stdout=follower, stderr=subprocess.PIPE, cwd=ROOT,
            env=_env(), timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(follower)
        os.close(leader)
    return result.returncode, result.stderr.decode()


def test_tui_on_a_missing_input_is_an_error_before_the_screen_opens(tmp_path: Path) -> None:
    code, stderr = _on_a_terminal(["tui", str(tmp_path / "MISSING.log")])
    assert code == 3
    assert f"error: {tmp_path / 'MISSING.log'}: no such file" in stderr


def test_tui_refuses_to_start_without_a_terminal() -> None:
    result = meshlog("tui", str(SAMPLE), timeout=30)
    assert result.returncode == 2
    assert "the TUI draws on a terminal and stdout is not one" in result.stderr.decode()
    assert result.stdout == b""  # no escape codes


def test_stdin_on_a_terminal_shows_a_line_counter() -> None:
    """stderr a terminal, stdin a pipe: the counter names lines and the rate while it reads."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*MESHLOG, "summarize", "-o", "json", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=follower, cwd=ROOT, env={**_env(), "COLUMNS": "160"},
    )  # fmt: skip
    os.close(follower)
    seen = bytearray()
    done = threading.Event()

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            seen.extend(data)
        done.set()

    threading.Thread(target=drain, daemon=True).start()
    assert proc.stdin is not None and proc.stdout is not None
    for _ in range(6):  # a slow producer: the counter has time to draw
        proc.stdin.write(istio_lines(2000))
        proc.stdin.flush()
        time.sleep(0.3)
    proc.stdin.close()
    out = json.loads(proc.stdout.read())
    proc.wait(timeout=30)
    done.wait(5)
    os.close(leader)
    assert out["requests"] == 12_000
    text = seen.decode(errors="replace")
    assert "reading stdin:" in text and " lines, " in text and "/s" in text


def test_gzip_and_stdin_give_the_files_answer(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(istio_lines(5000))
    packed = tmp_path / "a.log.gz"
    with gzip.open(packed, "wb") as out:
        shutil.copyfileobj(log.open("rb"), out)
    by_path = meshlog("summarize", "-o", "json", str(log)).stdout.decode().replace(str(log), "SOURCE")
    by_gz = meshlog("summarize", "-o", "json", str(packed)).stdout.decode().replace(str(packed), "SOURCE")
    by_stdin = meshlog("summarize", "-o", "json", "-", stdin=log.read_bytes()).stdout.decode()
    assert json.loads(by_path)["requests"] == 5000
    assert by_gz == by_path
    assert by_stdin.replace("<stdin>", "SOURCE") == by_path


# -- from a user's run-through: pipes that are not stdin, compressed pipes, lines that look compressed ------


def test_a_named_pipe_is_read_like_stdin(tmp_path: Path) -> None:
    """``meshlog trace ID <(kubectl logs a) <(kubectl logs b)``: process substitution is a FIFO."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes((ISTIO / "access.log").read_bytes()))
    writer.start()
    result = meshlog("summarize", "-o", "json", str(fifo))
    writer.join(10)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["requests"] == len(sent(ISTIO))


@pytest.mark.parametrize("packer", ["gzip", "zstd"])
def test_compressed_bytes_on_stdin_are_decompressed(packer: str) -> None:
    raw = (ISTIO / "access.log").read_bytes()
    if packer == "gzip":
        # two members, as rotation makes
        packed = gzip.compress(raw[: len(raw) // 2]) + gzip.compress(raw[len(raw) // 2 :])
    else:
        import zstandard

        packed = zstandard.ZstdCompressor().compress(raw)
    result = meshlog("summarize", "-o", "json", "-", stdin=packed)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["lines"] == {"total": len(sent(ISTIO)), "access": len(sent(ISTIO)), "unparsed": 0, "other": 0}


def test_lines_that_start_like_a_compressed_stream_are_lines(tmp_path: Path) -> None:
    """polars' reader sniffs compression from a block's first bytes: ``x^`` is a zlib header."""
    log = tmp_path / "a.log"
    odd = ["x^ app started", "x\x9c?", "\x1f\x8bnot gzip"]
    log.write_bytes(("\n".join(odd) + "\n").encode() + (ISTIO / "access.log").read_bytes())
    for args in ([str(log)], ["-"]):
        result = meshlog("summarize", "-o", "json", *args, stdin=log.read_bytes() if args == ["-"] else None)
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["lines"]["total"] == len(odd) + len(sent(ISTIO))
        assert out["requests"] == len(sent(ISTIO))


def test_a_json_key_that_names_an_operator_is_typed_by_it(tmp_path: Path) -> None:
    """istio-json plus ``upstream_request_attempt_count`` (a user's accessLogFormat adds it): an integer."""
    log = tmp_path / "json.log"
    lines = (ISTIO_JSON / "access.log").read_text().splitlines()
    attempts = [1 + i % 3 for i in range(len(lines))]
    log.write_text(
        "".join(f'{{"upstream_request_attempt_count":{n},{line[1:]}\n' for n, line in zip(attempts, lines, strict=True))
    )
    result = meshlog("summarize", "-o", "json", str(log))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {a["attempts"]: a["count"] for a in out["retries"]["attempt_counts"]} == dict(Counter(attempts))
    rows = [json.loads(r) for r in meshlog("parse", str(log)).stdout.splitlines()]
    assert [r["upstream_request_attempt_count"] for r in rows] == attempts


def test_an_input_of_start_up_lines_still_gets_its_report_and_tables(tmp_path: Path) -> None:
    startup = tmp_path / "startup.log"
    startup.write_text("\n".join(STARTUP) + "\n")
    report = json.loads(meshlog("summarize", "-o", "json", str(startup)).stdout)
    assert report["lines"] == {"total": 4, "access": 0, "unparsed": 0, "other": 4}
    assert report["format"] == {"name": None, "string": None} and report["requests"] == 0
    assert json.loads(meshlog("parse", "-o", "json", str(startup)).stdout) == []
    assert meshlog("parse", "-o", "csv", str(startup)).stdout.decode().splitlines() == [
        "source,line_no,captured_at,pod,namespace,container,stream"
    ]
    out = tmp_path / "rows.parquet"
    assert meshlog("parse", "-o", "parquet", "--out", str(out), str(startup)).returncode == 0
    assert pl.read_parquet(out).height == 0


def test_json_records_read_with_a_text_format_are_unparsed_with_the_reason() -> None:
    result = meshlog("summarize", "-o", "json", "-f", "istio", str(ISTIO_JSON / "access.log"))
    out = json.loads(result.stdout)
    assert out["lines"] == {"total": 19, "access": 0, "unparsed": 19, "other": 0}
    assert out["unparsed_lines"][0]["reason"].startswith("a JSON access record, but the format is text")


def test_several_formats_are_each_named_in_the_report() -> None:
    inputs = [str(ISTIO / "access.log"), str(ISTIO_JSON / "access.log")]
    out = json.loads(meshlog("summarize", "-o", "json", *inputs).stdout)
    assert [(f["name"], f["sources"]) for f in out["formats"]] == [("istio", inputs[0]), ("istio-json", inputs[1])]
    assert "· formats istio, istio-json" in meshlog("summarize", *inputs).stdout.decode().splitlines()[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["summarize", "-f", "istio", "--where", "nosuchcol=1"], "--where error at column 1: no column 'nosuchcol'"),
        (["summarize", "-f", "istio", "--where", "response_code>abc"], "response_code holds numbers"),
        (["summarize", "-f", "envoy", "--by", "cluster"], "--by cluster: this log has no upstream_cluster column"),
        (["parse", "-f", "istio", "--where", "nosuchcol=1"], "no column 'nosuchcol'"),
        (["parse", "--out", "/nonexistent-dir/x.csv", "-o", "csv"], "--out /nonexistent-dir/x.csv: cannot write"),
    ],
)
def test_options_the_given_format_rules_out_stop_before_reading(args: list[str], message: str) -> None:
    proc = _spawn(*args, "-")
    try:
        code = proc.wait(timeout=20)  # stdin stays open and silent
    finally:
        proc.kill()
    assert code == 2
    assert proc.stderr is not None and message in proc.stderr.read().decode()


def test_ctrl_c_on_a_live_stream_reports_what_came() -> None:
    proc = _spawn("summarize", "-o", "json", "-")
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(istio_lines(19))
    proc.stdin.flush()
    time.sleep(3)  # read and parsed; the pipe stays open as `kubectl logs -f` keeps it
    proc.send_signal(2)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert json.loads(out)["requests"] == 19
    assert "interrupted: the report covers the lines read before Ctrl-C" in err.decode()
