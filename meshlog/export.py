"""Frames → bytes for machines: NDJSON, CSV, JSON, Parquet. Shared by the CLI and, later, the TUI."""

from __future__ import annotations

import io
from typing import BinaryIO, Literal

import polars as pl

RowFormat = Literal["ndjson", "csv", "json", "parquet"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _iso_times(frame: pl.DataFrame) -> pl.DataFrame:
    """Times as ISO-8601 UTC text with a ``Z``: what every consumer of NDJSON/CSV reads."""
    return frame.with_columns(
        pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ") for c, t in frame.schema.items() if isinstance(t, pl.Datetime)
    )


def _spreadsheet_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix text that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``) with ``'``."""
    starts = "^[" + "".join("\\" + c if c in "+-" else c for c in _FORMULA_START) + "]"
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(starts) & (pl.col(c) != "-"))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c, t in frame.schema.items()
        if t == pl.String
    )


def write_rows(frame: pl.DataFrame, fmt: RowFormat, out: BinaryIO, *, header: bool = True) -> None:
    """Write rows to a binary stream; for CSV, ``header=False`` continues an earlier chunk."""
    if fmt == "parquet":
        frame.write_parquet(out)
        return
    buf = io.BytesIO()
    if fmt == "ndjson":
        if frame.height:
            _iso_times(frame).write_ndjson(buf)
    elif fmt == "csv":
        _spreadsheet_safe(_iso_times(frame)).write_csv(buf, include_header=header)
    elif fmt == "json":
        _iso_times(frame).write_json(buf)
    data = buf.getvalue()
    if fmt == "ndjson" and data and not data.endswith(b"\n"):
        data += b"\n"
    out.write(data)
