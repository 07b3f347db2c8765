"""What failed and how: response flags (each counted separately) and the details behind 5xx / 0."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl

from meshlog.flags import describe
from meshlog.reports.contract import FlagReport

if TYPE_CHECKING:
    from meshlog.reports.state import SummaryState

# upstream_reset_before_response_started{reason|transport failure} → kind, reason
_DETAILS = r"^(?P<kind>[^{\[]+)(?:\{(?P<reset_reason>[^|,}]*)(?:[|,](?P<transport>.*))?\}|\[(?P<policy>.*)\])?$"


def flag_counts(requests: pl.DataFrame, dims: Sequence[str]) -> pl.DataFrame:
    """Requests per (flag, dims…): a line with ``URX,UF`` counts once under each flag."""
    return (
        requests.lazy()
        .filter(pl.col("response_flags").is_not_null())
        .select(pl.col("response_flags").cast(pl.String).str.split(",").alias("flag"), "n", *dims)
        .explode("flag")
        .filter(pl.col("flag").is_not_null() & (pl.col("flag") != ""))
        .group_by("flag", *dims)
        .agg(pl.col("n").sum())
        .collect()
    )


def flags_report(state: SummaryState, *, top: int = 3) -> list[FlagReport]:
    """Each flag with its name, meaning, count, share and where it happens (clusters, routes, pods)."""
    if "response_flags" not in state.columns:
        return []
    total = max(state.total, 1)
    dims = [c for c in ("upstream_cluster", "route_name", "pod") if c in state.columns]
    rows = flag_counts(state.requests, dims)
    counts = rows.group_by("flag").agg(pl.col("n").sum()).sort(["n", "flag"], descending=[True, False])
    out: list[FlagReport] = []
    for flag, n in counts.iter_rows():
        info = describe(flag)
        entry: FlagReport = {
            "flag": flag,
            "name": info.name,
            "meaning": info.meaning,
            "count": int(n),
            "share": n / total,
        }
        of_flag = rows.filter(pl.col("flag") == flag)
        for dim in dims:
            tops = (
                of_flag.group_by(dim).agg(pl.col("n").sum()).drop_nulls(dim)
                .sort(["n", dim], descending=[True, False]).head(top)
            )  # fmt: skip
            entry[f"top_{dim}"] = [{"value": v, "count": int(c)} for v, c in tops.iter_rows()]  # type: ignore[literal-required]
        out.append(entry)
    return out


def _errors_by(state: SummaryState, column: str) -> pl.DataFrame:
    return (
        state.requests.filter(pl.col("errors") > 0)
        .group_by(column)
        .agg(pl.col("errors").sum().alias("count"))
        .drop_nulls(column)
    )


def error_details(state: SummaryState, *, top: int = 10) -> pl.DataFrame:
    """``response_code_details`` of 5xx/0 answers, decoded into kind, reset reason and transport failure."""
    return (
        _errors_by(state, "response_code_details")
        .with_columns(pl.col("response_code_details").cast(pl.String).str.extract_groups(_DETAILS).alias("_d"))
        .with_columns(
            pl.col("_d").struct.field("kind"),
            pl.coalesce(pl.col("_d").struct.field("reset_reason"), pl.col("_d").struct.field("policy")).alias(
                "reset_reason"
            ),
            pl.col("_d").struct.field("transport").alias("transport_failure"),
        )
        .drop("_d")
        .sort(["count", "response_code_details"], descending=[True, False])
        .head(top)
    )


def transport_failures(state: SummaryState, *, top: int = 10) -> pl.DataFrame:
    """``upstream_transport_failure_reason`` of 5xx/0 answers (connect refused, TLS errors…)."""
    return (
        _errors_by(state, "upstream_transport_failure_reason")
        .sort(["count", "upstream_transport_failure_reason"], descending=[True, False])
        .head(top)
    )
