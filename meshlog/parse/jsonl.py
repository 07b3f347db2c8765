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
from typing import Any

import polars as pl

from meshlog.formats.compiler import CompiledFormat
from meshlog.parse.text import ROW

_BATCH = 4096


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def extract(lines: pl.DataFrame, compiled: CompiledFormat) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Raw strings per key (``f0``…), and the bad lines.

    ``lines`` holds only lines that start with ``{``. The second frame is ``_row, reason``.
    """
    keys = compiled.json_keys
    names = [f"f{i}" for i in range(len(keys))]
    dtype = pl.Struct({k: pl.String for k in dict.fromkeys(keys)})
    good: list[pl.DataFrame] = []
    bad_rows: list[int] = []
    bad_reasons: list[str] = []
    for start in range(0, lines.height, _BATCH):
        batch = lines.slice(start, _BATCH)
        try:
            decoded = batch.select(ROW, pl.col("line").str.json_decode(dtype).alias("_j"))
            good.append(decoded.select(ROW, *(pl.col("_j").struct.field(k).alias(n) for k, n in zip(keys, names))))
        except pl.exceptions.PolarsError:
            rows, records, reasons = _decode_slowly(batch)
            bad_rows += [r for r, reason in zip(batch[ROW], reasons) if reason is not None]
            bad_reasons += [r for r in reasons if r is not None]
            good.append(
                pl.DataFrame(
                    {ROW: rows, **{n: [_as_text(rec.get(k)) for rec in records] for k, n in zip(keys, names)}},
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
