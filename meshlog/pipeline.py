"""From paths and format options to parsed chunks: the one road every command takes.

Sources are read in batches (``sources.LineReader``), unwrapped (``envelopes``) and handed to
the run's ``StreamParser``, which knows each source's format and counts every line. Nothing here prints: choices and
problems are handed back to the caller.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, overload

import polars as pl

from meshlog import envelopes
from meshlog.errors import ConfigError, InputError
from meshlog.formats.compiler import CompiledFormat
from meshlog.formats.presets import resolve
from meshlog.parse import AccessLog, lines_frame, parse_lines
from meshlog.sources import LineReader, SourceStats, expand
from meshlog.stream import Job, StreamParser, Tally

T = TypeVar("T")
PARSE_AHEAD = 3  # chunks of 8 MiB parsed at once per file (3: the speed of 4, less memory)


@dataclass(frozen=True)
class FormatOptions:
    """What the user said about the format; all empty means 'detect it'."""

    format: str | None = None
    format_file: str | None = None
    mesh_config: str | None = None


def compile_options(options: FormatOptions) -> CompiledFormat | None:
    """The format the options name, or None when it is to be detected from the input."""
    given = [o for o in (options.format, options.format_file, options.mesh_config) if o]
    if len(given) > 1:
        raise ConfigError("give only one of --format, --format-file, --mesh-config")
    if options.format:
        return resolve(options.format)
    if options.format_file:
        try:
            text = Path(options.format_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{options.format_file}: cannot read: {exc.strerror}") from None
        return resolve(text)
    if options.mesh_config:
        from meshlog.formats.meshconfig import load_mesh_config  # PyYAML only when asked for

        return load_mesh_config(options.mesh_config)
    return None


def row_columns(formats: Iterable[CompiledFormat | None]) -> list[str]:
    """The columns rows are written with for these formats: ``source, line_no``, every column a
    wrapper can give (null where none did), then each format's fields and derived columns."""
    columns = ["source", "line_no", *envelopes.META]
    empty = lines_frame([])
    for fmt in formats:
        if fmt is not None:
            columns += [c for c in parse_lines(empty, fmt).requests.columns if c not in columns]
    return columns


def row_schema(formats: Iterable[CompiledFormat]) -> dict[str, pl.DataType]:
    """``row_columns`` with their types: what ``--where`` is checked against before any input is read."""
    schema: dict[str, pl.DataType] = {"source": pl.String(), "line_no": pl.Int64(), **envelopes.META}
    empty = lines_frame([])
    for fmt in formats:
        for name, dtype in parse_lines(empty, fmt).requests.schema.items():
            schema.setdefault(name, dtype)
    return schema


def connection_schema() -> dict[str, pl.DataType]:
    """The columns of ztunnel's connections as rows, with their types: ``source, line_no``, every
    column a wrapper can give, then ``parse.ztunnel.CONNECTION_SCHEMA`` (what ``--where`` is checked
    against, and ``parse --records connections`` writes)."""
    from meshlog.parse.ztunnel import CONNECTION_SCHEMA

    return {"source": pl.String(), "line_no": pl.Int64(), **envelopes.META, **CONNECTION_SCHEMA}


def peek_formats(run: Run, paths: list[str], *, max_bytes: int = 1 << 20) -> None:
    """Detect each file's format from its head now (before any row is written, so that a table's
    columns can be fixed); stdin and heads of start-up lines only are decided while streaming."""
    if run.stream.given is not None:
        return
    for path in expand(paths):
        if path == "-" or not os.path.isfile(path):
            continue
        unwrapper, probe = envelopes.Unwrapper(run.input), StreamParser()
        try:
            for chunk in LineReader(path, chunk_bytes=max_bytes):
                probe.ready(unwrapper.feed(chunk), paused=True)
                break
        except (InputError, OSError):
            continue  # reported when it is read for real
        if path in probe.formats:
            run.stream.formats[path] = probe.formats[path]
            if run.stream.on_format is not None:
                run.stream.on_format(path, probe.formats[path])


class Run:
    """State of one run over all inputs: the stream parser (formats, line accounting) and what each
    source reported."""

    def __init__(self, format: CompiledFormat | None = None, *, input: str = "auto", stdin: BinaryIO | None = None):
        self.stream = StreamParser(format)
        self.input = input  # --input: auto, plain, kubectl, cri, docker, fluentd, fluentbit
        self.stdin = stdin  # what "-" reads (default: sys.stdin)
        self.sources: list[SourceStats] = []
        self.wrappers: dict[str, list[str]] = {}  # source → what carried its lines
        self.joined = 0  # physical lines joined into others (CRI P chunks, docker partials, …)
        self.inputs: list[str] = []  # the expanded paths

    @property
    def format(self) -> CompiledFormat | None:
        """The format in use: the one given, else the first one detected (``stream.formats``: each)."""
        return self.stream.format

    @property
    def tally(self) -> Tally:
        return self.stream.tally

    @property
    def errors(self) -> list[str]:
        return [e for s in self.sources for e in s.errors]


OnFormat = Callable[[str, CompiledFormat], None]


@overload
def parse_paths(
    paths: list[str],
    run: Run,
    *,
    on_format: OnFormat | None = ...,
    columns: Collection[str] | None = ...,
) -> Iterator[AccessLog]: ...


@overload
def parse_paths(
    paths: list[str],
    run: Run,
    *,
    on_format: OnFormat | None = ...,
    columns: Collection[str] | None = ...,
    then: Callable[[AccessLog], T],
) -> Iterator[T]: ...


def parse_paths(
    paths: list[str],
    run: Run,
    *,
    on_format: OnFormat | None = None,
    columns: Collection[str] | None = None,
    then: Callable[[AccessLog], Any] | None = None,
) -> Iterator[Any]:
    """Parse every input as it is read; each source's format is detected from its first lines.

    ``then`` runs on each parsed chunk in the same worker thread (``summarize`` shrinks chunks
    there), so the thread that reads and unwraps does nothing else. Every line is counted in
    ``run.tally``. A source that cannot be opened or read is recorded in ``run.sources`` and the
    others go on.
    """
    stream = run.stream
    stream.on_format = on_format or stream.on_format

    def step(job: Job) -> tuple[Tally, Any]:
        parsed = stream.parse(job, columns=columns)
        if parsed.log is None:
            return parsed.tally, None
        return parsed.tally, parsed.log if then is None else then(parsed.log)

    run.inputs = expand(paths)
    with ThreadPoolExecutor(PARSE_AHEAD, thread_name_prefix="meshlog-parse") as pool:
        for path in run.inputs:
            stats = SourceStats("<stdin>" if path == "-" else path)
            run.sources.append(stats)
            reader = LineReader(path, stats, stdin=run.stdin)
            try:
                # The lambda is only called while this loop runs, so it always sees this iteration's reader.
                for tally, result in _parse_ahead(_jobs(reader, run), step, pool, lambda: reader.paused):  # noqa: B023
                    stream.count(tally)
                    if result is not None:
                        yield result
            except InputError as exc:  # this source only: the others are still read
                stats.errors.append(str(exc))


def _jobs(reader: LineReader, run: Run) -> Iterator[Job]:
    """One source's lines, unwrapped, as parse jobs; the first held until its format is known."""
    unwrapper = envelopes.Unwrapper(run.input)
    stream, source = run.stream, reader.name
    for chunk in reader:
        lines = unwrapper.feed(chunk)
        run.wrappers[source] = unwrapper.detected
        yield from stream.ready(lines, paused=reader.paused)
    rest = unwrapper.flush()
    run.joined += unwrapper.joined
    yield from stream.ready(rest, paused=True)
    yield from stream.finish(source)


def _parse_ahead(
    jobs: Iterator[Job], step: Callable[[Job], T], pool: ThreadPoolExecutor, live: Callable[[], bool]
) -> Iterator[T]:
    """Parse up to ``PARSE_AHEAD`` jobs at once, in order: many polars string kernels run on one
    thread per column, so overlapping chunks keeps both cores busy (measured 3.0 s → 2.0 s per 1M
    lines). When the source is live (``live()``: its last batch closed before it filled), what is
    in hand is finished before waiting on the source again, so rows show as they come."""
    window: deque[Future[T]] = deque()
    for job in jobs:
        window.append(pool.submit(step, job))
        if len(window) >= PARSE_AHEAD or live():
            while window and (len(window) >= PARSE_AHEAD or live()):
                yield window.popleft().result()
    while window:
        yield window.popleft().result()
