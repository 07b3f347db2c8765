"""Lines frame → ``AccessLog``: typed requests, unparsed lines with reasons, other lines by kind.

Every input line lands in exactly one of the three frames, so
``lines.total == access + unparsed + other`` always holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import polars as pl

from meshlog.formats.compiler import CompiledFormat
from meshlog.formats.operators import Kind
from meshlog.parse import jsonl, scanner, text, ztunnel
from meshlog.parse.cast import cast_fields, dtype_of
from meshlog.parse.classify import other_kind
from meshlog.parse.derive import DERIVED, cluster_columns
from meshlog.parse.text import ROW

LINE_COLUMNS = ("source", "line_no", "line")
UNPARSED_SCHEMA = {"source": pl.String, "line_no": pl.Int64, "line": pl.String, "reason": pl.String}
OTHER_SCHEMA = {"source": pl.String, "line_no": pl.Int64, "line": pl.String, "kind": pl.String}


@dataclass(frozen=True)
class LineCounts:
    total: int
    access: int
    unparsed: int
    other: int


def _no_connections() -> pl.DataFrame:
    return pl.DataFrame(schema={"source": pl.String, "line_no": pl.Int64, **ztunnel.CONNECTION_SCHEMA})


@dataclass(frozen=True)
class AccessLog:
    """One parsed input: ``requests`` (typed), ``unparsed`` (with reasons), ``other`` (by kind), and
    ``connections``: Istio ambient's L4 records (ztunnel's), which any input may hold beside Envoy's.
    Both kinds of record count as access lines."""

    requests: pl.DataFrame
    unparsed: pl.DataFrame
    other: pl.DataFrame
    format: CompiledFormat | None  # None: no input's Envoy format is known (no Envoy access line came)
    connections: pl.DataFrame = field(default_factory=_no_connections)

    @property
    def counts(self) -> LineCounts:
        a = self.requests.height + self.connections.height
        u, o = self.unparsed.height, self.other.height
        return LineCounts(a + u + o, a, u, o)

    @staticmethod
    def concat(parts: Iterable[AccessLog], fmt: CompiledFormat | None) -> AccessLog:
        """Join the logs of several chunks or sources (same format)."""
        items = list(parts)
        if not items:
            if fmt is not None:
                return parse_lines(lines_frame([], source="-"), fmt)
            empty = pl.DataFrame(schema={"source": pl.String, "line_no": pl.Int64})
            return AccessLog(empty, pl.DataFrame(schema=UNPARSED_SCHEMA), pl.DataFrame(schema=OTHER_SCHEMA), None)
        return AccessLog(
            pl.concat([p.requests for p in items], how="diagonal_relaxed"),
            pl.concat([p.unparsed for p in items], how="diagonal_relaxed"),  # wrapper columns may come later
            pl.concat([p.other for p in items]),
            fmt,
            pl.concat([p.connections for p in items], how="diagonal_relaxed"),
        )


def lines_frame(lines: list[str], *, source: str = "-", first_line_no: int = 1) -> pl.DataFrame:
    """A lines frame from Python strings (tests, small inputs)."""
    return pl.DataFrame(
        {
            "source": [source] * len(lines),
            "line_no": list(range(first_line_no, first_line_no + len(lines))),
            "line": lines,
        },
        schema={"source": pl.String, "line_no": pl.Int64, "line": pl.String},
    )


def wanted_fields(fmt: CompiledFormat, columns: Collection[str] | None) -> list[int] | None:
    """Fields to materialise: the ``columns`` asked for, plus every typed field (it is still
    validated, so a line is unparsed for the same reason whatever columns a command reads)."""
    if columns is None:
        return None
    return [i for i, f in enumerate(fmt.fields) if f.column in columns or dtype_of(f) != pl.String()]


def parse_lines(
    lines: pl.DataFrame,
    fmt: CompiledFormat | None,
    *,
    use_plan: bool = True,
    columns: Collection[str] | None = None,
    reason: str = "",
) -> AccessLog:
    """Parse one lines frame (``source, line_no, line`` + any metadata columns) with a compiled format.

    ztunnel's records are taken out first, whatever the format (they are told by their shape).
    ``fmt`` None: no Envoy format fits this input (yet); its other lines are then unparsed with
    ``reason``, or, without one, counted as other. ``columns`` limits the text columns built
    (reports read few of them), and the derived cluster columns when it names none of them; line
    accounting is the same.
    """
    lines = lines.with_row_index(ROW)
    l4 = ztunnel.records(lines)
    if not l4.height:
        return _parse_envoy(lines, fmt, use_plan=use_plan, columns=columns, reason=reason)
    connections, bad = ztunnel.parse(l4)
    broken = l4.join(bad, on=ROW, how="inner").drop("line").join(l4.select(ROW, "line"), on=ROW)
    rest = lines.join(l4.select(ROW), on=ROW, how="anti")
    log = _parse_envoy(rest, fmt, use_plan=use_plan, columns=columns, reason=reason, l4_broken=broken)
    return AccessLog(log.requests, log.unparsed, log.other, fmt, connections.drop(ROW))


def _parse_envoy(
    lines: pl.DataFrame,
    fmt: CompiledFormat | None,
    *,
    use_plan: bool,
    columns: Collection[str] | None,
    reason: str,
    l4_broken: pl.DataFrame | None = None,
) -> AccessLog:
    """Envoy's records of ``lines``; ``l4_broken``: ztunnel records' unparsed lines (``_row``, reason, …),
    kept in input order among these."""
    if fmt is None:
        return _no_format(lines, reason, l4_broken)
    fields = wanted_fields(fmt, columns)
    if fmt.encoding == "json":
        raw, bad, not_records = _extract_json(lines, fmt, fields)
        good, cast_failed = cast_fields(raw, fmt)
    else:
        good, not_records, bad, cast_failed = _text_fields(lines, fmt, use_plan=use_plan, fields=fields)

    leftovers = lines.join(pl.DataFrame({ROW: not_records}, schema={ROW: pl.UInt32}), on=ROW, how="semi")
    leftovers = leftovers.with_columns(other_kind().alias("kind"))
    looks_like = _looks_like_access(fmt)
    json_record = _json_access_record() if fmt.encoding == "text" else pl.lit(False)
    broken = leftovers.filter(pl.col("kind").is_null() & looks_like & ~json_record)
    if broken.height:
        reasons = (
            text.failure_reasons(broken, fmt)
            if fmt.encoding == "text"
            else pl.Series("reason", ["a JSON object with none of the format's keys"] * broken.height)
        )
        bad = pl.concat([bad, broken.select(ROW).with_columns(reasons.alias("reason"))])
    misread = leftovers.filter((pl.col("kind").is_null() | (pl.col("kind") == "json-log")) & json_record)
    if misread.height:  # JSON access records read with a text format: the wrong format, not other lines
        bad = pl.concat([bad, misread.select(ROW, pl.lit(JSON_UNDER_TEXT).alias("reason"))])
    leftovers = leftovers.filter(~json_record | pl.col("kind").is_not_null() & (pl.col("kind") != "json-log"))
    other = leftovers.filter(pl.col("kind").is_not_null() | ~looks_like).with_columns(
        pl.col("kind").fill_null("unrecognised")
    )
    bad = pl.concat([bad, cast_failed])

    meta = [c for c in lines.columns if c not in (ROW, "line")]  # source, line_no and what wrappers said
    if not set(meta) <= set(good.columns):  # JSON extraction carries only the row number
        good = lines.select(ROW, *meta).join(good, on=ROW, how="inner", maintain_order="right")
    requests = good.drop(ROW)
    wrapper_meta = [c for c in meta if c not in LINE_COLUMNS]
    unparsed = _unparsed(lines.join(bad, on=ROW, how="inner"), l4_broken, wrapper_meta)
    if columns is None or not set(DERIVED).isdisjoint(columns):
        requests = cluster_columns(requests)
    return AccessLog(
        requests,
        unparsed.cast(UNPARSED_SCHEMA),  # type: ignore[arg-type]
        other.sort(ROW).select(*OTHER_SCHEMA).cast(OTHER_SCHEMA),  # type: ignore[arg-type]
        fmt,
    )


def _unparsed(found: pl.DataFrame, broken: pl.DataFrame | None, meta: list[str]) -> pl.DataFrame:
    """Unparsed lines in input order (``_row``), in the contract's columns and what wrappers said."""
    if broken is not None and broken.height:
        found = pl.concat([found, broken], how="diagonal_relaxed")
    return found.sort(ROW).select(*UNPARSED_SCHEMA, *meta)


def _no_format(lines: pl.DataFrame, reason: str, broken: pl.DataFrame | None) -> AccessLog:
    """Lines no Envoy format fits: known kinds of other lines by kind, the rest unparsed with
    ``reason`` (none: nothing is wrong yet, they are other lines)."""
    kinds = lines.with_columns(other_kind().alias("kind"))
    other = kinds.filter(pl.col("kind").is_not_null() | (pl.lit(reason) == ""))
    other = other.with_columns(pl.col("kind").fill_null("unrecognised"))
    found = kinds.filter(pl.col("kind").is_null() & (pl.lit(reason) != "")).with_columns(reason=pl.lit(reason))
    meta = [c for c in lines.columns if c not in (ROW, *LINE_COLUMNS)]
    return AccessLog(
        pl.DataFrame(schema={"source": pl.String, "line_no": pl.Int64}),
        _unparsed(found.drop("kind"), broken, meta).cast(UNPARSED_SCHEMA),  # type: ignore[arg-type]
        other.sort(ROW).select(*OTHER_SCHEMA).cast(OTHER_SCHEMA),  # type: ignore[arg-type]
        None,
    )


JSON_UNDER_TEXT = "a JSON access record, but the format is text: pass -f istio-json (or the proxy's JSON format)"


def _json_access_record() -> pl.Expr:
    """A JSON object with keys every Envoy JSON access format has (Istio's, Envoy Gateway's)."""
    line = pl.col("line")
    return (
        line.str.contains(r"^\s*\{")
        & line.str.contains('"response_code"', literal=True)
        & (line.str.contains('"start_time"', literal=True) | line.str.contains('"duration"', literal=True))
    )


def looks_like_prefix(fmt: CompiledFormat) -> str:
    """The regex (unanchored) a line that failed must still start with to look like an access record
    of ``fmt``, so it is *unparsed*, not *other*: the format up to its first typed field (two at most).
    Every engine decides by it."""
    if fmt.encoding == "json":
        return r"\s*\{"
    k = next((i + 1 for i, f in enumerate(fmt.fields) if f.kind is not Kind.STRING), 1)
    return fmt.regex_prefix(min(k, 2, len(fmt.fields)))


def _looks_like_access(fmt: CompiledFormat) -> pl.Expr:
    return pl.col("line").str.contains("^" + looks_like_prefix(fmt))


def _text_fields(
    lines: pl.DataFrame, fmt: CompiledFormat, *, use_plan: bool, fields: list[int] | None
) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame, pl.DataFrame]:
    """Typed rows, unmatched row numbers, ambiguous rows and rows a value of which does not fit its
    type: by the compiled scanner when it is in use, else by polars (the reference)."""
    if use_plan and (read := scanner.typed_fields(lines, fmt, fields)) is not None:
        good, unmatched, bad = read
        return good, unmatched, bad, bad.head(0)
    raw, unmatched, ambiguous = text.extract(lines, fmt, use_plan=use_plan, fields=fields)
    good, cast_failed = cast_fields(raw, fmt)
    return good, unmatched, ambiguous, cast_failed


def _extract_json(
    lines: pl.DataFrame, fmt: CompiledFormat, fields: list[int] | None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
    # A JSON object that names none of the format's keys is some other JSON (an app log), not a record.
    keys = "|".join(re.escape(json.dumps(k)) for k in fmt.json_keys)
    is_record = pl.col("line").str.contains(r"^\s*\{") & pl.col("line").str.contains(f"(?:{keys})\\s*:")
    raw, bad = jsonl.extract(lines.filter(is_record), fmt, fields)
    return raw, bad, lines.filter(~is_record)[ROW]
