"""``meshlog listen``: receive fluentd / fluent-bit forward traffic, write parsed rows as they arrive."""

from __future__ import annotations

import signal
import sys
import threading
from enum import StrEnum
from types import FrameType
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer

from meshlog.cli import app, boundary, say
from meshlog.cli.commands import FormatFileOpt, FormatOpt, MeshConfigOpt, Records, RecordsOpt, accounting
from meshlog.figures import count
from meshlog.forward.limits import IDLE_TIMEOUT, MAX_MESSAGE_BYTES

if TYPE_CHECKING:  # the receiver and the library load when `listen` runs
    import polars as pl

    from meshlog.formats.compiler import CompiledFormat
    from meshlog.forward.server import ForwardServer
    from meshlog.parse import LineCounts
    from meshlog.stream import Job


class StreamOutput(StrEnum):
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
    """Lines frames → parsed rows on ``sink`` through the one ``StreamParser`` (each tag's format
    detected on its own; the line accounting). Called from one thread."""

    def __init__(
        self, fmt: CompiledFormat | None, output: StreamOutput, sink: BinaryIO, *, connections: bool = False
    ) -> None:
        from meshlog.export import RowWriter
        from meshlog.pipeline import connection_schema
        from meshlog.stream import StreamParser

        self.stream = StreamParser(fmt, on_format=self._announce)
        self.connections = connections  # ztunnel's records (Istio ambient) rather than Envoy's requests
        columns = list(connection_schema()) if connections else None
        self.writer = RowWriter(output.value, sink, columns, on_dropped=self._dropped)

    @property
    def counts(self) -> LineCounts:
        return self.stream.tally.counts

    def __call__(self, lines: pl.DataFrame) -> None:
        for job in self.stream.ready(lines, paused=True):  # a forward batch is what came: write it now
            self._write(job)

    def finish(self) -> None:
        """The stream stopped: lines still held for detection are decided and written now."""
        for job in self.stream.finish():
            self._write(job)
        self.writer.close()

    def _write(self, job: Job) -> None:
        parsed = self.stream.parse(job)
        self.stream.count(parsed)
        for problem in self.stream.new_problems():
            say(f"warning: {problem}")
        if parsed.log is not None:
            if self.writer.columns is None:
                from meshlog.pipeline import row_columns

                self.writer.columns = row_columns([parsed.log.format])
            self.writer.write(parsed.log.connections if self.connections else parsed.log.requests)

    @staticmethod
    def _announce(source: str, fmt: CompiledFormat) -> None:
        say(f"format: detected {fmt.name or 'a custom format'} for {source} (use --format to choose)")
        for warning in fmt.warnings:
            say(f"warning: {warning}")

    @staticmethod
    def _dropped(columns: list[str]) -> None:
        say(f"warning: {', '.join(columns)}: not in the CSV header (fixed at its first row); use -o ndjson")


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
    records: RecordsOpt = Records.requests,
) -> None:
    """Receive forward-protocol traffic and write each parsed row as it arrives; Ctrl-C / SIGTERM stops."""
    from meshlog.forward.server import ForwardServer
    from meshlog.pipeline import FormatOptions, compile_options

    host, port = parse_address(forward)
    fmt = compile_options(FormatOptions(format, format_file, mesh_config))
    if fmt is not None:
        for warning in fmt.warnings:
            say(f"warning: {warning}")
    rows = _Rows(fmt, output, sys.stdout.buffer, connections=records is Records.connections)
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
        f"{count(s.connections, 'connection')} ({s.active:,} open), {count(s.events, 'event')}; "
        f"{accounting(c)}; {count(s.problems, 'problem')}"
    )


def _summaries(server: ForwardServer, rows: _Rows, every: float, done: threading.Event) -> None:
    while not done.wait(every):
        say(_summary(server, rows))


def _account(server: ForwardServer, rows: _Rows) -> None:
    """The same accounting line ``parse`` prints, then what the receiver saw."""
    c = rows.counts
    say(accounting(c))
    if (first := rows.stream.tally.first_unparsed) is not None:
        source, line_no, reason = first
        say(f"first unparsed line: {source}:{line_no}: {reason}")
    assembler, stats = server.assembler, server.stats
    if assembler.invalid_utf8:
        say(f"forward: {count(assembler.invalid_utf8, 'line')} with invalid UTF-8 (kept, bad bytes shown as U+FFFD)")
    if assembler.cut_partials:
        cut = count(assembler.cut_partials, "partial (P) line")
        say(f"forward: {cut} cut at {assembler.max_partial_bytes:,} bytes")
    say(
        f"forward: {count(stats.connections, 'connection')}, {count(stats.messages, 'message')}, "
        f"{count(stats.events, 'event')}, {count(stats.acks, 'ack')}, {count(stats.problems, 'problem')}"
        + (f", {count(stats.ignored, 'non-log event')} ignored" if stats.ignored else "")
    )
