"""Reference: the row-level reports as meshlog 0.2.0 computed them (before the summary state), kept
verbatim but for imports so the state's reports can be compared with them key by key.

Every function here reads the parsed request rows themselves (no counts, no state): percentiles are
polars' own ``quantile`` over the durations, counts are ``len`` over the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import polars as pl

from meshlog.filters import compile_where, has_flag
from meshlog.flags import describe
from meshlog.parse import AccessLog, LineCounts
from meshlog.reports.contract import (
    FlagReport,
    Hint,
    Latency,
    Overview,
    Percentiles,
    Place,
    Retries,
    Summary,
    UnparsedLine,
)
from meshlog.reports.hints import RULES, Rule, rule_filter
from meshlog.reports.state import ATTEMPT_COLUMNS, SLOWEST_COLUMNS
from meshlog.reports.timeline import bucket_seconds
from meshlog.reports.traffic import is_error


def columns_of(frame: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """Column names of an eager or a lazy frame (reports take both)."""
    return frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns


def overview(requests: pl.DataFrame) -> dict[str, Any]:
    """Requests, their time span, rate and error ratio (see ``is_error``)."""
    columns = set(requests.columns)
    n = requests.height
    row = requests.select(
        (pl.col("start_time").min() if "start_time" in columns else pl.lit(None)).alias("start"),
        (pl.col("start_time").max() if "start_time" in columns else pl.lit(None)).alias("end"),
        is_error(columns).sum().alias("errors"),
        (pl.col("response_code") >= 500).sum().alias("5xx") if "response_code" in columns else pl.lit(0).alias("5xx"),
        (pl.col("response_code") == 0).sum().alias("0") if "response_code" in columns else pl.lit(0).alias("0"),
        (is_error(columns) & pl.col("path").is_null()).sum().alias("pathless")
        if "path" in columns
        else pl.lit(None).alias("pathless"),
    ).row(0, named=True)
    span = (row["end"] - row["start"]).total_seconds() if row["start"] is not None and row["end"] is not None else 0.0
    return {
        "requests": n,
        "seconds": span,
        "requests_per_s": n / span if span > 0 else None,
        "errors": int(row["errors"] or 0),
        "error_ratio": (row["errors"] or 0) / n if n else 0.0,
        "status_5xx": int(row["5xx"] or 0),
        "status_0": int(row["0"] or 0),
        "errors_without_path": None if row["pathless"] is None else int(row["pathless"]),
    }


def response_codes(requests: pl.LazyFrame) -> pl.LazyFrame:
    """Requests per status code, most frequent first."""
    return (
        requests.group_by(pl.col("response_code").alias("code"))
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .drop_nulls("code")
        .sort(["count", "code"], descending=[True, False])
    )


def status_classes(requests: pl.LazyFrame) -> pl.LazyFrame:
    """Requests per class: ``0`` (no response), ``2xx`` … ``5xx``."""
    code = pl.col("response_code")
    klass = pl.when(code == 0).then(pl.lit("0")).otherwise((code // 100).cast(pl.String) + "xx")
    return (
        requests.group_by(klass.alias("class"))
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .drop_nulls("class")
        .sort("class")
    )


def top_errors(requests: pl.LazyFrame, by: str, *, top: int = 10) -> pl.LazyFrame:
    """The values of ``by`` (path, authority) with the most errors, and their share of *all* errors: the
    errors without a value (TCP has no path) count in the denominator, so shares never overstate."""
    errors = requests.filter(is_error(columns_of(requests)))
    return (
        errors.group_by(by)
        .agg(pl.len().cast(pl.Int64).alias("errors"))
        .with_columns((pl.col("errors") / pl.col("errors").sum()).alias("share_of_errors"))
        .drop_nulls(by)
        .sort(["errors", by], descending=[True, False])
        .head(top)
    )


QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def percentiles(col: str | pl.Expr) -> list[pl.Expr]:
    """p50/p90/p99 by linear interpolation (numpy's default), to the microsecond: interpolating
    whole milliseconds leaves binary noise (277.6000000000001) that nobody should have to read."""
    expr = pl.col(col) if isinstance(col, str) else col
    return [expr.quantile(q, interpolation="linear").round(3).alias(k) for k, q in QUANTILES.items()]


def latency(requests: pl.LazyFrame, column: str) -> pl.LazyFrame:
    """p50/p90/p99/max of one duration column (milliseconds)."""
    return requests.select(*percentiles(column), pl.col(column).max().cast(pl.Float64).alias("max"))


def gap(requests: pl.LazyFrame) -> pl.LazyFrame:
    """p50/p90/p99/max of ``duration - upstream_service_time``: proxy, network and retry time."""
    diff = pl.col("duration") - pl.col("upstream_service_time")
    return requests.select(*percentiles(diff), diff.max().cast(pl.Float64).alias("max"))


def latency_by(requests: pl.LazyFrame, by: str, *, top: int = 10) -> pl.LazyFrame:
    """Request count and duration percentiles per value of ``by``, slowest p99 first."""
    return (
        requests.group_by(by)
        .agg(pl.len().cast(pl.Int64).alias("requests"), *percentiles("duration"))
        .drop_nulls(by)
        .sort(["p99", by], descending=[True, False], nulls_last=True)
        .head(top)
    )


def slowest_rows(requests: pl.LazyFrame, columns: Sequence[str], *, top: int = 10) -> pl.LazyFrame:
    """The slowest requests with the columns that say what they were."""
    # ties in input order (source, line): the one change from 0.2.0, whose order among ties was arbitrary
    by = [c for c in ("duration", "source", "line_no") if c in columns]
    ordered = requests.sort(by, descending=[c == "duration" for c in by], nulls_last=True)
    return ordered.head(top).select(columns)


# Envoy's histogram bounds up to 10 s (ms): a per-cluster shape that reads as a sparkline.


_FILTERED_BUCKETS = 64  # up to this many buckets, p99 is taken bucket by bucket (see ``timeline``)


def timeline(requests: pl.DataFrame, *, buckets: int = 40) -> tuple[int, pl.DataFrame]:
    """(bucket seconds, frame of bucket start, requests, errors, p99 duration): every bucket from the first
    request to the last, empty ones with 0 requests and a null p99."""
    if "start_time" not in requests.columns or requests.height == 0:
        return 0, pl.DataFrame()
    start, end = requests.select(pl.col("start_time").min().alias("a"), pl.col("start_time").max().alias("b")).row(0)
    if start is None:
        return 0, pl.DataFrame()
    step = bucket_seconds(end - start, buckets=buckets)
    step_us = step * 1_000_000
    first = start.timestamp() * 1_000_000 // step_us * step_us
    # a small bucket number (not a time) keeps the grouping key at 4 bytes a row
    bucket = ((pl.col("start_time").dt.epoch("us") - int(first)) // step_us).cast(pl.Int32)
    has_duration = "duration" in requests.columns
    used = ("response_code", "response_flags", "duration")
    keyed = requests.select(bucket.alias("_b"), *(c for c in used if c in requests.columns))
    keyed = keyed.drop_nulls("_b")
    frame = (  # grouping on the bucket number needs no sort of the whole frame
        keyed.lazy()
        .group_by("_b")
        .agg(
            pl.len().cast(pl.Int64).alias("requests"),
            is_error(keyed.columns).sum().cast(pl.Int64).alias("errors"),
        )
        .sort("_b")
        .collect()
    )
    if has_duration and frame.height <= _FILTERED_BUCKETS:
        # p99 one bucket at a time: a group-by quantile first copies every duration into its group
        # (~130 MB more peak at 10M lines); a filter holds one bucket's durations at a time.
        p99 = keyed.select(
            pl.col("duration").filter(pl.col("_b") == b).quantile(0.99).alias(str(b)) for b in frame["_b"]
        )
        frame = frame.with_columns(pl.Series("p99", p99.row(0) if p99.width else [], dtype=pl.Float64))
    else:
        per_bucket = keyed.group_by("_b").agg(
            (pl.col("duration").quantile(0.99) if has_duration else pl.lit(None)).alias("p99")
        )
        frame = frame.join(per_bucket, on="_b", how="left", maintain_order="left")
    # every bucket of the span, the empty ones too: a gap in traffic is a finding, not a missing bar
    every = pl.DataFrame({"_b": pl.int_range(0, frame["_b"][-1] + 1, dtype=pl.Int32, eager=True)})
    frame = every.join(frame, on="_b", how="left", maintain_order="left").with_columns(
        pl.col("requests", "errors").fill_null(0)
    )
    frame = frame.select(
        (pl.lit(int(first)) + pl.col("_b").cast(pl.Int64) * step_us).cast(pl.Datetime("us", "UTC")).alias("start_time"),
        "requests",
        "errors",
        "p99",
    )
    return step, frame


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


_URX = has_flag("URX")


def attempts_column(columns: set[str]) -> str | None:
    return next((c for c in ATTEMPT_COLUMNS if c in columns), None)


def retries_report(requests: pl.DataFrame, *, top: int = 10) -> Retries:
    """Attempt distribution, retried requests and how they ended, clusters by retries and by URX."""
    columns = set(requests.columns)
    lf = requests.lazy()
    # an attempt count logged as text (a header of another name, a JSON string) counts once it reads as a number
    attempts = attempts_column({c for c in columns if c not in ATTEMPT_COLUMNS or requests.schema[c].is_integer()})
    urx = _URX if "response_flags" in columns else pl.lit(False)
    out: Retries = {
        "attempt_counts": None,
        "retried_requests": None,
        "retried_then_succeeded": None,
        "retried_and_failed": None,
        "retry_limit_exceeded": int(
            (requests.filter(pl.col("response_flags").is_not_null()) if "response_flags" in columns else requests)
            .select(urx.sum())
            .item()
        ),
        "clusters": [],
    }
    if "upstream_cluster" in columns:
        # URX is tested on flagged lines only: turning every row's flags into text costs memory
        flagged = lf.filter(pl.col("response_flags").is_not_null()) if "response_flags" in columns else lf
        exceeded = flagged.group_by("upstream_cluster").agg(urx.sum().alias("retry_limit_exceeded"))
        by_cluster = (
            lf.group_by("upstream_cluster")
            .agg(
                pl.len().alias("requests"),
                *((pl.col(attempts) - 1).clip(lower_bound=0).sum().alias("retries"),) if attempts else (),
            )
            .join(exceeded, on="upstream_cluster", how="left", nulls_equal=True)
            .with_columns(pl.col("retry_limit_exceeded").fill_null(0))
            .select("upstream_cluster", "requests", "retry_limit_exceeded", *(("retries",) if attempts else ()))
        )
        key = "retries" if attempts else "retry_limit_exceeded"
        out["clusters"] = (
            by_cluster.filter(pl.col(key) > 0)
            .drop_nulls("upstream_cluster")
            .sort([key, "upstream_cluster"], descending=[True, False])
            .head(top)
            .collect()
            .to_dicts()
        )
    if attempts:
        a = pl.col(attempts)
        error = is_error(columns)
        out["attempt_counts"] = (
            lf.group_by(a.alias("attempts")).agg(pl.len().cast(pl.Int64).alias("count")).drop_nulls("attempts")
            .sort("attempts").collect().to_dicts()
        )  # fmt: skip
        row = requests.select(
            (a > 1).sum().alias("retried"),
            ((a > 1) & ~error).sum().alias("ok"),
            ((a > 1) & error).sum().alias("failed"),
        ).row(0, named=True)
        out["retried_requests"] = int(row["retried"])
        out["retried_then_succeeded"] = int(row["ok"])
        out["retried_and_failed"] = int(row["failed"])
    return out


_RULE_COLUMNS = ("response_flags", "response_code", "response_code_details", "upstream_transport_failure_reason")


_PLACES = ("upstream_cluster", "route_name", "pod", "authority")  # where a hint happens


def hints(requests: pl.DataFrame, *, top: int = 3) -> list[Hint]:
    """Every rule that some lines match: severity, title, detail, count, share and where it happens."""
    columns = set(requests.columns)
    total = max(requests.height, 1)
    filters = {r.key: f for r in RULES if (f := rule_filter(r, columns)) is not None}
    rules = [(r, compile_where(filters[r.key], requests.schema)) for r in RULES if r.key in filters]
    if not rules:
        return []
    # Every rule is about a flagged line or a 4xx/5xx/0 answer: look only at those (few) rows.
    worth = [pl.col("response_flags").is_not_null()] if "response_flags" in columns else []
    if "response_code" in columns:
        worth.append((pl.col("response_code") >= 400) | (pl.col("response_code") == 0))
    # Rules read a few low-cardinality columns: count the lines per distinct combination of those and
    # of the places reported, then run each rule's regexes once per combination. No copy of the
    # matching lines is made (that took ~290 MB at 10M lines).
    keys = [c for c in (*_RULE_COLUMNS, *_PLACES) if c in columns]
    combos = requests.lazy().filter(pl.any_horizontal(worth) if worth else pl.lit(True))
    tagged = combos.group_by(keys).len("_n").with_columns(c.alias(_tag(r)) for r, c in rules).collect()
    counts = tagged.select(_lines(_tag(r)) for r, _ in rules).row(0, named=True)
    hit = [r for r, _ in rules if counts[_tag(r)]]
    wheres = _where(tagged, [_tag(r) for r in hit], top)
    out: list[Hint] = []
    for rule in hit:
        n = counts[_tag(rule)]
        out.append(
            {
                "severity": rule.severity,
                "title": rule.title,
                "detail": f"{rule.detail} Look at: {rule.look_at}" + ("" if rule.look_at.endswith("?") else "."),
                "count": int(n),
                "share": n / total,
                "rule": rule.key,
                "look_at": rule.look_at,
                "where": cast(dict[str, list[Place]], wheres[_tag(rule)]),
                "filter": filters[rule.key],
            }
        )
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(out, key=lambda h: (order[h["severity"]], -h["count"]))


def _tag(rule: Rule) -> str:
    return f"_rule_{rule.key}"


def _lines(tag: str) -> pl.Expr:
    """How many lines the combinations a rule matched stand for."""
    return pl.col("_n").filter(pl.col(tag)).sum().alias(tag)


def _where(tagged: pl.DataFrame, rules: list[str], top: int) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per rule tag: top upstream clusters, routes and pods among the lines it matches (one group-by per column)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {key: {} for key in rules}
    if not rules:
        return out
    for column in _PLACES:
        if column not in tagged.columns:
            continue
        per_value = tagged.group_by(column).agg(_lines(key) for key in rules).drop_nulls(column)
        for key in rules:
            counts = (
                per_value.select(column, key)
                .filter(pl.col(key) > 0)
                .sort([key, column], descending=[True, False])
                .head(top)
            )
            if counts.height:
                out[key][column] = [{"value": v, "count": int(n)} for v, n in counts.iter_rows()]
    return out


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts()


def summary_dict(
    log: AccessLog,
    *,
    top: int = 10,
    by: str = "upstream_cluster",
    lines: LineCounts | None = None,
    other_kinds: dict[str, int] | None = None,
    slowest: pl.DataFrame | None = None,
) -> Summary:
    """All reports for one access log (the ``-o json`` document: ``reports.contract``).

    ``lines`` is the whole input's accounting when ``log`` was filtered or compacted; ``other_kinds``
    and ``slowest`` stand in for ``log.other`` and the slowest rows when they were folded in chunk
    by chunk (``reports.compact``).
    """
    req = log.requests
    lf = req.lazy()
    cols = set(req.columns)
    counts = lines or log.counts
    over = overview(req)
    start, end = (
        req.select(pl.col("start_time").min().alias("a"), pl.col("start_time").max().alias("b")).row(0)
        if "start_time" in cols
        else (None, None)
    )
    has_code = "response_code" in cols
    has_duration = "duration" in cols
    has_ust = "upstream_service_time" in cols
    kinds = other_kinds or dict(log.other.group_by("kind").len().iter_rows())
    lat: Latency = {
        "duration": _percentiles(latency(lf, "duration")) if has_duration else None,
        "upstream_service_time": _percentiles(latency(lf, "upstream_service_time")) if has_ust else None,
        "proxy_and_network": _percentiles(gap(lf)) if has_duration and has_ust else None,
        "by_upstream_cluster": _rows(latency_by(lf, "upstream_cluster", top=top).collect())
        if {"upstream_cluster"} <= cols and has_duration
        else [],
    }
    if by != "upstream_cluster" and by in cols and has_duration:
        lat[f"by_{by}"] = _rows(latency_by(lf, by, top=top).collect())  # type: ignore[literal-required]
    if has_duration:
        source = slowest if slowest is not None else req
        shown = [c for c in SLOWEST_COLUMNS if c in source.columns]
        lat["slowest"] = [
            {k: (_iso(v) if k == "start_time" else v) for k, v in r.items()}
            for r in _rows(slowest_rows(source.lazy(), shown, top=min(top, 5)).collect())
        ]
    step, frame = timeline(req)
    buckets = [
        {k: v for k, v in r.items() if k != "start_time"} | {"start": _iso(r["start_time"])} for r in _rows(frame)
    ]
    over_view: Overview = {
        "requests_per_s": over["requests_per_s"], "errors": over["errors"], "error_ratio": over["error_ratio"],
        "status_5xx": over["status_5xx"], "status_0": over["status_0"],
        "errors_without_path": over["errors_without_path"],
    }  # fmt: skip
    return {  # type: ignore[typeddict-item]  # 0.2.0 had no "connections" (ztunnel) key
        "lines": {"total": counts.total, "access": counts.access, "unparsed": counts.unparsed, "other": counts.other},
        "format": (
            {"name": log.format.name, "string": log.format.source} if log.format else {"name": None, "string": None}
        ),
        "time_range": {"start": _iso(start), "end": _iso(end)},
        "requests": req.height,
        "overview": over_view,
        "other_lines": sorted(
            ({"kind": k, "count": n} for k, n in kinds.items()), key=lambda o: (-o["count"], o["kind"])
        ),
        "unparsed_lines": cast(list[UnparsedLine], _rows(log.unparsed.head(top).select("source", "line_no", "reason"))),
        "response_codes": _rows(response_codes(lf).collect()) if has_code else [],
        "status_classes": _rows(status_classes(lf).collect()) if has_code else [],
        "top_error_paths": _rows(top_errors(lf, "path", top=top).collect())
        if {"path"} <= cols and has_code
        else [],
        "top_error_authorities": _rows(top_errors(lf, "authority", top=top).collect())
        if {"authority"} <= cols and has_code
        else [],
        "response_flags": flags_report(req, top=3),
        "error_details": _rows(error_details(lf, top=top).collect())
        if {"response_code_details"} <= cols and has_code
        else [],
        "transport_failures": _rows(transport_failures(lf, top=top).collect())
        if {"upstream_transport_failure_reason"} <= cols and has_code
        else [],
        "latency": lat,
        "retries": retries_report(req, top=top),
        "timeline": {"bucket_seconds": step, "buckets": buckets},
        "hints": hints(req),
    }


def _percentiles(frame: pl.LazyFrame) -> Percentiles:
    return cast(Percentiles, frame.collect().row(0, named=True))


def by_table(requests: pl.DataFrame, by: str, *, top: int = 10) -> pl.DataFrame:
    """One row per value of ``by``: requests, errors, error ratio and duration percentiles (for ``-o csv``)."""
    if by not in requests.columns:
        return pl.DataFrame({by: []})
    has_duration = "duration" in requests.columns
    return (
        requests.lazy()
        .group_by(by)
        .agg(
            pl.len().cast(pl.Int64).alias("requests"),
            is_error(requests.columns).sum().cast(pl.Int64).alias("errors"),
            *(percentiles("duration") if has_duration else ()),
        )
        .with_columns((pl.col("errors") / pl.col("requests")).alias("error_ratio"))
        .sort(["requests", by], descending=[True, False], nulls_last=True)
        .head(top)
        .collect()
    )
