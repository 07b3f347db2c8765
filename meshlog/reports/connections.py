"""Istio ambient's L4 view: ztunnel's connections as a mergeable state, and the reports it gives.

A connection is a ``connection complete`` record, or a ``connection failed`` one (an early
rejection); ``connection opened`` (debug level) is only counted. As with requests
(``reports.state``), the state is count tables keyed by the mesh's shape: who talked to whom,
with which identities, how it ended; durations (whole milliseconds in ztunnel) and bytes as
counts per distinct value, so their percentiles are exact; a time grid on the timeline's ladder.

- ``counts``: per ``KEYS`` (who, to whom, how it ended) → connections ``n``, ``bytes_sent``, ``bytes_recv`` (sums);
- ``durations``: per (``PAIR``, duration) → ``n``; ``volumes``: per (which, bytes) → ``n``;
- ``grid``: per time cell → ``connections``, ``errors``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from meshlog.reports.latency import QUANTILES, quantiles
from meshlog.reports.timeline import bucket_seconds
from meshlog.ztunnel_errors import BY_KEY, KINDS, error_kind, kind_filter

PAIR = ("src_workload", "src_namespace", "dst_workload", "dst_service", "dst_namespace")
# dst_addr: all an early rejection ("connection failed") says of the destination; src_addr is left
# out (its ephemeral port makes every connection a key of its own)
KEYS = ("event", "direction", *PAIR, "src_identity", "dst_identity", "dst_addr", "error")
VALUES = ("n", "bytes_sent", "bytes_recv", "connections", "errors")
N = pl.Int64
_ENDED = pl.col("event").is_in(["complete", "failed"])


@dataclass(frozen=True)
class ConnectionState:
    counts: pl.DataFrame
    durations: pl.DataFrame
    volumes: pl.DataFrame
    grid: pl.DataFrame
    step: int
    start: dt.datetime | None
    end: dt.datetime | None

    @property
    def records(self) -> int:
        """Every record, opened ones too."""
        return int(self.counts["n"].sum()) if self.counts.height else 0

    def nbytes(self) -> int:
        return sum(int(f.estimated_size()) for f in (self.counts, self.durations, self.volumes, self.grid))


def _sum(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame()
    if len(frames) == 1:
        return frames[0]
    both = pl.concat(frames, how="diagonal_relaxed")
    values = [c for c in both.columns if c in VALUES]
    keys = [c for c in both.columns if c not in VALUES]
    return both.group_by(keys).agg(pl.col(c).sum().cast(N) for c in values)


def connection_state(connections: pl.DataFrame) -> ConnectionState:
    """The state of these connection records (``parse.ztunnel`` frames). Pure: parse workers run it."""
    if not connections.height:
        return EMPTY
    lf = connections.lazy()
    ended = lf.filter(_ENDED)
    start, end = connections.select(pl.col("timestamp").min().alias("a"), pl.col("timestamp").max().alias("b")).row(0)
    step = bucket_seconds(end - start) if start is not None else 0
    plans = {
        "counts": lf.group_by(KEYS).agg(
            pl.len().cast(N).alias("n"), pl.col("bytes_sent").sum().cast(N), pl.col("bytes_recv").sum().cast(N)
        ),
        "durations": ended.group_by(*PAIR, "duration").agg(pl.len().cast(N).alias("n")),
        "volumes": pl.concat(
            [ended.select(pl.lit(w).alias("which"), pl.col(f"bytes_{w}").alias("bytes")) for w in ("sent", "recv")]
        )
        .group_by("which", "bytes")
        .agg(pl.len().cast(N).alias("n")),
    }
    if step:
        cell = (pl.col("timestamp").dt.epoch("us") // (step * 1_000_000)).alias("cell")
        plans["grid"] = (
            ended.filter(pl.col("timestamp").is_not_null())
            .group_by(cell)
            .agg(pl.len().cast(N).alias("connections"), pl.col("error").is_not_null().sum().cast(N).alias("errors"))
        )
    tables = dict(zip(plans, pl.collect_all(plans.values()), strict=True))
    return ConnectionState(
        tables["counts"], tables["durations"], tables["volumes"].rename({"bytes": "value"}),
        tables.get("grid", pl.DataFrame()), step, start, end,
    )  # fmt: skip


_EMPTY = pl.DataFrame()
EMPTY = ConnectionState(_EMPTY, _EMPTY, _EMPTY, _EMPTY, 0, None, None)


def merge_all(states: Sequence[ConnectionState]) -> ConnectionState:
    """The state of all inputs (associative and commutative, as ``reports.state.merge_all``)."""
    states = [s for s in states if s.counts.height]
    if not states:
        return EMPTY
    if len(states) == 1:
        return states[0]
    starts = [s.start for s in states if s.start is not None]
    ends = [s.end for s in states if s.end is not None]
    start, end = (min(starts), max(ends)) if starts else (None, None)
    step = bucket_seconds(end - start) if start is not None and end is not None else 0
    grids = [s.grid.with_columns(pl.col("cell") * s.step // step) for s in states if s.grid.height and step]
    return ConnectionState(
        _sum([s.counts for s in states]), _sum([s.durations for s in states]), _sum([s.volumes for s in states]),
        _sum(grids), step, start, end,
    )  # fmt: skip


# -- reports ------------------------------------------------------------------------------------


def _percentiles(counts: pl.DataFrame, value: str, keys: Sequence[str] = ()) -> pl.DataFrame:
    known = counts.lazy().filter(pl.col(value).is_not_null()).sort(value)
    if keys:
        return known.group_by(keys).agg(quantiles(value)).collect()
    return known.select(*quantiles(value), pl.col(value).max().cast(pl.Float64).alias("max")).collect()


def _spread(counts: pl.DataFrame, value: str) -> dict[str, float | None]:
    if not counts.height or not counts.filter(pl.col(value).is_not_null()).height:
        return {**dict.fromkeys(QUANTILES), "max": None}
    row: dict[str, Any] = _percentiles(counts, value).row(0, named=True)
    return row


def _table(state: ConnectionState, keys: Sequence[str], top: int, *, bytes_: bool = True) -> pl.DataFrame:
    """Connections, errors (and bytes, duration percentiles) per combination of ``keys``."""
    ended = state.counts.filter(_ENDED)
    sums = [pl.col("n").sum().alias("connections"), pl.col("n").filter(pl.col("error").is_not_null()).sum()
            .alias("errors")]  # fmt: skip
    if bytes_:
        sums += [pl.col("bytes_sent").sum(), pl.col("bytes_recv").sum()]
    table = ended.group_by(keys).agg(sums)
    if bytes_ and set(keys) <= set(PAIR) and state.durations.height:
        table = table.join(_percentiles(state.durations, "duration", keys), on=list(keys), how="left",
                           nulls_equal=True)  # fmt: skip
    return table.sort(["errors", "connections", *keys], descending=[True, True, *([False] * len(keys))],
                      nulls_last=True).head(top)  # fmt: skip


def _tagged(state: ConnectionState) -> pl.DataFrame:
    """The failed connections' counts, each with its kind of error (decoded once per distinct text)."""
    failed = state.counts.filter(_ENDED & pl.col("error").is_not_null())
    if not failed.height:
        return failed
    texts = failed.select("error").unique().with_columns(error_kind(pl.col("error")).alias("kind"))
    return failed.join(texts, on="error")


def error_kinds(state: ConnectionState, *, top: int = 10) -> pl.DataFrame:
    """Failed connections per kind of error (``ztunnel_errors``), with the commonest text and where."""
    tagged = _tagged(state)
    if not tagged.height:
        return pl.DataFrame()
    texts = tagged.group_by("error", "kind").agg(pl.col("n").sum())
    per_kind = tagged.group_by("kind").agg(pl.col("n").sum().alias("count"))
    example = texts.sort(["n", "error"], descending=[True, False]).group_by("kind", maintain_order=True).first()
    where = (
        tagged.group_by("kind", "direction", "dst_service", "dst_workload").agg(pl.col("n").sum())
        .sort(["n", "dst_service", "dst_workload", "direction"], descending=[True, False, False, False],
              nulls_last=True)
        .group_by("kind", maintain_order=True).first()
    )  # fmt: skip
    out = per_kind.join(example.select("kind", pl.col("error").alias("example")), on="kind").join(
        where.select("kind", "direction", "dst_service", "dst_workload"), on="kind", how="left"
    )
    order = {k.key: i for i, k in enumerate(KINDS)}
    return (
        out.with_columns(
            pl.col("kind").replace_strict({k: v.title for k, v in BY_KEY.items()}).alias("title"),
            pl.col("kind").replace_strict({k: v.check for k, v in BY_KEY.items()}).alias("check"),
            pl.col("kind").replace_strict(order, default=len(order)).alias("_o"),
        )
        .sort(["count", "_o"], descending=[True, False])
        .drop("_o")
        .head(top)
    )


def timeline(state: ConnectionState) -> tuple[int, pl.DataFrame]:
    """(bucket seconds, every bucket from the first connection to the last: start, connections, errors)."""
    if not state.grid.height or not state.step:
        return 0, pl.DataFrame()
    first, last = state.grid["cell"].min(), state.grid["cell"].max()
    every = pl.DataFrame({"cell": pl.int_range(first, last + 1, dtype=pl.Int64, eager=True)})  # type: ignore[arg-type, operator]
    frame = every.join(state.grid, on="cell", how="left").sort("cell")
    return state.step, frame.select(
        (pl.col("cell") * state.step * 1_000_000).cast(pl.Datetime("us", "UTC")).alias("start_time"),
        pl.col("connections").fill_null(0),
        pl.col("errors").fill_null(0),
    )


def connections_report(state: ConnectionState, *, top: int = 10, records: int = 0) -> dict[str, Any] | None:
    """The ``connections`` key of ``summarize -o json``; None when the input has no ztunnel record.
    ``records``: the ztunnel records read (the line accounting's), before ``--where`` and the window
    chose; with some but none chosen the report is there, with zero counts."""
    if not state.counts.height:
        return _none_chosen(records) if records else None
    ended = state.counts.filter(_ENDED)
    total = int(ended["n"].sum()) if ended.height else 0
    errors = int(ended.filter(pl.col("error").is_not_null())["n"].sum()) if ended.height else 0
    by_event = dict(state.counts.group_by("event").agg(pl.col("n").sum()).iter_rows())
    volumes = state.volumes

    def bytes_of(which: str) -> dict[str, Any]:
        part = volumes.filter(pl.col("which") == which) if volumes.height else volumes
        spread = _spread(part, "value") if part.height else {**dict.fromkeys(QUANTILES), "max": None}
        column = f"bytes_{which}"
        return {"total": int(ended[column].sum()) if ended.height else 0, **spread}

    step, frame = timeline(state)
    kinds = error_kinds(state, top=len(KINDS) + 1)  # every kind once: the table, its count, the hints
    from meshlog.reports.summary import iso_z  # the one ISO writer

    return {
        "records": max(records, state.records),
        "total": total,
        "opened": int(by_event.get("opened", 0)),
        "failed_early": int(by_event.get("failed", 0)),
        "errors": errors,
        "error_ratio": errors / total if total else 0.0,
        "time_range": {"start": iso_z(state.start), "end": iso_z(state.end)},
        "duration": _spread(state.durations, "duration"),
        "bytes_sent": bytes_of("sent"),
        "bytes_recv": bytes_of("recv"),
        "distinct": {  # how many rows each table would have without --top
            "by_workload": _distinct(ended, PAIR),
            "by_service": _distinct(ended, ("dst_service",)),
            "by_identity": _distinct(ended, ("src_identity", "dst_identity")),
            "errors_by_kind": kinds.height,
        },
        "by_workload": _table(state, PAIR, top).to_dicts(),
        "by_service": _table(state, ("dst_service",), top).to_dicts(),
        "by_identity": _table(state, ("src_identity", "dst_identity"), top, bytes_=False).to_dicts(),
        "by_direction": _table(state, ("direction",), top, bytes_=False).to_dicts(),
        "errors_by_kind": kinds.head(top).to_dicts(),
        "hints": connection_hints(state, kinds=kinds),
        "timeline": {
            "bucket_seconds": step,
            "buckets": [
                {"start": iso_z(r["start_time"]), "connections": r["connections"], "errors": r["errors"]}
                for r in frame.to_dicts()
            ],
        },
    }


def _distinct(frame: pl.DataFrame, keys: Sequence[str]) -> int:
    return frame.select(*keys).unique().height if frame.height else 0


def _none_chosen(records: int) -> dict[str, Any]:
    """The report of ztunnel records that were read but none of which the filter or window chose."""
    spread = {**dict.fromkeys(QUANTILES), "max": None}
    return {
        "records": records, "total": 0, "opened": 0, "failed_early": 0, "errors": 0, "error_ratio": 0.0,
        "time_range": {"start": None, "end": None}, "duration": spread,
        "bytes_sent": {"total": 0, **spread}, "bytes_recv": {"total": 0, **spread},
        "distinct": {"by_workload": 0, "by_service": 0, "by_identity": 0, "errors_by_kind": 0},
        "by_workload": [], "by_service": [], "by_identity": [], "by_direction": [], "errors_by_kind": [],
        "hints": [], "timeline": {"bucket_seconds": 0, "buckets": []},
    }  # fmt: skip


def connection_hints(
    state: ConnectionState, *, top: int = 3, kinds: pl.DataFrame | None = None
) -> list[dict[str, Any]]:
    """One hint per kind of connection error seen: what it is, where, and what to check in ambient
    (the keys of a request hint: ``reports.contract.Hint``). ``kinds``: ``error_kinds`` of every
    kind, when the caller has it already."""
    tagged = _tagged(state)
    if not tagged.height:
        return []
    total = max(int(state.counts.filter(_ENDED)["n"].sum()), 1)
    out = []
    every = kinds if kinds is not None else error_kinds(state, top=len(KINDS) + 1)
    for row in every.to_dicts():
        kind = BY_KEY[row["kind"]]
        mine = tagged.filter(pl.col("kind") == kind.key)
        # where: the destination each connection names best (an early rejection knows only its address)
        mine = mine.with_columns(pl.coalesce("dst_service", "dst_workload", "dst_addr").alias("destination"))
        where = {
            column: [
                {"value": value, "count": int(n)}
                for value, n in mine.group_by(column).agg(pl.col("n").sum())
                .sort(["n", column], descending=[True, False], nulls_last=True).head(top).iter_rows()
            ]
            for column in ("destination", "dst_service", "dst_workload", "src_workload", "direction")
        }  # fmt: skip
        n = int(row["count"])
        out.append({
            "severity": kind.severity,
            "title": kind.title,
            "detail": f"{n:,} connection{'s' if n != 1 else ''} ended with errors such as \"{row['example']}\".",
            "count": n,
            "share": n / total,
            "rule": f"l4-{kind.key}",
            "look_at": kind.check,
            "where": where,
            "filter": kind_filter(kind.key),
        })  # fmt: skip
    return out
