"""JSON-mode extraction: one JSON object per line → one raw string column per key.

Envoy's typed JSON (``json_format``) gives numbers, strings and ``null``; older Istio
gave only strings with ``"-"`` for unset. Reading every key as text and casting in
``cast.py`` handles both with one code path. polars decodes whole batches; a batch
that fails (a truncated record, a nested object where text was expected) is
re-read line by line with ``json`` so that only the bad lines are set aside, each
with the decoder's message and column.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

import polars as pl

from meshlog.formats.compiler import CompiledFormat
from meshlog.formats.operators import Kind
from meshlog.parse.text import ROW

_BATCH = 1 << 16
_SMALL = 512  # below this many lines a failed batch is read line by line


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)  # compact, as Envoy writes it


def extract(
    lines: pl.DataFrame, compiled: CompiledFormat, fields: list[int] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Raw strings per key (``f0``…), and the bad lines.

    ``lines`` holds only lines that start with ``{``. The second frame is ``_row, reason``.
    """
    wanted = list(range(len(compiled.json_keys))) if fields is None else fields
    keys = tuple(compiled.json_keys[i] for i in wanted)
    # Structured values (metadata, filter state) come out as JSON text via a path match.
    structured = {f.column for f in compiled.fields if f.kind is Kind.JSON}
    return decode_keys(lines, keys, [f"_f{i}" for i in wanted], structured=structured)


def decode_keys(
    lines: pl.DataFrame, keys: Sequence[str], names: Sequence[str], *, structured: Collection[str] = ()
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``_row`` and one text column per key (named ``names``) of JSON-object lines, and the lines
    that do not decode (``_row, reason``). Every JSON reader (Envoy's records, ztunnel's) uses it."""
    dtype = pl.Struct({k: pl.String for k in dict.fromkeys(keys) if k not in structured})

    def value(key: str) -> pl.Expr:
        if key in structured:
            return pl.col("line").str.json_path_match(f"$[{json.dumps(key)}]")
        return pl.col("_j").struct.field(key)

    def decode(batch: pl.DataFrame) -> pl.LazyFrame:
        decoded = batch.lazy().with_columns(pl.col("line").str.json_decode(dtype).alias("_j"))
        return decoded.select(ROW, *(value(k).alias(n) for k, n in zip(keys, names, strict=True)))

    batches = [lines.slice(start, _BATCH) for start in range(0, lines.height, _BATCH)]
    try:  # the common case: every record decodes; batches run on all cores
        good = pl.collect_all([decode(b) for b in batches])
        bad_rows: list[int] = []
        bad_reasons: list[str] = []
    except pl.exceptions.PolarsError:  # some line is broken: narrow it down, decode the rest as usual
        good, bad_rows, bad_reasons = [], [], []
        pending = batches
        while pending:
            batch = pending.pop(0)
            try:
                good.append(decode(batch).collect())
                continue
            except pl.exceptions.PolarsError:
                pass
            if batch.height > _SMALL:
                step = -(-batch.height // 8)
                pending[:0] = [batch.slice(i, step) for i in range(0, batch.height, step)]
                continue
            rows, records, reasons = _decode_slowly(batch)  # reasons: one per line of the batch
            bad_rows += [r for r, reason in zip(batch[ROW], reasons, strict=True) if reason is not None]
            bad_reasons += [r for r in reasons if r is not None]
            columns = {n: [_as_text(rec.get(k)) for rec in records] for k, n in zip(keys, names, strict=True)}
            good.append(
                pl.DataFrame(
                    {ROW: rows, **columns},
                    schema={ROW: pl.UInt32, **{n: pl.String for n in names}},
                )
            )
    schema = {ROW: pl.UInt32, **{n: pl.String for n in names}}
    raw = pl.concat([g.cast(schema) for g in good]) if good else pl.DataFrame(schema=schema)  # type: ignore[arg-type]
    bad = pl.DataFrame({ROW: bad_rows, "reason": bad_reasons}, schema={ROW: pl.UInt32, "reason": pl.String})
    return raw, bad


def _decode_slowly(batch: pl.DataFrame) -> tuple[list[int], list[dict[str, Any]], list[str | None]]:
    """The error path: decode each line of one failed batch, keeping the decoder's message."""
    rows: list[int] = []
    records: list[dict[str, Any]] = []
    reasons: list[str | None] = []
    for row, line in batch.select(ROW, "line").iter_rows():
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            reasons.append(f"invalid JSON at column {exc.colno}: {exc.msg}")
            continue
        if not isinstance(record, dict):
            reasons.append("a JSON value that is not an object")
            continue
        reasons.append(None)
        rows.append(row)
        records.append(record)
    return rows, records, reasons
