"""`meshlog listen` end to end: a subprocess receives from fluent-logger, writes rows before it is
stopped, and accounts for every line when SIGTERM / SIGINT stops it."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from typing import IO, Any

from fluent import sender

from tests.conftest import ROOT
from tests.forward.support import K8S_TAG, SAMPLES

PLAIN = (SAMPLES / "kubectl-plain.log").read_text().splitlines()


class Listener:
    """``python -m meshlog listen`` on 127.0.0.1 with an ephemeral port read off its stderr.

    Output is read straight off the pipes' descriptors into our own buffers: a ``select`` on a pipe
    says nothing about lines a buffered reader has already pulled in, so rows written in one go
    would look like no output at all.
    """

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshlog", "listen", "--forward", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert self.proc.stdout and self.proc.stderr
        self._unread: dict[int, bytearray] = {}
        self.stderr: list[str] = []
        first = self._read_line(self.proc.stderr, self.stderr)
        match = re.fullmatch(r"meshlog: listening for forward traffic on 127\.0\.0\.1:(\d+)\n", first)
        assert match, first
        self.port = int(match.group(1))

    def _read_line(self, stream: IO[bytes], keep: list[str], timeout: float = 20.0) -> str:
        fd = stream.fileno()
        unread = self._unread.setdefault(fd, bytearray())
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in unread:
            assert sel.select(max(deadline - time.monotonic(), 0)), "no output in time"
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # closed: what is left is the last line
                break
            unread += chunk
        end = unread.find(b"\n") + 1 or len(unread)
        line = unread[:end].decode()
        del unread[:end]
        keep.append(line)
        return line

    def rows(self, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Read ``n`` NDJSON rows from stdout while the listener keeps running."""
        assert self.proc.stdout is not None
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            line = self._read_line(self.proc.stdout, [], max(deadline - time.monotonic(), 0.01))
            assert line, "stdout closed"
            out.append(json.loads(line))
        assert self.proc.poll() is None  # the rows came while it was still listening
        return out

    def stop(self, signum: int) -> tuple[int, str, bytes]:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        fds = self.proc.stdout.fileno(), self.proc.stderr.fileno()  # communicate() closes the pipes
        self.proc.send_signal(signum)
        rest_out, rest_err = self.proc.communicate(timeout=20)
        rests = zip(fds, (rest_out, rest_err), strict=True)
        out, err = (bytes(self._unread.get(fd, b"")) + rest for fd, rest in rests)
        return self.proc.returncode, "".join(self.stderr) + err.decode(), out


def send_plain(port: int) -> None:
    client = sender.FluentSender(K8S_TAG, host="127.0.0.1", port=port, nanosecond_precision=True)
    for i, line in enumerate(PLAIN):
        assert client.emit_with_time(None, 1719556871.25 + i, {"log": line + "\n", "stream": "stdout"})
    client.close()


def test_listen_writes_rows_as_they_arrive_and_accounts_on_sigterm() -> None:
    listener = Listener("-f", "istio", "-o", "ndjson")
    try:
        send_plain(listener.port)
        rows = listener.rows(7)
    finally:
        code, stderr, rest = listener.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert rest == b""
    # the samples README: outbound 418, browser GET 200, 503 UF,URX, gRPC, TCP, 404 NR (and 418 again)
    assert [r["response_code"] for r in rows] == [418, 200, 503, 200, 0, 404, 418]
    assert [r["response_flags"] for r in rows] == [None, None, "UF,URX", None, None, "NR", None]
    first = rows[0]
    assert first["source"] == f"forward:{K8S_TAG}"
    assert (first["pod"], first["namespace"], first["container"], first["stream"]) == (
        "sleep-7656cf8794-7hkmv", "default", "istio-proxy", "stdout",
    )  # fmt: skip
    access_line_nos = [i + 1 for i, line in enumerate(PLAIN) if line.startswith("[")]
    assert [r["line_no"] for r in rows] == access_line_nos
    assert first["captured_at"] == time.strftime(
        "%Y-%m-%dT%H:%M:%S.250000Z", time.gmtime(1719556871 + access_line_nos[0] - 1)
    )
    assert "meshlog: lines: 26 total, 7 access, 0 unparsed, 19 other\n" in stderr
    assert "meshlog: forward: 1 connection, 26 messages, 26 events, 0 acks, 0 problems\n" in stderr


def test_listen_detects_the_format_and_stops_on_sigint() -> None:
    listener = Listener()
    try:
        send_plain(listener.port)
        rows = listener.rows(7)
    finally:
        code, stderr, _ = listener.stop(signal.SIGINT)
    assert code == 0, stderr
    assert "meshlog: format: detected istio for forward:" in stderr  # each tag has its own format
    assert [r["response_code"] for r in rows] == [418, 200, 503, 200, 0, 404, 418]
    assert "meshlog: lines: 26 total, 7 access, 0 unparsed, 19 other\n" in stderr


def test_listen_writes_ztunnel_connections_when_asked() -> None:
    """Istio ambient through a collector: ztunnel's records forwarded, written as connection rows."""
    ambient = ROOT / "fixtures" / "ambient"
    lines = (ambient / "ztunnel.log").read_text().splitlines()
    records = json.loads((ambient / "records.json").read_text())["ztunnel"]
    listener = Listener("--records", "connections")
    try:
        client = sender.FluentSender(K8S_TAG, host="127.0.0.1", port=listener.port, nanosecond_precision=True)
        for i, line in enumerate(lines):
            assert client.emit_with_time(None, 1719556871.25 + i, {"log": line + "\n", "stream": "stdout"})
        client.close()
        rows = listener.rows(len(records))
    finally:
        code, stderr, _ = listener.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert [r["src_addr"] for r in rows] == [r["fields"]["src.addr"] for r in records]
    assert [r["error"] for r in rows] == [r["fields"].get("error") for r in records]
    assert {r["pod"] for r in rows} == {"sleep-7656cf8794-7hkmv"}  # the tag names the pod, as for Envoy lines
    assert f"meshlog: lines: {len(lines)} total, {len(records)} access" in stderr


def test_listen_reports_a_bad_client_and_goes_on() -> None:
    listener = Listener("-f", "istio", "--summary-every", "0.2")
    try:
        with socket.create_connection(("127.0.0.1", listener.port)) as bad:
            bad.sendall(b"\xc1 not msgpack")
            bad.recv(10)
        send_plain(listener.port)
        listener.rows(7)
        time.sleep(0.3)  # at least one periodic summary
    finally:
        code, stderr, _ = listener.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert re.search(
        r"meshlog: forward client 127\.0\.0\.1:\d+: invalid msgpack at byte 0: not a msgpack value\n", stderr
    )
    assert re.search(r"meshlog: \d connections? \(\d open\), \d+ events?; lines: \d+ total", stderr)
    assert "0 acks, 1 problem" in stderr


def test_listen_rejects_a_bad_address() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meshlog", "listen", "--forward", "localhost"],
        check=False, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    said = " ".join(result.stderr.replace("│", " ").split())  # typer draws a box and wraps
    assert "Invalid value for --forward: expected HOST:PORT such as 127.0.0.1:24224, got 'localhost'" in said
