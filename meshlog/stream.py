"""One stream parser for every source: the format per source, parsing, and the line accounting.

Files, stdin, the forward receiver and the TUI feeds all hand lines frames (already unwrapped)
to a ``StreamParser``. It detects each source's format on its own (``istio.log istio-json.log``
both count), holds a source's first lines back only until its format is known, and keeps the
one ``Tally`` of what every line became. Parsing itself (``parse``) is pure and thread-safe, so
callers may run it in workers; ``count`` then adds each result in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import polars as pl

from meshlog.errors import DetectionError
from meshlog.formats.compiler import CompiledFormat
from meshlog.parse import OTHER_SCHEMA, AccessLog, parse_lines, ztunnel
from meshlog.parse.classify import other_kind
from meshlog.parse.detect import SAMPLE_LINES, detect
from meshlog.parse.tally import Tally

ENOUGH = 20  # lines that look like records: enough to tell formats apart
HOLD_LINES = 100_000  # a source showing only non-access lines is let out (counted) past this many
SCAN_ROWS = 5_000  # rows of held lines looked at to find record-like ones


@dataclass(frozen=True)
class Job:
    """Lines ready to parse, with their format; ``format`` None: no preset fits their source
    (``reason`` says so), and they are only accounted for."""

    lines: pl.DataFrame
    format: CompiledFormat | None
    reason: str = ""


@dataclass(frozen=True)
class Parsed:
    """One job's outcome: the log (None for lines of an undetected source) and its tally."""

    log: AccessLog | None
    tally: Tally


@dataclass
class _Held:
    frames: list[pl.DataFrame] = field(default_factory=list)
    rows: int = 0


class StreamParser:
    """Lines frames of any sources in, ``Job`` s out; the format per source; the line accounting.

    ``fmt`` given: every source uses it and nothing is held. Otherwise a source's lines are held
    until ``ENOUGH`` of them look like records, or the source pauses (a live stream), or it ends;
    the preset that fits them is then its format (``on_format`` hears of it). A source no preset
    fits is named in ``problems``; its lines are still counted (unparsed, or other by kind).
    """

    def __init__(
        self,
        fmt: CompiledFormat | None = None,
        *,
        on_format: Callable[[str, CompiledFormat], None] | None = None,
    ) -> None:
        self.given = fmt
        self.on_format = on_format
        self.formats: dict[str, CompiledFormat] = {}  # source → its format
        self.problems: dict[str, str] = {}  # source → why no format fits it
        self.tally = Tally()
        self._held: dict[str, _Held] = {}
        self._reasons: dict[str, str] = {}  # source → the reason its lines are unparsed
        self._lock = threading.Lock()
        self._told = 0
        self._l4: set[str] = set()  # sources that hold ztunnel records

    @property
    def format(self) -> CompiledFormat | None:
        """The format in use: the one given, else the first one detected."""
        return self.given or next(iter(self.formats.values()), None)

    @property
    def waiting(self) -> dict[str, int]:
        """Sources whose format is not known yet → the lines held for them."""
        return {s: h.rows for s, h in self._held.items()}

    # -- lines in, jobs out ---------------------------------------------------------------------

    def ready(self, lines: pl.DataFrame, *, paused: bool = False) -> list[Job]:
        """What of ``lines`` can be parsed now (held lines of a source whose format became known too).

        ``paused``: the source has nothing more for now, so guess from what came if a preset fits.
        """
        if not lines.height:
            return []
        if self.given is not None:
            return [Job(lines, self.given)]
        with self._lock:
            sources = lines["source"].unique(maintain_order=True).to_list()
            if len(sources) == 1:
                return self._source_ready(sources[0], lines, paused=paused, final=False)
            jobs: list[Job] = []
            for (source,), part in lines.partition_by("source", as_dict=True, maintain_order=True).items():
                jobs += self._source_ready(str(source), part, paused=paused, final=False)
            return _by_format(jobs)

    def finish(self, source: str | None = None) -> list[Job]:
        """A source (or every source) ended: decide on what is held (``problems`` names failures)."""
        with self._lock:
            names = list(self._held) if source is None else [source] if source in self._held else []
            empty = pl.DataFrame(schema={"source": pl.String, "line_no": pl.Int64, "line": pl.String})
            jobs: list[Job] = []
            for name in names:
                jobs += self._source_ready(name, empty, paused=True, final=True)
            return jobs

    def _source_ready(self, source: str, lines: pl.DataFrame, *, paused: bool, final: bool) -> list[Job]:
        fmt = self.formats.get(source)
        if fmt is not None:
            return [Job(lines, fmt)] if lines.height else []
        if source in self.problems:
            return [Job(lines, None, self._reasons[source])] if lines.height else []
        held = self._held.setdefault(source, _Held())
        if lines.height:
            held.frames.append(lines)
            held.rows += lines.height
        sample = pl.concat(held.frames, how="diagonal_relaxed") if len(held.frames) > 1 else held.frames[0]
        held.frames = [sample]
        free = self._l4_free(source, held)
        sample = held.frames[0]
        candidates = _record_like(sample)
        if len(candidates) >= ENOUGH or paused or final:
            try:
                fmt = detect(candidates) if candidates else None
            except DetectionError as exc:
                if source in self._l4:  # a ztunnel log's continuation lines: other lines, not a problem
                    fmt = None
                    final = True
                elif final or len(candidates) >= SAMPLE_LINES:
                    return [*free, *self._give_up(source, str(exc))]
                else:
                    fmt = None
            if fmt is not None:
                del self._held[source]
                self.formats[source] = fmt
                if self.on_format is not None:
                    self.on_format(source, fmt)
                return [*free, Job(sample, fmt)]
        if final or (not candidates and held.rows >= HOLD_LINES):
            # only start-up / collector lines so far: they are counted as other, nothing is wrong yet
            del self._held[source]
            return [*free, Job(sample, None, "")] if sample.height else free
        return free

    def _l4_free(self, source: str, held: _Held) -> list[Job]:
        """ztunnel's records need no Envoy format: when the held lines have some (or ztunnel's own log
        lines: a quiet node), they and the known kinds of other line go on now, and only the lines that
        may be Envoy's wait for a format; lines no preset fits there (its config dump) are other."""
        sample = held.frames[0]
        ztunnel_lines = ztunnel.is_record() | (other_kind() == "ztunnel-log")  # its records, or its own log
        if source not in self._l4 and not sample.select(ztunnel_lines.any()).item():
            return []
        self._l4.add(source)
        known = ztunnel.is_record() | other_kind().is_not_null()
        free = sample.filter(known)
        held.frames = [sample.filter(~known)]
        held.rows = held.frames[0].height
        return [Job(free, None, "")] if free.height else []

    def _give_up(self, source: str, reason: str) -> list[Job]:
        """No preset fits ``source``: named in ``problems``; its lines are unparsed with the reason."""
        held = self._held.pop(source)
        self.problems[source] = f"{source}: {reason}"
        self._reasons[source] = f"no format for this input: {reason}"
        return [Job(pl.concat(held.frames, how="diagonal_relaxed"), None, self._reasons[source])]

    # -- parse and count ------------------------------------------------------------------------

    @staticmethod
    def parse(job: Job, *, columns: Collection[str] | None = None) -> Parsed:
        """Parse one job (pure: safe in worker threads); ``columns`` as in ``parse_lines``."""
        log = parse_lines(job.lines, job.format, columns=columns, reason=job.reason)
        if job.format is None and not log.connections.height:
            return Parsed(None, Tally.of(log))
        return Parsed(log, Tally.of(log))

    def count(self, parsed: Parsed | Tally) -> None:
        """Add a parsed job's lines to the accounting (call in input order)."""
        with self._lock:
            self.tally.merge(parsed.tally if isinstance(parsed, Parsed) else parsed)

    def new_problems(self) -> list[str]:
        """Problems not handed out before (a receiver says each once, as it happens)."""
        with self._lock:
            fresh = list(self.problems.values())[self._told :]
            self._told = len(self.problems)
            return fresh

    def no_access_yet(self) -> str | None:
        """A one-line note when lines came but none was an access record so far, else None."""
        c = self.tally.counts
        waiting = sum(self.waiting.values())
        if c.access or c.unparsed or self.problems:
            return None
        if not c.total and not waiting:
            return None
        return f"no access lines yet ({c.other + waiting} other line{'s' if c.other + waiting != 1 else ''})"


def _by_format(jobs: list[Job]) -> list[Job]:
    """Jobs of several sources that share a format become one (fewer, larger parses)."""
    if len(jobs) < 2:
        return jobs
    groups: dict[tuple[int, str], list[Job]] = {}
    for job in jobs:  # one format object (or one reason no format fits) is one parse
        groups.setdefault((id(job.format), job.reason), []).append(job)
    return [
        g[0] if len(g) == 1 else Job(pl.concat([j.lines for j in g], how="diagonal_relaxed"), g[0].format, g[0].reason)
        for g in groups.values()
    ]


def _record_like(sample: pl.DataFrame) -> list[str]:
    """The held lines that may be access records: neither blank nor a known kind of other line."""
    head = sample.head(SCAN_ROWS).select("line")
    kinds = head.select(other_kind().alias("kind"), ztunnel.is_record().alias("l4"), pl.col("line"))
    return kinds.filter(pl.col("kind").is_null() & ~pl.col("l4"))["line"].head(SAMPLE_LINES).to_list()


__all__ = ["OTHER_SCHEMA", "Job", "Parsed", "StreamParser", "Tally"]
