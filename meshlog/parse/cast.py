"""Raw field strings → typed columns, and a reason for every value that does not fit its type.

Text ``-`` and JSON ``null`` both mean unset and become null. A value that is set but
cannot be cast makes its line *unparsed*; it is never silently nulled.
"""

from __future__ import annotations

import polars as pl

from meshlog.formats.compiler import CompiledFormat, Field
from meshlog.formats.operators import Kind
from meshlog.parse.text import ROW

DATETIME = pl.Datetime("us", "UTC")

DTYPES: dict[Kind, pl.DataType] = {
    Kind.STRING: pl.String(),
    Kind.ADDRESS: pl.String(),
    Kind.FLAGS: pl.String(),
    Kind.JSON: pl.String(),
    Kind.INTEGER: pl.Int64(),
    Kind.MILLISECONDS: pl.Int64(),
    Kind.BYTES: pl.Int64(),
    Kind.TIMESTAMP: DATETIME,
}

_EXPECTED = {
    Kind.INTEGER: "an integer",
    Kind.MILLISECONDS: "an integer (milliseconds)",
    Kind.BYTES: "an integer (bytes)",
    Kind.TIMESTAMP: "a time",
}


def dtype_of(f: Field) -> pl.DataType:
    """The column type a field gets (a timestamp whose pattern chrono cannot read stays text)."""
    if f.kind is Kind.TIMESTAMP and (f.time is None or f.time.chrono is None):
        return pl.String()
    return DTYPES[f.kind]


def _typed(f: Field, raw: pl.Expr) -> pl.Expr:
    # A number or a time: "-" and "" (omit_empty_values) fail the cast and so come out null without a
    # mask, which would copy the strings once more; ``cast_fields`` tells them from values that do not fit.
    if f.kind.numeric:
        return raw.cast(pl.Int64, strict=False)
    if f.kind is Kind.TIMESTAMP and f.time is not None and f.time.chrono is not None:
        parsed = raw.str.to_datetime(f.time.chrono, strict=False, time_unit="us")
        if f.time.has_zone:
            return parsed.dt.convert_time_zone("UTC")
        return parsed.dt.replace_time_zone("UTC")
    unset = raw.is_null()
    for text in unset_texts(f):  # one comparison each, as cheap as the kernels get
        unset |= raw == text
    value = pl.when(~unset).then(raw)
    return value.str.strip_suffix(";") if strips_semicolon(f) else value


def unset_texts(f: Field) -> tuple[str, ...]:
    """What a text field prints when unset: "-"; "" too, except where "" is a value Envoy wrote (an
    empty header, an address, JSON). Every engine reads text fields by this rule."""
    return ("-",) if f.kind in (Kind.STRING, Kind.ADDRESS, Kind.JSON) else ("-", "")


def strips_semicolon(f: Field) -> bool:
    """Istio ≥1.23 sets alt_stat_name "<name>;": %UPSTREAM_CLUSTER% (and JSON upstream_cluster of
    1.23.0–1.23.3 / 1.24.0–1.24.1, which the istio-json preset cannot tell apart) end in ";"."""
    return f.source in ("%UPSTREAM_CLUSTER%", "%UPSTREAM_CLUSTER_RAW%")


def cast_fields(raw: pl.DataFrame, compiled: CompiledFormat) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed columns named as the contract says; and ``_row, reason`` for the rows that do not fit.

    ``raw`` holds one text column per field (``_f0``, ``_f1``…; some may be left out when not
    wanted) beside any others, which are kept.
    Messages are built only for the rows that failed, not for every row.
    """
    present = [(f, f"_f{i}") for i, f in enumerate(compiled.fields) if f"_f{i}" in raw.columns]
    raw_names = [r for _, r in present]
    typed = [_typed(f, pl.col(r)).alias(f.column) for f, r in present]
    checked = [(f, r) for f, r in present if dtype_of(f) != pl.String()]

    def failed(f: Field, r: str) -> pl.Expr:
        raw = pl.col(r)
        return pl.col(f.column).is_null() & raw.is_not_null() & (raw != "-") & (raw != "")

    bad = pl.any_horizontal(failed(f, r) for f, r in checked) if checked else pl.lit(False)
    frame = raw.lazy().with_columns(typed).with_columns(bad.alias("_bad")).collect()
    if not frame["_bad"].any():  # the usual case: no messages to build, no rows to drop
        no_reasons = frame.head(0).select(ROW, pl.lit(None, dtype=pl.String).alias("reason"))
        return frame.drop(*raw_names, "_bad"), no_reasons
    reasons = frame.filter("_bad").select(
        ROW,
        pl.coalesce(
            pl.when(failed(f, r)).then(
                pl.format(
                    'field {}: expected {}, got "{}"',
                    pl.lit(f.column),
                    pl.lit(_EXPECTED[f.kind]),
                    pl.col(r).str.slice(0, 40),
                )
            )
            for f, r in checked
        ).alias("reason")
        if checked
        else pl.lit(None, dtype=pl.String).alias("reason"),
    )
    good = frame.filter(~pl.col("_bad")).drop(*raw_names, "_bad")
    return good, reasons
