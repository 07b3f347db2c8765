"""Summarise input larger than memory: each parsed chunk is shrunk to what the reports need.

A request keeps its numbers, its time and its low-cardinality text (cluster, route, flags,
details…) as categoricals — tens of bytes a row. High-cardinality text is kept only where a
report reads it: the path of failed requests (top error paths), and whole rows only for the
slowest requests (merged top-N). Unparsed lines keep their first few rows and a count; other
lines a count per kind. 10M Istio lines then fit in well under 1 GB.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from meshlog.formats.compiler import CompiledFormat
from meshlog.parse import OTHER_SCHEMA, AccessLog, LineCounts
from meshlog.reports.retries import ATTEMPT_COLUMNS
from meshlog.reports.traffic import is_error

CATEGORICAL = (
    "upstream_cluster", "route_name", "response_flags", "response_code_details",
    "upstream_transport_failure_reason", "authority", "pod", "namespace",
)  # fmt: skip
# smallest types that hold what Envoy prints (ms up to 24 days; status codes; attempt counts)
NUMERIC = {
    "start_time": None,
    "response_code": pl.Int16,
    "duration": pl.Int32,
    "upstream_service_time": pl.Int32,
    **dict.fromkeys(ATTEMPT_COLUMNS, pl.Int16),
}
SLOWEST_COLUMNS = (
    "start_time", "duration", "response_code", "response_flags", "method", "path",
    "upstream_cluster", "request_id", "source", "line_no",
)  # fmt: skip
# every column a report reads (``parse_lines(columns=…)`` builds no other text column)
REPORT_COLUMNS = frozenset({*NUMERIC, *CATEGORICAL, *SLOWEST_COLUMNS})
KEEP_UNPARSED = 20
KEEP_SLOWEST = 20


@dataclass(frozen=True)
class Compact:
    """One parsed chunk shrunk to what the reports need (made where the chunk was parsed)."""

    format: CompiledFormat
    access: int
    requests: pl.DataFrame  # ``shrink``: small ints and categoricals
    slowest: pl.DataFrame | None  # this chunk's slowest requests, whole rows
    unparsed: pl.DataFrame  # the chunk's first unparsed lines
    unparsed_count: int
    other_kinds: dict[str, int]


def compact(log: AccessLog, keep: Callable[[pl.DataFrame], pl.DataFrame] | None = None) -> Compact:
    """Shrink one parsed chunk (``keep`` chooses requests, e.g. ``filters.where_filter``; never the
    line counts). Pure, so parse workers can run it beside the parsing."""
    requests = log.requests if keep is None else keep(log.requests)
    slowest = None
    if "duration" in requests.columns:
        cols = [c for c in SLOWEST_COLUMNS if c in requests.columns]
        slowest = _slowest(requests.select(cols))
    return Compact(
        log.format,
        log.requests.height,
        shrink(requests),
        slowest,
        log.unparsed.head(KEEP_UNPARSED),
        log.unparsed.height,
        dict(log.other.group_by("kind").len().iter_rows()),
    )


def _slowest(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.filter(pl.col("duration").is_not_null()).top_k(KEEP_SLOWEST, by="duration")


@dataclass
class SummaryInput:
    """What the reports need from all chunks seen so far, in bounded memory."""

    format: CompiledFormat | None = None
    requests: list[pl.DataFrame] = field(default_factory=list)
    slowest: pl.DataFrame | None = None
    unparsed: list[pl.DataFrame] = field(default_factory=list)
    unparsed_count: int = 0
    unparsed_first: tuple[str, int, str] | None = None
    other_kinds: Counter[str] = field(default_factory=Counter)
    access: int = 0

    def add(self, part: Compact) -> None:
        """Fold one compacted chunk in."""
        self.format = part.format
        self.access += part.access
        self.unparsed_count += part.unparsed_count
        if part.unparsed.height and self.unparsed_first is None:
            self.unparsed_first = part.unparsed.select("source", "line_no", "reason").row(0)  # type: ignore[assignment]
        kept = sum(f.height for f in self.unparsed)
        if kept < KEEP_UNPARSED and part.unparsed.height:
            self.unparsed.append(part.unparsed.head(KEEP_UNPARSED - kept))
        self.other_kinds.update(part.other_kinds)
        self.requests.append(part.requests)
        if part.slowest is not None:
            both = (
                part.slowest
                if self.slowest is None
                else pl.concat([self.slowest, part.slowest], how="diagonal_relaxed")
            )
            self.slowest = _slowest(both)

    @property
    def lines(self) -> LineCounts:
        other = sum(self.other_kinds.values())
        return LineCounts(self.access + self.unparsed_count + other, self.access, self.unparsed_count, other)

    def log(self) -> AccessLog:
        """The compact log the reports run on (unparsed: the first rows; other: none, see ``other_kinds``)."""
        assert self.format is not None
        # rechunk=False: the pieces become the chunks of one frame, not a second copy of every row
        requests = pl.concat(self.requests, how="diagonal_relaxed", rechunk=False) if self.requests else pl.DataFrame()
        self.requests = [requests]  # the pieces are in the concatenation now: do not hold both
        unparsed = pl.concat(self.unparsed, how="diagonal_relaxed") if self.unparsed else _empty_unparsed()
        return AccessLog(requests, unparsed, pl.DataFrame(schema=OTHER_SCHEMA), self.format)


def shrink(requests: pl.DataFrame) -> pl.DataFrame:
    """The columns reports read, text as categoricals, the path only where the request failed."""
    cols = set(requests.columns)
    keep: list[pl.Expr] = [pl.col(c) if t is None else pl.col(c).cast(t) for c, t in NUMERIC.items() if c in cols]
    keep += [pl.col(c).cast(pl.Categorical) for c in CATEGORICAL if c in cols]
    if "path" in cols:
        failed = is_error(cols)
        keep.append(pl.when(failed).then(pl.col("path")).cast(pl.Categorical).alias("path"))
    return requests.select(keep)


def _empty_unparsed() -> pl.DataFrame:
    from meshlog.parse import UNPARSED_SCHEMA

    return pl.DataFrame(schema=UNPARSED_SCHEMA)
