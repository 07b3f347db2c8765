"""Bytes in → lines frames out (``source, line_no, line``), chunk by chunk, in bounded memory.

Files, ``.gz`` files and stdin are read in blocks; each block is cut at its last newline
and split into lines by polars. Reading a pipe returns whatever has arrived, so
``kubectl logs -f | meshlog parse -`` sees rows before EOF. Invalid UTF-8 is kept
(with U+FFFD) and counted, never dropped.
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import polars as pl

from meshlog.errors import InputError

CHUNK_BYTES = 8 << 20
LINES_SCHEMA = {"source": pl.String, "line_no": pl.Int64, "line": pl.String}


@dataclass
class SourceStats:
    """What reading one source noticed: how many lines, and how many held invalid UTF-8."""

    name: str
    lines: int = 0
    invalid_utf8: int = 0
    errors: list[str] = field(default_factory=list)


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    raw.seek(0)
    return raw


def _read_some(stream: BinaryIO, size: int) -> bytes:
    """Read up to ``size`` bytes, returning early with what a pipe has (``read1``)."""
    read1 = getattr(stream, "read1", None)
    return read1(size) if read1 is not None else stream.read(size)


def _split_lines(block: bytes) -> pl.Series:
    """Bytes holding whole lines → one string per line (``\r\n`` too). polars' reader is the fast
    way; it is marked unstable, so this is the one place that calls it."""
    return pl.scan_lines(block).collect().to_series()


def _lines(block: bytes, source: str, first_line_no: int, stats: SourceStats) -> pl.DataFrame:
    try:
        lines = _split_lines(block)
        invalid = False
    except pl.exceptions.ComputeError:  # invalid UTF-8: keep the line, show bad bytes as U+FFFD
        lines = _split_lines(block.decode("utf-8", errors="replace").encode("utf-8"))
        invalid = True
    frame = pl.DataFrame({"line": lines}).select(
        pl.lit(source, dtype=pl.String).alias("source"),
        pl.int_range(first_line_no, first_line_no + pl.len(), dtype=pl.Int64).alias("line_no"),
        pl.col("line"),
    )
    if invalid:
        stats.invalid_utf8 += frame.select(pl.col("line").str.contains("\ufffd", literal=True).sum()).item()
    stats.lines += frame.height
    return frame


def read_lines(
    path: str, stats: SourceStats | None = None, *, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pl.DataFrame]:
    """Yield lines frames for one source (a path, or ``-`` for stdin) as its bytes arrive."""
    stats = stats if stats is not None else SourceStats(path)
    name = "<stdin>" if path == "-" else path
    stream = _open(path)
    pending = bytearray()
    line_no = 1
    try:
        while True:
            try:
                block = _read_some(stream, chunk_bytes)
            except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
                stats.errors.append(f"{name}: read failed after line {line_no - 1}: {exc}")
                break
            if not block:
                break
            cut = block.rfind(b"\n")
            if cut < 0:
                pending += block
                continue
            whole = bytes(pending) + block[: cut + 1] if pending else block[: cut + 1]
            pending[:] = block[cut + 1 :]
            frame = _lines(whole, name, line_no, stats)
            line_no += frame.height
            yield frame
        if pending:
            yield _lines(bytes(pending), name, line_no, stats)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def expand(paths: list[str]) -> list[str]:
    """Paths as given, directories expanded to their files (sorted); ``-`` or nothing means stdin."""
    if not paths:
        return ["-"]
    out: list[str] = []
    for p in paths:
        if p != "-" and os.path.isdir(p):
            out += sorted(str(f) for f in Path(p).rglob("*") if f.is_file())
        else:
            out.append(p)
    return out
