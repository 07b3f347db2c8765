"""The commands. Each one reads options, calls the library, and prints; no logic lives here."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Annotated, NoReturn

import typer

from meshlog.cli import app, boundary, say
from meshlog.cli.exit_codes import ExitCode, exit_code_for
from meshlog.cli.metrics import CaFileOpt, InsecureOpt, TimeoutOpt, TokenOpt, UserOpt, connection
from meshlog.errors import MeshlogError, UnparsedLinesError
from meshlog.export import write_rows
from meshlog.flags import FLAGS, describe
from meshlog.formats.compiler import CompiledFormat
from meshlog.formats.presets import PRESETS, resolve
from meshlog.parse import AccessLog
from meshlog.pipeline import FormatOptions, Run, compile_options, parse_paths


class RowOutput(str, Enum):
    ndjson = "ndjson"
    csv = "csv"
    json = "json"
    parquet = "parquet"


class ReportOutput(str, Enum):
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


class Input(str, Enum):
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


def _announce(fmt: CompiledFormat) -> None:
    """Say which format detection chose, and what its compilation warned about."""
    say(f"format: detected {fmt.name or 'a custom format'} (use --format to choose)")
    _warn_format(fmt)


def _warn_format(fmt: CompiledFormat) -> None:
    for warning in fmt.warnings:
        say(f"warning: {warning}")


def _finish(run: Run, log_counts: dict[str, int], first_unparsed: tuple[str, int, str] | None, strict: bool) -> None:
    """Line accounting on stderr, then the exit code the run deserves."""
    say(
        f"lines: {log_counts['total']} total, {log_counts['access']} access, "
        f"{log_counts['unparsed']} unparsed, {log_counts['other']} other"
    )
    wrapped = {w for ws in run.wrappers.values() for w in ws}
    if wrapped:
        joined = f"; {run.joined} physical line(s) joined into longer ones" if run.joined else ""
        say(f"input: unwrapped {', '.join(sorted(wrapped))}{joined}")
    for stats in run.sources:
        if stats.invalid_utf8:
            say(f"{stats.name}: {stats.invalid_utf8} line(s) with invalid UTF-8 (kept, bad bytes shown as U+FFFD)")
        if stats.too_long:
            say(
                f"{stats.name}: {len(stats.too_long)} line(s) longer than 1 MiB cut to their start "
                f"(first at line {stats.too_long[0]})"
            )
    if first_unparsed is not None:
        source, line_no, reason = first_unparsed
        say(f"first unparsed line: {source}:{line_no}: {reason}")
        if strict:
            raise UnparsedLinesError(log_counts["unparsed"], source, line_no, reason)
    for error in run.errors:
        say(f"error: {error}")
    if run.errors:
        raise typer.Exit(ExitCode.INPUT)


def _nothing_read(run: Run) -> NoReturn:
    """No line came in: say why (each unreadable input, exit 3), or that the input is empty (exit 0)."""
    for error in run.errors:
        say(f"error: {error}")
    if run.errors:
        raise typer.Exit(ExitCode.INPUT)
    say("no input lines: the input is empty")
    raise typer.Exit(ExitCode.OK)


def _start(fmt_opts: FormatOptions, input: Input = Input.auto) -> Run:
    fmt = compile_options(fmt_opts)
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
) -> None:
    """Typed rows out, one per access-log line (with source and line_no)."""
    run = _start(FormatOptions(format, format_file, mesh_config), input)
    if output is RowOutput.parquet and out is None and sys.stdout.isatty():
        say("error: parquet is binary; redirect stdout or use --out FILE")
        raise typer.Exit(ExitCode.USAGE)
    sink = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115
    counts = {"total": 0, "access": 0, "unparsed": 0, "other": 0}
    first_bad: tuple[str, int, str] | None = None
    collected: list[AccessLog] = []
    streaming = output in (RowOutput.ndjson, RowOutput.csv)
    try:
        for n, log in enumerate(parse_paths(paths or [], run, on_format=_announce)):
            c = log.counts
            for key in counts:
                counts[key] += getattr(c, key)
            if first_bad is None and log.unparsed.height:
                first_bad = tuple(log.unparsed.select("source", "line_no", "reason").row(0))  # type: ignore[assignment]
            if streaming:
                write_rows(log.requests, output.value, sink, header=(n == 0))
                sink.flush()
            else:
                collected.append(log)
        if not streaming and run.format is not None:
            write_rows(AccessLog.concat(collected, run.format).requests, output.value, sink)
    finally:
        if out:
            sink.close()
    _finish(run, counts, first_bad, strict)


class SummaryOutput(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"
    csv = "csv"


class By(str, Enum):
    cluster = "cluster"
    route = "route"
    authority = "authority"
    pod = "pod"


_WHERE_FROM = {"pod": " (pods come from kubectl logs --prefix, node log paths or collector metadata)"}
BY_COLUMN = {By.cluster: "upstream_cluster", By.route: "route_name", By.authority: "authority", By.pod: "pod"}


@app.command()
@boundary
def summarize(
    paths: Paths = None,
    output: Annotated[
        SummaryOutput, typer.Option("--output", "-o", help="text, json, markdown, or csv (one row per --by value).")
    ] = SummaryOutput.text,
    by: Annotated[By, typer.Option("--by", help="Dimension for the latency / error table.")] = By.cluster,
    where: Annotated[
        str | None, typer.Option("--where", help="Filter, e.g. 'response_code>=500', 'response_flags~UF'.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO time, or 15m/2h before the last request.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO time, or 15m/2h before the last request.")] = None,
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
) -> None:
    """Status codes, response flags, latency, retries and triage hints, in one screen."""
    from meshlog.cli.progress import progress
    from meshlog.filters import columns_named, narrow, where_filter
    from meshlog.reports.compact import REPORT_COLUMNS, Compact, SummaryInput, compact
    from meshlog.reports.summary import by_table, summary_dict

    run = _start(FormatOptions(format, format_file, mesh_config), input)
    folded = SummaryInput()  # chunks are shrunk as they come: input may be larger than memory
    metrics_failed: MeshlogError | None = None

    keep = where_filter(where) if where else None  # a bad --where stops here, before any input is read

    def shrunk(log: AccessLog) -> Compact:  # in the parse worker, beside the parsing
        return compact(log, keep)

    with progress(paths or [], run) as tick:
        # only the text columns the reports and --where read are built
        columns = REPORT_COLUMNS | columns_named(where) if where else REPORT_COLUMNS
        for piece in parse_paths(paths or [], run, on_format=_announce, columns=columns, then=shrunk):
            folded.add(piece)
            tick()
    if run.format is None:
        _nothing_read(run)
    log = narrow(folded.log(), since=since, until=until)
    dimension = BY_COLUMN[by]
    if dimension not in log.requests.columns and log.requests.height:
        say(f"error: --by {by.value}: this log has no {dimension} column" + _WHERE_FROM.get(dimension, ""))
        raise typer.Exit(ExitCode.USAGE)
    if output is SummaryOutput.csv:
        write_rows(by_table(log.requests, dimension, top=top), "csv", sys.stdout.buffer)
    else:
        summary = summary_dict(
            log, top=top, by=dimension, lines=folded.lines, other_kinds=dict(folded.other_kinds), slowest=folded.slowest
        )
        if prometheus:
            from meshlog.metrics.compare import metrics_beside_log
            from meshlog.metrics.prometheus import Prometheus

            conn = connection(prometheus, token, user, ca_file, insecure, timeout)
            try:
                summary["metrics"] = metrics_beside_log(Prometheus(conn), log.requests)
            except MeshlogError as exc:  # the log's own report still stands: print it, then say why, exit 5
                metrics_failed = exc
                summary["metrics_error"] = str(exc)
        if output is SummaryOutput.json:
            json.dump(summary, sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        elif output is SummaryOutput.markdown:
            from meshlog.cli.render import markdown_summary  # rich (~30 ms) only when rendering

            print(markdown_summary(summary))
        else:
            from meshlog.cli.render import render_summary

            render_summary(summary)
    if metrics_failed is not None:
        say(f"error: {metrics_failed} (the report above is the log's alone)")
    c = folded.lines
    counts = {"total": c.total, "access": c.access, "unparsed": c.unparsed, "other": c.other}
    _finish(run, counts, folded.unparsed_first, strict)
    if metrics_failed is not None:
        raise typer.Exit(exit_code_for(metrics_failed))


@app.command()
@boundary
def trace(
    request_id: Annotated[str, typer.Argument(help="The x-request-id to follow.")],
    paths: Paths = None,
    output: Annotated[ReportOutput, typer.Option("--output", "-o", help="text or json.")] = ReportOutput.text,
    format: FormatOpt = None,
    format_file: FormatFileOpt = None,
    mesh_config: MeshConfigOpt = None,
    input: InputOpt = Input.auto,
) -> None:
    """Every line with one request id across all inputs (client and server sidecars), in order."""
    from meshlog.cli.render import render_trace
    from meshlog.reports.trace import id_column
    from meshlog.reports.trace import trace as trace_hops

    run = _start(FormatOptions(format, format_file, mesh_config), input)
    logs = list(parse_paths(paths or [], run, on_format=_announce))
    if run.format is None:
        _nothing_read(run)
    log = AccessLog.concat(logs, run.format)
    if id_column(log.requests.columns) is None:
        say("error: this format logs no request id (%REQ(X-REQUEST-ID)% or %STREAM_ID%)")
        raise typer.Exit(ExitCode.USAGE)
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
        raise typer.Exit(1)


@app.command()
@boundary
def formats(
    show: Annotated[
        str | None, typer.Option("--show", help="A preset name or format string: show how it compiles.")
    ] = None,
) -> None:
    """List the presets, or show how one format compiles (fields, types, regex)."""
    if show is None:
        for name, (_, what) in PRESETS.items():
            print(f"{name:24} {what}")
        return
    fmt = resolve(show)
    _warn_format(fmt)
    print(f"encoding: {fmt.encoding}")
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
    """What Envoy's response flags mean."""
    wanted = [c for code in (codes or list(FLAGS)) for c in code.split(",") if c]
    for code in wanted:
        flag = describe(code)
        print(f"{flag.code:6} {flag.name:34} {flag.meaning}")
