"""One request across sidecars: every line that carries its request id, in time order, with hop timings.

A client sidecar logs the outbound call once; the server sidecar logs each attempt it
received (retries show as several inbound lines). Ordering by start time (then source and
line) lays the hops out as they happened; ``offset_ms`` is each hop's start after the first.
"""

from __future__ import annotations

import polars as pl

from meshlog.errors import UsageError

ID_COLUMNS = ("request_id", "stream_id")
HOP_COLUMNS = (
    "source", "line_no", "pod", "start_time", "duration", "response_code", "response_flags",
    "upstream_cluster", "upstream_host", "cluster_direction", "route_name", "method", "path",
)  # fmt: skip
SHOWN_MATCHES = 5  # ids named when a prefix is ambiguous


def id_column(columns: list[str]) -> str | None:
    """The column that holds the request id in this format, if any."""
    return next((c for c in ID_COLUMNS if c in columns), None)


def resolve_id(requests: pl.DataFrame, request_id: str) -> str | None:
    """The request id that ``request_id`` names: itself when some line carries it, else the one id it
    is a prefix of (as git takes a unique prefix of a hash). None when no id starts so; an ambiguous
    prefix raises ``UsageError`` naming a few of the ids."""
    column = id_column(requests.columns)
    if column is None or not request_id:
        return None
    ids = requests.get_column(column)
    if (ids == request_id).any():
        return request_id
    matches = ids.filter(ids.str.starts_with(request_id)).unique(maintain_order=True)
    if matches.len() > 1:
        shown = ", ".join(matches.head(SHOWN_MATCHES).to_list())
        more = f" and {matches.len() - SHOWN_MATCHES} more" if matches.len() > SHOWN_MATCHES else ""
        raise UsageError(f"{matches.len()} request ids start with {request_id!r}: {shown}{more}; give more of it")
    return matches[0] if matches.len() else None


def trace(requests: pl.DataFrame, request_id: str) -> pl.DataFrame:
    """The hops of one request, ordered, with ``offset_ms`` from the first hop's start."""
    column = id_column(requests.columns)
    if column is None:
        return pl.DataFrame({c: [] for c in HOP_COLUMNS if c in ("source", "line_no")})
    hops = requests.filter(pl.col(column) == request_id)
    # Times are to the millisecond, so a client hop and the server hop it caused often tie:
    # the outbound (calling) side goes first, then input order and line.
    caller_first = (
        pl.when(pl.col("cluster_direction") == "outbound").then(0).otherwise(1)
        if "cluster_direction" in hops.columns
        else pl.lit(0)
    )
    hops = hops.with_columns(caller_first.alias("_caller")).with_row_index("_input")
    order = [c for c in ("start_time", "_caller", "_input") if c in hops.columns]
    hops = hops.sort(order)
    keep = [c for c in HOP_COLUMNS if c in hops.columns]
    if "pod" not in hops.columns:
        hops = hops.with_columns(pl.lit(None, dtype=pl.String).alias("pod"))
        keep.insert(2, "pod")
    out = hops.select(keep)
    if "start_time" in out.columns:
        out = out.with_columns(
            ((pl.col("start_time") - pl.col("start_time").min()).dt.total_microseconds() / 1000).alias("offset_ms")
        )
    return out
