"""The commands. Each one reads options, calls the library, and prints; no logic lives here."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer

from meshlog.cli import app, boundary, say
from meshlog.cli.exit_codes import ExitCode, exit_code_for
from meshlog.cli.metrics import CaFileOpt, InsecureOpt, TimeoutOpt, TokenOpt, UserOpt, connection
from meshlog.errors import DetectionError, MeshlogError, UnparsedLinesError, UsageError
from meshlog.figures import count
from meshlog.flags import FLAGS, lookup, near_misses

# The library (polars, pyparsing, …) is imported where a command runs, not here: `--help`, `flags`
# and `formats` never load it, and each command loads what it uses.
if TYPE_CHECKING:
    import datetime as dt

    import polars as pl

    from meshlog.formats.compiler import CompiledFormat
    from meshlog.metrics.http import Connection
    from meshlog.parse import AccessLog, LineCounts
    from meshlog.pipeline import Run
    from meshlog.reports.contract import InputFormat, Summary
    from meshlog.reports.state import SummaryState


class Records(StrEnum):
    requests = "requests"
    connections = "connections"


RecordsOpt = Annotated[
    Records,
    typer.Option("--records", help="requests (Envoy's access lines) or connections (ztunnel's, Istio ambient)."),
]


class RowOutput(StrEnum):
    ndjson = "ndjson"
    csv = "csv"
    json = "json"
    parquet = "parquet"


class ReportOutput(StrEnum):
    text = "text"
    json = "json"


Paths = Annotated[list[str] | None, typer.Argument(help="Log files, directories or - for stdin (default).")]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help="A preset (istio, istio-json, envoy, …) or an Envoy format string."),
]
FormatFileOpt = Annotated[str | None, typer.Option("--format-file", help="A file holding the format string.")]
MeshConfigOpt = Annotated[
    str | None,
    typer.Option("--mesh-config", help="Istio MeshConfig, istio ConfigMap or IstioOperator YAML."),
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Unparsed lines are an error (exit 4).")]
WhereOpt = Annotated[
    str | None, typer.Option("--where", help="Filter, e.g. 'response_code>=500', 'response_flags~UF'.")
]
SinceOpt = Annotated[str | None, typer.Option("--since", help="ISO time, or 15m/2h before the last request.")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="ISO time, or 15m/2h before the last request.")]


class Input(StrEnum):
    auto = "auto"
    plain = "plain"
    kubectl = "kubectl"
    cri = "cri"
    docker = "docker"
    fluentd = "fluentd"
    fluentbit = "fluentbit"


InputOpt = Annotated[
    Input, typer.Option("--input", help="What wraps the lines; auto detects kubectl, CRI, docker, fluentd, fluent-bit.")
]


def _announcer(run_inputs: list[str]) -> Callable[[str, CompiledFormat], None]:
    """Say which format detection chose (for which input, when there are several) and its warnings."""
    from meshlog.sources import expand

    several = len(expand(run_inputs)) > 1

    def announce(source: str, fmt: CompiledFormat) -> None:
        where = f" for {source}" if several else ""
        say(f"format: detected {fmt.name or 'a custom format'}{where} (use --format to choose)")
        _warn_format(fmt)

    return announce


def accounting(c: LineCounts) -> str:
    """The line accounting every command ends with (one format, so scripts can read it)."""
    return f"lines: {c.total:,} total, {c.access:,} access, {c.unparsed:,} unparsed, {c.other:,} other"


def _warn_format(fmt: CompiledFormat) -> None:
    for warning in fmt.warnings:
        say(f"warning: {warning}")


def _finish(run: Run, strict: bool) -> None:
    """Line accounting on stderr, then the exit code the run deserves."""
    c = run.tally.counts
    say(accounting(c))
    wrapped = {w for ws in run.wrappers.values() for w in ws}
    if wrapped:
        joined = f"; {count(run.joined, 'physical line')} joined into longer ones" if run.joined else ""
        say(f"input: unwrapped {', '.join(sorted(wrapped))}{joined}")
    for stats in run.sources:
        if stats.invalid_utf8:
            bad = count(stats.invalid_utf8, "line")
            say(f"{stats.name}: {bad} with invalid UTF-8 (kept, bad bytes shown as U+FFFD)")
        if stats.too_long:
            n = len(stats.too_long)
            say(
                f"{stats.name}: {count(n, 'line')} longer than 1 MiB cut to {'its' if n == 1 else 'their'} "
                f"first MiB (first at line {stats.too_long[0]})"
            )
    for problem in run.stream.problems.values():  # the other inputs were reported; these lines are unparsed
        say(f"warning: {problem}")
    if c.total == 0:
        say("no input lines: the input is empty")
    first = run.tally.first_unparsed
    if first is not None:
        source, line_no, reason = first
        say(f"first unparsed line: {source}:{line_no}: {reason}")
        if strict:
            raise UnparsedLinesError(c.unparsed, source, line_no, reason)
    for error in run.errors:
        say(f"error: {error}")
    if run.errors:
        raise typer.Exit(ExitCode.INPUT)


def _when_no_format(run: Run) -> None:
    """No access line came in: stop for an unreadable input (exit 3) or an input no format fits
    (exit 2); else (empty, or start-up lines only) say so, and the command still writes its output.
    ztunnel's records need no Envoy format: with some, the run goes on to its report (and its end)."""
    if run.tally.access:
        return
    for error in run.errors:
        say(f"error: {error}")
    if run.errors:
        raise typer.Exit(ExitCode.INPUT)
    if run.stream.problems:
        raise DetectionError("; ".join(run.stream.problems.values()))
    if note := run.stream.no_access_yet():
        say(note)


def _reading(paths: list[str]) -> list[str]:
    """The inputs; none means stdin, which must then be piped (a terminal would just wait)."""
    if not paths and sys.stdin.isatty():
        raise UsageError("nothing to read: give log files, or pipe logs in (kubectl logs … | meshlog …)")
    return paths


def _check_early(run: Run, where: str | None) -> None:
    """With the format given, a ``--where`` that names no column of it (or compares a column with the
    wrong kind of value) stops before any input is read."""
    if where and run.format is not None:
        from meshlog.filters import compile_where
        from meshlog.parse.ztunnel import CONNECTION_SCHEMA
        from meshlog.pipeline import row_schema

        compile_where(where, {**CONNECTION_SCHEMA, **row_schema([run.format])})  # either kind of record


def _check_l4_where(where: str | None) -> None:
    """An input of ztunnel's records only (no Envoy format): a ``--where`` naming a column they lack is
    a mistake to say (with its near miss), not a filter that quietly keeps nothing."""
    if where:
        from meshlog.filters import compile_where
        from meshlog.pipeline import connection_schema

        compile_where(where, connection_schema())


def _sink(out: str | None) -> BinaryIO:
    if not out:
        return sys.stdout.buffer
    try:
        return open(out, "wb")
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write: {exc.strerror}") from None


def _start(
    input: Input = Input.auto, format: str | None = None, format_file: str | None = None, mesh_config: str | None = None
) -> Run:
    """The run of one command: its format (given, or None to detect) and how its input is wrapped."""
    from meshlog.pipeline import FormatOptions, Run, compile_options

    fmt = compile_options(FormatOptions(format, format_file, mesh_config))
    if fmt is not None:
        _warn_format(fmt)
    return Run(fmt, input=input.value)


@app.command()
@boundary
def parse(
    paths: Paths = None,
    output: Annotated[RowOutput, typer.Option("--output", "-o", help="Row format.")] = RowOutput.ndjson,
    out: Annotated[str | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
    format: FormatOpt = None,
    format_file: FormatFileOpt = None,
    mesh_config: MeshConfigOpt = None,
    strict: StrictOpt = False,
    input: InputOpt = Input.auto,
    where: WhereOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    records: RecordsOpt = Records.requests,
) -> None:
    """Typed rows out, one per access-log line (with source and line_no)."""
    from meshlog.export import RowWriter
    from meshlog.filters import check_times, is_relative, narrow, time_filter, where_filter
    from meshlog.parse import AccessLog
    from meshlog.pipeline import parse_paths, peek_formats, row_columns

    if records is Records.connections:
        _parse_connections(paths or [], output, out, input, where, (since, until), strict)
        return
    keep = where_filter(where) if where else None  # options first: a mistake stops before any input
    check_times(since, until)
    relative = is_relative(since) or is_relative(until)  # resolved against the last request: at the end
    in_time = None if relative else time_filter(since, until)
    run = _start(input, format, format_file, mesh_config)
    paths = _reading(paths or [])
    _check_early(run, where)
    if output is RowOutput.parquet and out is None and sys.stdout.isatty():
        raise UsageError("parquet is binary; redirect stdout or use --out FILE")
    if relative and (not paths or "-" in paths):
        say(f"note: {since or until} counts back from the last request, so rows come out when the input ends; "
            "an ISO time streams them")  # fmt: skip
    run.stream.on_format = _announcer(paths)
    if output is not RowOutput.ndjson:  # a table: every input's columns known before its first row
        peek_formats(run, paths)
    sink = _sink(out)

    def dropped(columns: list[str]) -> None:
        say(f"warning: {', '.join(columns)}: not in the table's columns (fixed at its first row); use -o ndjson")

    writer: RowWriter | None = None
    held: list[AccessLog] = []
    try:
        for log in parse_paths(paths, run):
            if writer is None:
                writer = RowWriter(output.value, sink, row_columns(run.stream.formats.values() or [log.format]),
                                   on_dropped=dropped)  # fmt: skip
            if relative:
                held.append(log)
                continue
            rows = log.requests if keep is None else keep(log.requests)
            writer.write(rows if in_time is None else in_time(rows))
        if writer is not None and held:
            whole = AccessLog.concat(held, held[0].format)
            writer.write(narrow(whole, where=where, since=since, until=until).requests)
        if run.format is None:
            _when_no_format(run)
        # no row at all: still a header, `[]` or a valid Parquet file with the columns
        (writer or RowWriter(output.value, sink, row_columns(run.stream.formats.values()))).close()
        if n := run.tally.connections:
            say(f"note: {count(n, 'ztunnel record')} (Istio ambient) not in these rows: use --records connections")
    finally:
        if out:
            sink.close()
    _finish(run, strict)


def _parse_connections(
    paths: list[str],
    output: RowOutput,
    out: str | None,
    input: Input,
    where: str | None,
    times: tuple[str | None, str | None],
    strict: bool,
) -> None:
    """``parse --records connections``: ztunnel's records as rows (``parse.ztunnel.CONNECTION_SCHEMA``
    after the wrapper columns); ``--where`` over their columns, ``--since/--until`` over ``timestamp``
    (a duration counts back from the last connection, so rows then come at the end)."""
    import polars as pl

    from meshlog.export import RowWriter
    from meshlog.filters import bounds, check_times, in_window, is_relative, where_filter
    from meshlog.pipeline import connection_schema, parse_paths

    _check_l4_where(where)  # every column a connection has is known: a mistake stops here
    keep = where_filter(where) if where else None
    check_times(*times)
    relative = is_relative(times[0]) or is_relative(times[1])
    run = _start(input)
    paths = _reading(paths)
    if output is RowOutput.parquet and out is None and sys.stdout.isatty():
        raise UsageError("parquet is binary; redirect stdout or use --out FILE")
    sink = _sink(out)
    writer = RowWriter(output.value, sink, list(connection_schema()))
    held: list[pl.DataFrame] = []
    try:
        for log in parse_paths(paths, run):
            rows = log.connections if keep is None else keep(log.connections)
            if relative:
                held.append(rows)
            elif any(times):
                writer.write(rows.filter(in_window(*bounds(*times, None), column="timestamp")))
            else:
                writer.write(rows)
        if held:
            rows = pl.concat(held, how="diagonal_relaxed")
            latest = rows["timestamp"].max() if rows.height else None
            if latest is not None:
                writer.write(rows.filter(in_window(*bounds(*times, latest), column="timestamp")))  # type: ignore[arg-type]
        writer.close()
    finally:
        if out:
            sink.close()
    _finish(run, strict)


class SummaryOutput(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"
    csv = "csv"


class Engine(StrEnum):
    local = "local"
    spark = "spark"


class By(StrEnum):
    cluster = "cluster"
    route = "route"
    authority = "authority"
    pod = "pod"
    path = "path"
    response_code = "response_code"


_WHERE_FROM = {"pod": " (pods come from kubectl logs --prefix, node log paths or collector metadata)"}
BY_COLUMN = {
    By.cluster: "upstream_cluster", By.route: "route_name", By.authority: "authority", By.pod: "pod",
    By.path: "path", By.response_code: "response_code",
}  # fmt: skip


@app.command()
@boundary
def summarize(
    paths: Paths = None,
    output: Annotated[
        SummaryOutput, typer.Option("--output", "-o", help="text, json, markdown, or csv (one row per --by value).")
    ] = SummaryOutput.text,
    by: Annotated[
        By | None, typer.Option("--by", help="Dimension for the latency / error table (default: cluster).")
    ] = None,
    where: WhereOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows per table.")] = 10,
    format: FormatOpt = None,
    format_file: FormatFileOpt = None,
    mesh_config: MeshConfigOpt = None,
    strict: StrictOpt = False,
    input: InputOpt = Input.auto,
    prometheus: Annotated[
        str | None, typer.Option("--prometheus", help="Compare with what Prometheus counted for the same window.")
    ] = None,
    token: TokenOpt = None,
    user: UserOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    timeout: TimeoutOpt = 10.0,
    engine: Annotated[
        Engine, typer.Option("--engine", help="local, or spark: Spark reads the paths and sends back the summary.")
    ] = Engine.local,
    spark_remote: Annotated[
        str, typer.Option("--spark-remote", help="Spark Connect URL (sc://host:15002) or local[N].")
    ] = "local[*]",
) -> None:
    """Status codes, response flags, latency, retries and triage hints, in one screen."""
    from meshlog.filters import check_times, where_filter
    from meshlog.parse.ztunnel import CONNECTION_SCHEMA
    from meshlog.pipeline import row_columns
    from meshlog.reports.state import default_by
    from meshlog.reports.summary import iso_z, summary_dict

    # options first: a mistake stops here, before any input is read
    keep = where_filter(where, elsewhere=CONNECTION_SCHEMA) if where else None
    check_times(since, until)
    run = _start(input, format, format_file, mesh_config)
    if engine is Engine.spark:
        from meshlog.engines.spark import check_options

        stdin = not paths or "-" in paths
        check_options(**{"--prometheus": prometheus, "--input": input is not Input.auto, "--strict": strict,
                         "stdin": stdin})  # fmt: skip
    paths = _reading(paths or [])
    _check_early(run, where)
    if by is not None and run.format is not None and BY_COLUMN[by] not in row_columns([run.format]):
        _check_by(by, row_columns([run.format]))  # the format has no such column: say so before reading
    run.stream.on_format = _announcer(paths)
    fmt: CompiledFormat | None
    if engine is Engine.spark:
        state, fmt, (start, end) = _on_spark(paths, run, by, spark_remote, where, (since, until))
        interrupted = False
    else:
        state, fmt, (start, end), interrupted = _fold(paths, run, by, keep, where, (since, until))
    columns = list(state.schema)
    if by is not None and state.total:
        _check_by(by, columns)
    dimension = BY_COLUMN[by] if by is not None else default_by(columns)
    if by is None and dimension != "upstream_cluster" and state.total:
        say(f"note: latency by {dimension} (this log has no upstream_cluster; --by chooses)")
    metrics_failed: MeshlogError | None = None
    if output is SummaryOutput.csv:
        _write_table(state, dimension, top)
    else:
        summary = summary_dict(state, fmt or run.format, top=top, by=dimension)
        if len(formats := _formats_used(run)) > 1:  # several inputs, several formats: name each
            summary["formats"] = formats
        summary["filter"] = where or None  # what chose the requests: the report states it
        summary["window"] = (
            {"since": since, "until": until, "start": iso_z(start), "end": iso_z(end)} if since or until else None
        )
        if prometheus:
            conn = connection(prometheus, token, user, ca_file, insecure, timeout)
            metrics_failed = _beside_metrics(summary, state, conn)
        _write_summary(summary, output)
    if metrics_failed is not None:
        say(f"error: {metrics_failed} (the report above is the log's alone)")
    if interrupted:
        say("interrupted: the report covers the lines read before Ctrl-C")
    _finish_on(engine, run, state, strict)
    if metrics_failed is not None:
        raise typer.Exit(exit_code_for(metrics_failed))
    if interrupted:
        raise typer.Exit(ExitCode.INTERRUPTED)


def _write_table(state: SummaryState, dimension: str, top: int) -> None:
    """``summarize -o csv``: one row per value of the dimension (requests only: the note says so)."""
    from meshlog.export import write_rows
    from meshlog.reports.summary import by_table

    write_rows(by_table(state, dimension, top=top), "csv", sys.stdout.buffer)
    if n := state.tally.connections:
        say(f"note: {count(n, 'ztunnel record')} (Istio ambient) not in this table of requests: -o json has them")


def _finish_on(engine: Engine, run: Run, state: SummaryState, strict: bool) -> None:
    """The run's ending: Spark's accounting is in the state it sent back (the local sources read none)."""
    if engine is Engine.spark:
        say(accounting(state.tally.counts))
        if n := state.tally.other_kinds.get("ztunnel-record", 0):
            say(f"note: {count(n, 'ztunnel record')} (Istio ambient) counted as other: the local engine reads them")
    else:
        _finish(run, strict)


def _on_spark(
    paths: list[str], run: Run, by: By | None, url: str, where: str | None, times: tuple[str | None, str | None]
) -> tuple[SummaryState, CompiledFormat, tuple[dt.datetime | None, dt.datetime | None]]:
    """The summary state computed by Spark (``engines.spark``), the format it used, the window's times."""
    from meshlog.engines.spark import session, spark_state

    spark = session(url)
    try:
        dimension = BY_COLUMN[by] if by is not None else None
        state, fmt, window = spark_state(spark, paths, run.format, by=dimension, where=where, times=times)
    finally:
        spark.stop()  # a Connect session left open retries its release at exit, for minutes if the server went
    if run.format is None and run.stream.on_format is not None:
        run.stream.on_format(", ".join(paths), fmt)  # one format for every path Spark read
    return state, fmt, window


def _fold(
    paths: list[str],
    run: Run,
    by: By | None,
    keep: Callable[[pl.DataFrame], pl.DataFrame] | None,
    where: str | None,
    times: tuple[str | None, str | None],
) -> tuple[SummaryState, CompiledFormat | None, tuple[dt.datetime | None, dt.datetime | None], bool]:
    """Read every input into one summary state: the state, the format, the window's times, and True
    when Ctrl-C stopped it (a live stream: the report then covers what came)."""
    from meshlog.cli.progress import progress
    from meshlog.filters import columns_named, where_filter
    from meshlog.pipeline import parse_paths
    from meshlog.reports.fold import Folded
    from meshlog.reports.state import STATE_COLUMNS
    from meshlog.sources import expand

    keep_l4 = where_filter(where) if where else None
    folded = Folded(times, BY_COLUMN[by] if by is not None else None, keep, keep_l4)
    single = len(expand(paths)) == 1
    interrupted = False
    with progress(paths, run) as tick:
        # only the text columns the state and --where read are built
        columns = STATE_COLUMNS | set(folded.dims) | (columns_named(where) if where else set())
        try:
            checked = by is None or not single
            for piece in parse_paths(paths, run, columns=columns, then=folded.chunk):
                rows = piece[0].height if isinstance(piece, tuple) else piece.total
                if not checked and rows:  # one input: its first requests show its columns
                    _check_by(by, piece[0].columns if isinstance(piece, tuple) else piece.columns)  # type: ignore[arg-type]
                    checked = True
                folded.add(piece)
                tick()
        except KeyboardInterrupt:  # following a live stream: Ctrl-C reports what came so far
            interrupted = True
    if run.format is None:
        _when_no_format(run)
        _check_l4_where(where)
    return folded.state.with_tally(run.tally), run.format, folded.window, interrupted


def _beside_metrics(summary: Summary, state: SummaryState, conn: Connection) -> MeshlogError | None:
    """``--prometheus``: what the sidecars counted for the log's window and services, into ``summary``.
    A failure is returned, not raised: the log's own report still stands (printed, then exit 5)."""
    from meshlog.metrics.compare import metrics_beside_log
    from meshlog.metrics.prometheus import Prometheus

    try:
        summary["metrics"] = metrics_beside_log(Prometheus(conn), state.requests, state.start, state.end)
    except MeshlogError as exc:
        summary["metrics_error"] = str(exc)
        return exc
    return None


def _write_summary(summary: Summary, output: SummaryOutput) -> None:
    if output is SummaryOutput.json:
        json.dump(summary, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif output is SummaryOutput.markdown:
        from meshlog.cli.render import markdown_summary  # rich (~30 ms) only when rendering

        print(markdown_summary(summary))
    else:
        from meshlog.cli.render import render_summary

        render_summary(summary)


def _formats_used(run: Run) -> list[InputFormat]:
    """Each input's format (JSON key ``formats``, when there are several)."""
    seen = {id(f): f for f in run.stream.formats.values()}
    by_format = {key: [s for s, f in run.stream.formats.items() if id(f) == key] for key in seen}
    return [{"name": seen[k].name, "string": seen[k].source, "sources": ", ".join(v)} for k, v in by_format.items()]


def _check_by(by: By, columns: Collection[str]) -> None:
    """An explicit ``--by`` names a column the log has."""
    dimension = BY_COLUMN[by]
    if dimension not in columns:
        raise UsageError(f"--by {by.value}: this log has no {dimension} column" + _WHERE_FROM.get(dimension, ""))


@app.command()
@boundary
def trace(
    request_id: Annotated[str, typer.Argument(help="The x-request-id to follow (or a unique prefix of it).")],
    paths: Paths = None,
    output: Annotated[ReportOutput, typer.Option("--output", "-o", help="text or json.")] = ReportOutput.text,
    format: FormatOpt = None,
    format_file: FormatFileOpt = None,
    mesh_config: MeshConfigOpt = None,
    input: InputOpt = Input.auto,
) -> None:
    """Every line with one request id across all inputs (client and server sidecars), in order."""
    from meshlog.cli.render import render_trace
    from meshlog.parse import AccessLog
    from meshlog.pipeline import parse_paths
    from meshlog.reports.trace import id_column, resolve_id
    from meshlog.reports.trace import trace as trace_hops

    run = _start(input, format, format_file, mesh_config)
    paths = _reading(paths or [])
    run.stream.on_format = _announcer(paths)
    logs = list(parse_paths(paths, run))
    if run.format is None:
        _when_no_format(run)
        say(f"no line carries request id {request_id}")
        raise typer.Exit(ExitCode.NOT_FOUND)
    log = AccessLog.concat(logs, run.format)
    if id_column(log.requests.columns) is None:
        raise UsageError("this format logs no request id (%REQ(X-REQUEST-ID)% or %STREAM_ID%)")
    request_id = resolve_id(log.requests, request_id) or request_id  # a unique prefix names its id
    hops = trace_hops(log.requests, request_id)
    if output is ReportOutput.json:
        rows = [
            {
                k: (v.isoformat().replace("+00:00", "Z") if k == "start_time" and v is not None else v)
                for k, v in r.items()
            }
            for r in hops.to_dicts()
        ]
        json.dump({"request_id": request_id, "hops": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif hops.height:  # nothing found: the one line on stderr says so, no empty table on stdout
        render_trace(request_id, hops)
    for error in run.errors:
        say(f"error: {error}")
    if run.errors:
        raise typer.Exit(ExitCode.INPUT)
    if hops.height == 0:
        say(f"no line carries request id {request_id}")
        raise typer.Exit(ExitCode.NOT_FOUND)


@app.command()
@boundary
def formats(
    show: Annotated[
        str | None, typer.Option("--show", help="A preset name or format string: show how it compiles.")
    ] = None,
) -> None:
    """List the presets, or show how one format compiles (fields, types, regex)."""
    from meshlog.formats.presets import PRESETS, resolve  # pyparsing, no polars

    if show is None:
        for name, (_, what) in PRESETS.items():
            print(f"{name:24} {what}")
        # not a preset: told by their shape in any input, beside whichever Envoy format it has
        print(f"{'(ztunnel)':24} Istio ambient's ztunnel access records, text or JSON: read in any input, no --format")
        return
    fmt = resolve(show)
    _warn_format(fmt)
    print(f"name: {fmt.name or '(custom)'}")
    print(f"encoding: {fmt.encoding}")
    # what to compare with meshConfig.accessLogFormat (JSON: the key → operator map Envoy is given)
    print(f"format: {fmt.source.removesuffix(chr(10))}")
    print(f"  {'column':36} {'type':12} {'unset':6} from")
    for f in fmt.fields:
        print(f"  {f.column:36} {f.kind.value:12} {f.unset or '(empty)':6} {f.source}")
    if fmt.encoding == "text":
        print(f"regex: {fmt.regex}")


@app.command()
@boundary
def flags(
    codes: Annotated[list[str] | None, typer.Argument(help="Flags (UF, URX,UF, …); all when none.")] = None,
) -> None:
    """What Envoy's response flags mean (short codes or long names, any case)."""
    wanted = [c for code in (codes or list(FLAGS)) for c in code.split(",") if c]
    unknown = False
    for code in wanted:
        flag = lookup(code)
        if flag is None:
            unknown = True
            guesses = near_misses(code)
            options = ", ".join(guesses[:-1]) + " or " + guesses[-1] if len(guesses) > 1 else "".join(guesses)
            hint = f"; did you mean {options}?" if guesses else " (a custom flag?)"
            say(f"{code}: not a built-in Envoy flag{hint}")
            continue
        print(f"{flag.code:6} {flag.name:34} {flag.meaning}")
    if unknown:
        raise typer.Exit(ExitCode.NOT_FOUND)
