"""``meshlog tui``: open the triage app on files, or follow stdin (``kubectl logs -f … | meshlog tui``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from meshlog.cli import app, boundary, say
from meshlog.cli.commands import FormatFileOpt, FormatOpt, Input, InputOpt, MeshConfigOpt, Paths
from meshlog.cli.exit_codes import ExitCode
from meshlog.cli.metrics import CaFileOpt, InsecureOpt, TimeoutOpt, TokenOpt, UserOpt, connection
from meshlog.errors import UsageError


def _piped_stdin() -> BinaryIO | None:
    """Piped data moves to another descriptor and fd 0 becomes the terminal, where keys come from
    (what ``less`` does). ``None`` when stdin already is the terminal."""
    if sys.stdin.isatty():
        return None
    data = os.fdopen(os.dup(0), "rb", buffering=0)
    try:
        tty = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        raise UsageError(
            "the TUI needs a terminal for its keys (no /dev/tty); use `meshlog summarize` in pipelines"
        ) from None
    os.dup2(tty, 0)
    os.close(tty)
    return data


@app.command()
@boundary
def tui(
    paths: Paths = None,
    format: FormatOpt = None,
    format_file: FormatFileOpt = None,
    mesh_config: MeshConfigOpt = None,
    input: InputOpt = Input.auto,
    prometheus: Annotated[str | None, typer.Option("--prometheus", help="Prometheus URL for the metrics tab.")] = None,
    token: TokenOpt = None,
    user: UserOpt = None,
    ca_file: CaFileOpt = None,
    insecure: InsecureOpt = False,
    timeout: TimeoutOpt = 5.0,
    export_dir: Annotated[Path | None, typer.Option("--export-dir", help="Where exports go (default: here).")] = None,
    forward: Annotated[
        str | None, typer.Option("--forward", help="HOST:PORT: follow fluentd / fluent-bit forward traffic instead.")
    ] = None,
    shared_key: Annotated[
        str | None, typer.Option("--shared-key", envvar="MESHLOG_SHARED_KEY", help="Forward shared-key handshake.")
    ] = None,
) -> None:
    """Interactive triage: dashboard, filterable request table, drill-down, live follow, metrics."""
    from meshlog.cli.listen import parse_address
    from meshlog.tui import create_app

    if not sys.stdout.isatty():
        raise UsageError(
            "the TUI draws on a terminal and stdout is not one; use `meshlog summarize` or `meshlog parse`"
        )
    from meshlog.sources import expand, unreadable_reason

    unreadable = [problem for path in expand(paths or []) if (problem := unreadable_reason(path))]
    for problem in unreadable:  # before the screen opens: an empty dashboard would hide it
        say(f"error: {problem}")
    if unreadable:
        raise typer.Exit(ExitCode.INPUT)
    conn = connection(prometheus, token, user, ca_file, insecure, timeout) if prometheus else None
    address = parse_address(forward) if forward else None
    reads_stdin = (not paths and address is None) or "-" in (paths or [])
    stdin = _piped_stdin() if reads_stdin else None
    if reads_stdin and stdin is None:
        raise UsageError("nothing to read: give log files, or pipe logs in (kubectl logs -f … | meshlog tui)")
    create_app(
        paths or ([] if address else ["-"]), forward=address, shared_key=shared_key,
        format=format, format_file=format_file, mesh_config=mesh_config, input=input.value,
        stdin=stdin, prometheus=conn, export_dir=export_dir,
    ).run()  # fmt: skip
