"""Summarise input larger than memory: each parsed chunk is shrunk to what the reports need.

A request keeps its numbers, its time and its low-cardinality text (cluster, route, flags,
details…) as categoricals — tens of bytes a row. High-cardinality text is kept only where a
report reads it: the path of failed requests (top error paths), and whole rows only for the
slowest requests (merged top-N). Unparsed lines keep their first few rows and a count; other
lines a count per kind. 10M Istio lines then fit in well under 1 GB.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import polars as pl

from meshlog.formats.compiler import CompiledFormat
from meshlog.parse import OTHER_SCHEMA, UNPARSED_SCHEMA, AccessLog
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
KEEP_SLOWEST = 20


@dataclass(frozen=True)
class Compact:
    """One parsed chunk shrunk to what the reports need (made where the chunk was parsed). The line
    accounting is not here: the stream parser keeps it (``stream.Tally``)."""

    requests: pl.DataFrame  # ``shrink``: small ints and categoricals
    slowest: pl.DataFrame | None  # this chunk's slowest requests, whole rows


def compact(
    log: AccessLog, keep: Callable[[pl.DataFrame], pl.DataFrame] | None = None, *, whole: Collection[str] = ()
) -> Compact:
    """Shrink one parsed chunk (``keep`` chooses requests, e.g. ``filters.where_filter``; never the
    line counts; ``whole``: columns kept for every request, e.g. ``path`` for ``--by path``). Pure, so
    parse workers can run it beside the parsing."""
    requests = log.requests if keep is None else keep(log.requests)
    slowest = None
    if "duration" in requests.columns:
        cols = [c for c in SLOWEST_COLUMNS if c in requests.columns]
        slowest = _slowest(requests.select(cols))
    return Compact(shrink(requests, whole=whole), slowest)


def _slowest(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.filter(pl.col("duration").is_not_null()).top_k(KEEP_SLOWEST, by="duration")


@dataclass
class SummaryInput:
    """What the reports need from all chunks seen so far, in bounded memory."""

    requests: list[pl.DataFrame] = field(default_factory=list)
    slowest: pl.DataFrame | None = None

    def add(self, part: Compact) -> None:
        """Fold one compacted chunk in."""
        self.requests.append(part.requests)
        if part.slowest is not None:
            both = (
                part.slowest
                if self.slowest is None
                else pl.concat([self.slowest, part.slowest], how="diagonal_relaxed")
            )
            self.slowest = _slowest(both)

    def log(self, fmt: CompiledFormat | None, unparsed: pl.DataFrame | None = None) -> AccessLog:
        """The compact log the reports run on; ``unparsed``: example rows (``Tally.examples``); other
        lines: none (their counts are in the tally)."""
        # rechunk=False: the pieces become the chunks of one frame, not a second copy of every row
        requests = pl.concat(self.requests, how="diagonal_relaxed", rechunk=False) if self.requests else pl.DataFrame()
        self.requests = [requests]  # the pieces are in the concatenation now: do not hold both
        unparsed = unparsed if unparsed is not None else pl.DataFrame(schema=UNPARSED_SCHEMA)
        return AccessLog(requests, unparsed, pl.DataFrame(schema=OTHER_SCHEMA), fmt)


def shrink(requests: pl.DataFrame, *, whole: Collection[str] = ()) -> pl.DataFrame:
    """The columns reports read, text as categoricals, the path only where the request failed (unless
    ``whole`` asks for it on every request)."""
    cols = set(requests.columns)
    keep: list[pl.Expr] = [_narrow(requests, c, t) for c, t in NUMERIC.items() if c in cols]
    categorical = dict.fromkeys((*CATEGORICAL, *whole))  # in order, once each
    keep += [pl.col(c).cast(pl.Categorical) for c in categorical if c in cols and c not in NUMERIC]
    if "path" in cols and "path" not in whole:
        failed = is_error(cols)
        keep.append(pl.when(failed).then(pl.col("path")).cast(pl.Categorical).alias("path"))
    return requests.select(keep)


def _narrow(requests: pl.DataFrame, column: str, dtype: type[pl.DataType] | None) -> pl.Expr:
    """The column in ``dtype`` when every value of this chunk fits it, else as it is: a 3,000,000,000 ms
    TCP stream is a valid duration (chunks of both widths concatenate to the wider one)."""
    values = requests[column]
    if dtype is None or not values.dtype.is_integer():  # a text column of that name (a JSON key) stays text
        return pl.col(column)
    lo, hi = _BOUNDS[dtype]
    if values.null_count() < values.len():
        vmin, vmax = values.min(), values.max()
        if vmin < lo or vmax > hi:  # type: ignore[operator]
            return pl.col(column)
    return pl.col(column).cast(dtype)


_BOUNDS: dict[type[pl.DataType], tuple[int, int]] = {
    pl.Int16: (-(1 << 15), (1 << 15) - 1),
    pl.Int32: (-(1 << 31), (1 << 31) - 1),
}
