"""What failed and how: response flags (each counted separately) and the details behind 5xx / 0."""

from __future__ import annotations

import polars as pl

from meshlog.flags import describe
from meshlog.reports.contract import FlagReport
from meshlog.reports.traffic import columns_of, is_error

# upstream_reset_before_response_started{reason|transport failure} → kind, reason
_DETAILS = r"^(?P<kind>[^{\[]+)(?:\{(?P<reset_reason>[^|,}]*)(?:[|,](?P<transport>.*))?\}|\[(?P<policy>.*)\])?$"


def flag_rows(requests: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (line, flag): ``URX,UF`` becomes two rows."""
    return (
        requests.filter(pl.col("response_flags").is_not_null())
        .with_columns(pl.col("response_flags").cast(pl.String).str.split(",").alias("flag"))
        .explode("flag")
        .filter(pl.col("flag").is_not_null() & (pl.col("flag") != ""))
    )


def flags_report(requests: pl.DataFrame, *, top: int = 3) -> list[FlagReport]:
    """Each flag with its name, meaning, count, share and where it happens (clusters, routes, pods)."""
    if "response_flags" not in requests.columns:
        return []
    total = max(requests.height, 1)
    dims = [c for c in ("upstream_cluster", "route_name", "pod") if c in requests.columns]
    rows = flag_rows(requests.lazy().select("response_flags", *dims)).collect()
    counts = rows.group_by("flag").len().sort(["len", "flag"], descending=[True, False])
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
            tops = of_flag.group_by(dim).len().drop_nulls(dim).sort(["len", dim], descending=[True, False]).head(top)
            entry[f"top_{dim}"] = [{"value": v, "count": int(c)} for v, c in tops.iter_rows()]  # type: ignore[literal-required]
        out.append(entry)
    return out


def error_details(requests: pl.LazyFrame, *, top: int = 10) -> pl.LazyFrame:
    """``response_code_details`` of 5xx/0 answers, decoded into kind, reset reason and transport failure."""
    return (
        requests.filter(is_error(columns_of(requests)))
        .group_by("response_code_details")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .drop_nulls("response_code_details")
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


def transport_failures(requests: pl.LazyFrame, *, top: int = 10) -> pl.LazyFrame:
    """``upstream_transport_failure_reason`` of 5xx/0 answers (connect refused, TLS errors…)."""
    return (
        requests.filter(is_error(columns_of(requests)))
        .group_by("upstream_transport_failure_reason")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .drop_nulls("upstream_transport_failure_reason")
        .sort(["count", "upstream_transport_failure_reason"], descending=[True, False])
        .head(top)
    )
