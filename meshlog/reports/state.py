"""The summary as a mergeable state: small count tables that every report reads.

Why: the reports group requests by a few low-cardinality keys (code, flags, details, cluster, route…)
and read durations that Envoy prints in whole milliseconds. Counts keyed by those values hold all
they need, exact percentiles included, in a size that follows the mesh (its clusters, codes and
distinct durations), not the length of the log. ``merge`` is associative and commutative, so parse
workers build one state per chunk, the reader merges them in any order, and a state built elsewhere
(on Spark: ``meshlog.engines.spark``) merges with one built here and renders through the same code.

The tables, each a count ``n`` (or sums) per key:

- ``requests``: per combination of ``KEYS`` present (plus ``--by``): requests, errors, errors without
  a path, and, with an attempt count, retries, retried requests and retried requests that failed;
- ``durations``: per (upstream_cluster, ``--by``, duration ms); ``upstream_times`` per (cluster,
  upstream_service_time); ``gaps`` per duration − upstream_service_time;
- ``attempts`` per attempt count; ``error_paths`` per path of failed requests;
- ``grid``: per time cell and duration, requests and errors. Its cell is a step of the timeline's
  ladder (1 s, 5 s, 10 s … 1 d) chosen from the state's span so the timeline (≤ 40 buckets) is a
  coarsening of it; a merge moves both sides to the step of the merged span (each step divides the
  next, and cells are aligned to the epoch, so coarsening is exact);
- ``slowest``: the ``KEEP_SLOWEST`` slowest requests, whole rows;
- ``start`` / ``end``: the first and last request; ``tally``: the line accounting;
- ``l4``: ztunnel's connections, a state of their own (``reports.connections``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import polars as pl

from meshlog.parse.tally import Tally
from meshlog.reports.connections import EMPTY as EMPTY_L4
from meshlog.reports.connections import ConnectionState, connection_state
from meshlog.reports.connections import merge_all as merge_connections
from meshlog.reports.timeline import bucket_seconds
from meshlog.reports.traffic import is_error

# what the count tables are keyed by, when the log has the column (low cardinality: the mesh's shape)
KEYS = (
    "response_code", "response_flags", "response_code_details", "upstream_transport_failure_reason",
    "upstream_cluster", "route_name", "authority", "pod", "namespace",
)  # fmt: skip
ATTEMPT_COLUMNS = ("upstream_request_attempt_count", "req_x_envoy_attempt_count", "resp_x_envoy_attempt_count")
SLOWEST_COLUMNS = (
    "start_time", "duration", "response_code", "response_flags", "method", "path",
    "upstream_cluster", "request_id", "source", "line_no",
)  # fmt: skip
KEEP_SLOWEST = 20
# every request column a state reads (``parse_lines(columns=…)`` builds no other text column)
STATE_COLUMNS = frozenset({*KEYS, *ATTEMPT_COLUMNS, *SLOWEST_COLUMNS, "upstream_service_time"})
N = pl.Int64  # every count


@dataclass(frozen=True)
class SummaryState:
    """Everything the reports read, as count tables (see the module docstring). Build one with
    ``state_of``, combine with ``merge``; ``reports.summary`` renders it."""

    dims: tuple[str, ...]  # the ``--by`` dimension (none: by cluster), a key of requests and durations
    schema: dict[str, pl.DataType]  # the request columns seen, with their types
    requests: pl.DataFrame
    durations: pl.DataFrame
    upstream_times: pl.DataFrame
    gaps: pl.DataFrame
    attempts: pl.DataFrame
    error_paths: pl.DataFrame
    grid: pl.DataFrame
    step: int  # seconds per grid cell (0: no request with a time)
    start: dt.datetime | None
    end: dt.datetime | None
    slowest: pl.DataFrame
    tally: Tally = field(default_factory=Tally)
    l4: ConnectionState = EMPTY_L4  # ztunnel's connections (Istio ambient), beside the requests

    @property
    def columns(self) -> set[str]:
        return set(self.schema)

    @property
    def total(self) -> int:
        """Requests in the state."""
        return int(self.requests["n"].sum()) if self.requests.height else 0

    def with_connections(self, connections: pl.DataFrame) -> SummaryState:
        """The same state with the L4 state of these connection records (``AccessLog.connections``)."""
        return replace(self, l4=connection_state(connections)) if connections.height else self

    def with_tally(self, tally: Tally) -> SummaryState:
        """The same state with the input's line accounting (the stream parser keeps it as it reads)."""
        return replace(self, tally=tally)

    def nbytes(self) -> int:
        """Size of the tables, in bytes: what a remote engine sends back."""
        frames = (self.requests, self.durations, self.upstream_times, self.gaps, self.attempts,
                  self.error_paths, self.grid, self.slowest)  # fmt: skip
        return sum(int(f.estimated_size()) for f in frames) + self.l4.nbytes()


def attempts_column(schema: dict[str, pl.DataType]) -> str | None:
    """The attempt count the log has: an integer column (a header logged as text does not count)."""
    return next((c for c in ATTEMPT_COLUMNS if c in schema and schema[c].is_integer()), None)


def default_by(columns: Iterable[str]) -> str:
    """Without ``--by``: latency by cluster, else by the first dimension the log has."""
    have = set(columns)
    return next((c for c in ("upstream_cluster", "route_name", "authority") if c in have), "upstream_cluster")


def latency_keys(schema: Iterable[str], dims: Sequence[str]) -> list[str]:
    """What ``durations`` is keyed by: the cluster (or the dimension that stands in for it, see
    ``default_by``) and the ``--by`` dimension, those the log has."""
    columns = set(schema)
    return [c for c in dict.fromkeys((default_by(columns), *dims)) if c in columns]


def state_of(requests: pl.DataFrame, *, by: str | None = None) -> SummaryState:
    """The state of these requests (one parsed chunk, or a whole log held in memory); ``by``: the
    ``--by`` dimension, kept as a key of ``requests`` and ``durations``. Pure, so the parse workers
    run it beside the parsing."""
    dims = (by,) if by and by != "upstream_cluster" else ()
    schema = dict(requests.schema)
    cols = set(schema)
    keys = [c for c in dict.fromkeys((*KEYS, *dims)) if c in cols]
    lf = requests.lazy()
    error = is_error(cols)
    attempts = attempts_column(schema)
    values = [pl.len().cast(N).alias("n"), error.sum().cast(N).alias("errors")]
    if "path" in cols:
        values.append((error & pl.col("path").is_null()).sum().cast(N).alias("errors_no_path"))
    if attempts:
        a = pl.col(attempts)
        values += [
            (a - 1).clip(lower_bound=0).sum().cast(N).alias("retries"),
            (a > 1).sum().cast(N).alias("retried"),
            ((a > 1) & error).sum().cast(N).alias("retried_failed"),
        ]
    plans = {"requests": lf.group_by(keys).agg(values) if keys else lf.select(values)}
    has_duration = "duration" in cols
    lat_keys = latency_keys(cols, dims)
    if has_duration:
        plans["durations"] = _counts(lf, [*lat_keys, "duration"])
    if "upstream_service_time" in cols:
        ust_keys = [c for c in ("upstream_cluster",) if c in cols]  # per cluster: mergeable, and cheap
        plans["upstream_times"] = _counts(lf, [*ust_keys, "upstream_service_time"])
        if has_duration:
            gap = (pl.col("duration") - pl.col("upstream_service_time")).alias("gap")
            plans["gaps"] = _counts(lf.select(gap), ["gap"])
    if attempts:
        plans["attempts"] = _counts(lf.select(pl.col(attempts).alias("attempts")), ["attempts"])
    if "path" in cols:
        plans["error_paths"] = _counts(lf.filter(error), ["path"])
    start = end = None
    step = 0
    if "start_time" in cols:
        times = pl.col("start_time")
        start, end = requests.select(times.min().alias("a"), times.max().alias("b")).row(0)
    if start is not None:
        step = bucket_seconds(end - start)
        cell = (pl.col("start_time").dt.epoch("us") // (step * 1_000_000)).alias("cell")
        grid = lf.select(cell, error.alias("_e"), *(("duration",) if has_duration else ())).drop_nulls("cell")
        plans["grid"] = grid.group_by("cell", *(("duration",) if has_duration else ())).agg(
            pl.len().cast(N).alias("requests"), pl.col("_e").sum().cast(N).alias("errors")
        )
    names = list(plans)
    tables = dict(zip(names, pl.collect_all(plans.values()), strict=True))
    slowest = _slowest(requests.select(c for c in SLOWEST_COLUMNS if c in cols)) if has_duration else _EMPTY
    return from_tables(dims, schema, tables, step=step, start=start, end=end, slowest=slowest)


def from_tables(
    dims: tuple[str, ...],
    schema: dict[str, pl.DataType],
    tables: dict[str, pl.DataFrame],
    *,
    step: int,
    start: dt.datetime | None,
    end: dt.datetime | None,
    slowest: pl.DataFrame,
    tally: Tally | None = None,
) -> SummaryState:
    """A state from its tables by name (a table the log gave no column for is absent): how every
    engine hands its aggregations over."""
    tables = {name: owned(t) for name, t in tables.items()}
    return SummaryState(
        dims=dims,
        schema=schema,
        requests=tables["requests"],
        durations=tables.get("durations", _EMPTY),
        upstream_times=tables.get("upstream_times", _EMPTY),
        gaps=tables.get("gaps", _EMPTY),
        attempts=tables.get("attempts", _EMPTY),
        error_paths=tables.get("error_paths", _EMPTY),
        grid=tables.get("grid", _EMPTY),
        step=step,
        start=start,
        end=end,
        slowest=owned(slowest),
        tally=tally or Tally(),
    )


def owned(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its text in buffers of its own. A group-by key or a kept row is a view into the
    chunk it came from, and one view holds that chunk's whole text buffer alive (8 MiB a chunk): the
    state of a long log would grow with it. Its tables are small, so copying their text is cheap."""
    text = [c for c, t in frame.schema.items() if t == pl.String]
    if not text:
        return frame
    return frame.with_columns(pl.concat_str(pl.col(c), pl.lit("")).alias(c) for c in text)


_EMPTY = pl.DataFrame()


def _counts(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Rows per combination of ``keys`` (a missing value is a value: null keys are counted too)."""
    return lf.group_by(keys).agg(pl.len().cast(N).alias("n"))


def slowest_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Slowest first; ties in input order (source, line), so every engine picks the same requests."""
    by = [c for c in ("duration", "source", "line_no") if c in frame.columns]
    return frame.sort(by, descending=[c == "duration" for c in by], nulls_last=True)


def _slowest(rows: pl.DataFrame) -> pl.DataFrame:
    """The chunk's slowest: only rows at or above the K-th largest duration are sorted (ties kept)."""
    known = rows.filter(pl.col("duration").is_not_null())
    if known.height > KEEP_SLOWEST:
        floor = known["duration"].top_k(KEEP_SLOWEST).min()
        known = known.filter(pl.col("duration") >= floor)
    return slowest_order(known).head(KEEP_SLOWEST)


def merge(a: SummaryState, b: SummaryState) -> SummaryState:
    """The state of both inputs (associative and commutative)."""
    return merge_all([a, b])


def merge_all(states: Sequence[SummaryState]) -> SummaryState:
    """The state of all inputs, in one pass over each table (cheaper than merging pairwise)."""
    states = [s for s in states if s is not None]
    if not states:
        return empty_state()
    if len(states) == 1:
        return states[0]
    dims = states[0].dims
    schema: dict[str, pl.DataType] = {}
    for s in states:
        schema.update({c: t for c, t in s.schema.items() if c not in schema})
    starts = [s.start for s in states if s.start is not None]
    ends = [s.end for s in states if s.end is not None]
    start, end = (min(starts), max(ends)) if starts else (None, None)
    step = bucket_seconds(end - start) if start is not None and end is not None else 0
    grids = [_coarsen(s.grid, s.step, step) for s in states if s.grid.height]
    tally = Tally()
    for s in states:
        tally.merge(s.tally)

    def summed(pick: Callable[[SummaryState], pl.DataFrame]) -> pl.DataFrame:
        return _sum_tables([pick(s) for s in states])

    return SummaryState(
        dims=dims,
        schema=schema,
        requests=summed(lambda s: s.requests),
        durations=summed(lambda s: s.durations),
        upstream_times=summed(lambda s: s.upstream_times),
        gaps=summed(lambda s: s.gaps),
        attempts=summed(lambda s: s.attempts),
        error_paths=summed(lambda s: s.error_paths),
        grid=_sum_tables(grids),
        step=step,
        start=start,
        end=end,
        slowest=_merge_slowest([s.slowest for s in states]),
        tally=tally,
        l4=merge_connections([s.l4 for s in states]),
    )


# the value columns of every table: summed on merge; every other column is a key
VALUES = ("n", "errors", "errors_no_path", "retries", "retried", "retried_failed", "requests")


def _sum_tables(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.width]
    if not frames:
        return _EMPTY
    if len(frames) == 1:
        return frames[0]
    both = pl.concat(frames, how="diagonal_relaxed")
    values = [c for c in both.columns if c in VALUES]
    keys = [c for c in both.columns if c not in VALUES]
    sums = [pl.col(c).sum().cast(N) for c in values]
    if not keys:
        return both.select(sums)
    count = "requests" if "requests" in values else "n"
    # an empty chunk's keyless row (n = 0) would become a group of null keys: it is no request
    return both.filter(pl.col(count) > 0).group_by(keys).agg(sums)


def _coarsen(grid: pl.DataFrame, step: int, to: int) -> pl.DataFrame:
    """Grid cells of ``step`` seconds as cells of ``to`` seconds (``to`` is a multiple: the ladder)."""
    if step == to or not grid.height:
        return grid
    return grid.with_columns(pl.col("cell") * step // to)


def _merge_slowest(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if not frames:
        return _EMPTY
    if len(frames) == 1:
        return frames[0]
    return slowest_order(pl.concat(frames, how="diagonal_relaxed")).head(KEEP_SLOWEST)


def empty_state(by: str | None = None) -> SummaryState:
    """The state of no requests (an empty input still gets a report)."""
    return state_of(pl.DataFrame(), by=by)
