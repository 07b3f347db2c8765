"""``meshlog listen``: receive fluentd / fluent-bit forward traffic, write parsed rows as they arrive."""

from __future__ import annotations

import signal
import sys
import threading
from enum import Enum
from types import FrameType
from typing import Annotated, BinaryIO

import polars as pl
import typer

from meshlog.cli import app, boundary, say
from meshlog.cli.commands import FormatFileOpt, FormatOpt, MeshConfigOpt
from meshlog.errors import DetectionError
from meshlog.export import write_rows
from meshlog.formats.compiler import CompiledFormat
from meshlog.forward.protocol import MAX_MESSAGE_BYTES
from meshlog.forward.server import IDLE_TIMEOUT, ForwardServer
from meshlog.parse import AccessLog, parse_lines
from meshlog.parse.detect import SAMPLE_LINES, detect
from meshlog.pipeline import FormatOptions, compile_options


class StreamOutput(str, Enum):
    ndjson = "ndjson"
    csv = "csv"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:24224`` for IPv6) → (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise typer.BadParameter(f"expected HOST:PORT such as 127.0.0.1:24224, got {text!r}", param_hint="--forward")
    return host, int(port)


def _check_address(text: str) -> str:
    parse_address(text)  # a usage error (exit 2) before anything starts
    return text


class _Rows:
    """Lines frames → parsed rows on ``sink``, with the line accounting. Called from one thread."""

    def __init__(self, fmt: CompiledFormat | None, output: StreamOutput, sink: BinaryIO) -> None:
        self.format = fmt
        self.output = output
        self.sink = sink
        self.counts = {"total": 0, "access": 0, "unparsed": 0, "other": 0}
        self.first_unparsed: tuple[str, int, str] | None = None
        self._pending: list[pl.DataFrame] = []
        self._header = True

    def __call__(self, lines: pl.DataFrame) -> None:
        if self.format is None:
            self._pending.append(lines)
            sample = pl.concat(self._pending)
            if not self._detect(sample, final=False):
                return
            lines, self._pending = sample, []
        assert self.format is not None
        self._write(parse_lines(lines, self.format))

    def finish(self) -> None:
        """The stream stopped: lines still waiting for detection are parsed now (or detection fails)."""
        if self._pending:
            sample = pl.concat(self._pending)
            self._pending = []
            self._detect(sample, final=True)
            assert self.format is not None
            self._write(parse_lines(sample, self.format))

    def _detect(self, sample: pl.DataFrame, *, final: bool) -> bool:
        """Detect from the first lines; a live stream may start with only pilot-agent lines, so keep
        waiting (up to ``SAMPLE_LINES``) until some access line shows up."""
        non_blank = sample.filter(pl.col("line").str.strip_chars() != "").height
        if not final and non_blank < 20 and sample.height < SAMPLE_LINES:
            return False
        try:
            self.format = detect(sample["line"].to_list())
        except DetectionError:
            if final or sample.height >= SAMPLE_LINES:
                raise
            return False
        say(f"format: detected {self.format.name or 'a custom format'} (use --format to choose)")
        for warning in self.format.warnings:
            say(f"warning: {warning}")
        return True

    def _write(self, log: AccessLog) -> None:
        c = log.counts
        for key in self.counts:
            self.counts[key] += getattr(c, key)
        if self.first_unparsed is None and log.unparsed.height:
            self.first_unparsed = tuple(log.unparsed.select("source", "line_no", "reason").row(0))  # type: ignore[assignment]
        if log.requests.height or (self._header and self.output is StreamOutput.csv):
            write_rows(log.requests, self.output.value, self.sink, header=self._header)
            self._header = False
            self.sink.flush()


@app.command()
@boundary
def listen(
    forward: Annotated[
        str,
        typer.Option(
            "--forward", callback=_check_address, help="HOST:PORT to receive fluentd / fluent-bit `forward` output on."
        ),
    ],
    shared_key: Annotated[
        str | None,
        typer.Option("--shared-key", envvar="MESHLOG_SHARED_KEY", help="Require the forward shared-key handshake."),
    ] = None,
    output: Annotated[StreamOutput, typer.Option("--output", "-o", help="Row format.")] = StreamOutput.ndjson,
    format: FormatOpt = None,
    format_file: FormatFileOpt = None,
    mesh_config: MeshConfigOpt = None,
    summary_every: Annotated[
        float | None, typer.Option("--summary-every", help="Print a one-line summary on stderr every N seconds.")
    ] = None,
    idle_timeout: Annotated[
        float, typer.Option("--idle-timeout", help="Close a client that sends nothing for N seconds.")
    ] = IDLE_TIMEOUT,
    max_message_mib: Annotated[
        int, typer.Option("--max-message-mib", help="Reject (and disconnect) a client sending a bigger message.")
    ] = MAX_MESSAGE_BYTES >> 20,
) -> None:
    """Receive forward-protocol traffic and write each parsed row as it arrives; Ctrl-C / SIGTERM stops."""
    host, port = parse_address(forward)
    fmt = compile_options(FormatOptions(format, format_file, mesh_config))
    if fmt is not None:
        for warning in fmt.warnings:
            say(f"warning: {warning}")
    rows = _Rows(fmt, output, sys.stdout.buffer)
    server = ForwardServer(
        rows,
        host=host,
        port=port,
        shared_key=shared_key,
        max_message_bytes=max_message_mib << 20,
        idle_timeout=idle_timeout,
        on_problem=say,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    if summary_every:
        threading.Thread(target=_summaries, args=(server, rows, summary_every, done), daemon=True).start()
    try:
        server.run(on_ready=lambda s: say(f"listening for forward traffic on {s.host}:{s.port}"))
    finally:
        done.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    rows.finish()
    _account(server, rows)


def _summary(server: ForwardServer, rows: _Rows) -> str:
    s, c = server.stats, rows.counts
    return (
        f"{s.connections} connection(s) ({s.active} open), {s.events} event(s); "
        f"lines: {c['total']} total, {c['access']} access, {c['unparsed']} unparsed, {c['other']} other; "
        f"{s.problems} problem(s)"
    )


def _summaries(server: ForwardServer, rows: _Rows, every: float, done: threading.Event) -> None:
    while not done.wait(every):
        say(_summary(server, rows))


def _account(server: ForwardServer, rows: _Rows) -> None:
    """The same accounting line ``parse`` prints, then what the receiver saw."""
    c = rows.counts
    say(f"lines: {c['total']} total, {c['access']} access, {c['unparsed']} unparsed, {c['other']} other")
    if rows.first_unparsed is not None:
        source, line_no, reason = rows.first_unparsed
        say(f"first unparsed line: {source}:{line_no}: {reason}")
    assembler, stats = server.assembler, server.stats
    if assembler.invalid_utf8:
        say(f"forward: {assembler.invalid_utf8} line(s) with invalid UTF-8 (kept, bad bytes shown as U+FFFD)")
    if assembler.cut_partials:
        say(f"forward: {assembler.cut_partials} partial (P) line(s) cut at {assembler.max_partial_bytes} bytes")
    say(
        f"forward: {stats.connections} connection(s), {stats.messages} message(s), {stats.events} event(s), "
        f"{stats.acks} ack(s), {stats.problems} problem(s)"
        + (f", {stats.ignored} non-log event(s) ignored" if stats.ignored else "")
    )
