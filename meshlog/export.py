"""Frames → bytes for machines: NDJSON, CSV, JSON, Parquet. Shared by the CLI and, later, the TUI."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
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


class RowWriter:
    """Chunks of rows written as one table: the columns are fixed before the first row.

    ``columns`` (else the first chunk's) is the table's shape: a chunk lacking one gets nulls, and a
    column outside it is left out, with one ``on_dropped`` call naming it (never a row whose values
    sit under another column's heading). NDJSON and CSV are written chunk by chunk; JSON and
    Parquet are one document, written by ``close``.
    """

    def __init__(
        self,
        fmt: RowFormat,
        out: BinaryIO,
        columns: Sequence[str] | None = None,
        *,
        on_dropped: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.fmt = fmt
        self.out = out
        self.columns = list(columns) if columns is not None else None
        self.rows = 0
        self._on_dropped = on_dropped
        self._dropped: set[str] = set()
        self._held: list[pl.DataFrame] = []
        self._header = True

    @property
    def streaming(self) -> bool:
        return self.fmt in ("ndjson", "csv")

    def write(self, frame: pl.DataFrame) -> None:
        if self.columns is None:
            self.columns = frame.columns
        frame = self._conform(frame)
        self.rows += frame.height
        if not self.streaming:
            self._held.append(frame)
        elif frame.height or (self._header and self.fmt == "csv"):
            write_rows(frame, self.fmt, self.out, header=self._header)
            self._header = False
            self.out.flush()

    def close(self) -> None:
        """Write what is held (JSON, Parquet), or a CSV header when no row came."""
        if self.streaming:
            if self._header and self.fmt == "csv" and self.columns:
                self.write(pl.DataFrame(schema=dict.fromkeys(self.columns, pl.String)))
            return
        frames = [f for f in self._held if f.height] or self._held[:1]
        if frames:
            table = pl.concat(frames, how="diagonal_relaxed")
            table = table.select(self.columns or table.columns)
        else:  # no row at all: still one valid document with the table's columns
            table = pl.DataFrame(schema=dict.fromkeys(self.columns or [], pl.String))
        write_rows(table, self.fmt, self.out)
        self._held = []

    def _conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        assert self.columns is not None
        extra = [c for c in frame.columns if c not in self.columns and c not in self._dropped]
        if extra:
            self._dropped.update(extra)
            if self._on_dropped is not None:
                self._on_dropped(extra)
        if frame.columns == self.columns:
            return frame
        return frame.select(pl.col(c) if c in frame.columns else pl.lit(None).alias(c) for c in self.columns)
