"""Bytes in → lines frames out (``source, line_no, line``), chunk by chunk, in bounded memory.

Files (plain, ``.gz``, ``.zst``), directories, globs and stdin are read in blocks; each block
is cut at its last newline and split into lines by polars. Reading a pipe returns whatever
has arrived, so ``kubectl logs -f | meshlog parse -`` sees rows before EOF. Nothing is
dropped: invalid UTF-8 is kept (as U+FFFD) and counted; a line longer than
``MAX_LINE_BYTES`` is cut to that length, counted and named, and memory stays bounded
however long it is. Kubernetes node paths (``/var/log/pods/…``, ``/var/log/containers/…``)
give ``pod``, ``namespace`` and ``container`` columns.
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
import zstandard
from zstandard import ZstdError

from meshlog.batching import MAX_WAIT, READ_BYTES, Gatherer
from meshlog.errors import InputError
from meshlog.kubernetes import path_metadata  # kubelet's node paths (sources.path_metadata still works)

_READ_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, OSError, ZstdError)
CHUNK_BYTES = 8 << 20
MAX_LINE_BYTES = 1 << 20
LINES_SCHEMA = {"source": pl.String, "line_no": pl.Int64, "line": pl.String}


@dataclass
class SourceStats:
    """What reading one source noticed: lines, invalid UTF-8, over-long lines, read errors."""

    name: str
    lines: int = 0
    invalid_utf8: int = 0
    too_long: list[int] = field(default_factory=list)  # line numbers cut to MAX_LINE_BYTES
    errors: list[str] = field(default_factory=list)
    bytes_read: int = 0  # bytes taken from the source (decompressed for .gz / .zst)


def unreadable_reason(path: str) -> str | None:
    """Why ``path`` cannot be read (in ``_open``'s words), or None: for checks before a screen opens."""
    if path == "-":
        return None
    try:
        _open(path).close()
    except InputError as exc:
        return str(exc)
    return None


def _open(path: str, stdin: BinaryIO | None = None) -> BinaryIO:
    if path == "-":
        return stdin or sys.stdin.buffer
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    if not raw.seekable():  # a named pipe, <(kubectl logs …): sniffed as it is read (``LineReader``)
        return raw
    magic = raw.read(4)
    raw.seek(0)
    return _decompressing(path, magic, raw)


GZIP, ZSTD = b"\x1f\x8b\x08", b"\x28\xb5\x2f\xfd"  # gzip: magic + deflate, its only method


def _decompressing(path: str, magic: bytes, raw: BinaryIO) -> BinaryIO:
    """``raw`` itself, or its decompressed bytes when it starts like gzip or zstd."""
    if magic[:3] == GZIP:
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if magic[:4] == ZSTD:
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True, read_across_frames=True)  # type: ignore[return-value]
    return raw


class _Rewound(io.RawIOBase):
    """A stream that cannot seek, with the bytes read to sniff it put back in front."""

    def __init__(self, head: bytes, read: Callable[[int], bytes]) -> None:
        self._head = head
        self._read = read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if self._head:
            data, self._head = (self._head, b"") if size < 0 or size >= len(self._head) else (
                self._head[:size], self._head[size:])  # fmt: skip
            return data
        return self._read(size if size > 0 else READ_BYTES)


def _sniffed(path: str, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """For a pipe (stdin, a FIFO): look at its first bytes, and read it decompressed if they say gzip or
    zstd (``gzip -c f | meshlog summarize``); either way nothing read is lost."""
    head = b""
    while len(head) < 4:
        more = read(READ_BYTES)
        if not more:
            break
        head += more
    stream = _Rewound(head, read)
    inner = _decompressing(path, head, stream)  # type: ignore[arg-type]
    return stream.read if inner is stream else (lambda size: _read_some(inner, size))


def _reader(stream: BinaryIO) -> Callable[[int], bytes]:
    """How the reading thread reads ``stream``. A pipe or terminal is read on its descriptor: a
    buffered reader's lock held by that (daemon) thread would abort the interpreter's exit while
    the source is still open (``--by pod`` stopping early on ``kubectl logs -f``)."""
    if isinstance(stream, io.BufferedReader) and not stream.seekable():
        try:
            fd = stream.fileno()
        except (OSError, io.UnsupportedOperation):
            fd = -1
        if fd >= 0:  # meshlog reads nothing of it before: no byte sits in the buffer
            return lambda size: os.read(fd, size)
    return lambda size: _read_some(stream, size)


def _read_some(stream: BinaryIO, size: int) -> bytes:
    """Read up to ``size`` bytes, returning early with what a pipe has (``read1``)."""
    read1 = getattr(stream, "read1", None)
    return read1(size) if read1 is not None else stream.read(size)


# What polars' line reader takes for compressed input (and would decompress or fail on): gzip, zlib,
# zstd. A block of text may start so (``x^ …`` is a zlib header): such first lines are split off.
_LOOKS_COMPRESSED = re.compile(rb"\A(?:\x1f\x8b|x[\x01\x5e\x9c\xda]|\x28\xb5\x2f\xfd)")


def _split_lines(block: bytes) -> pl.Series:
    """Bytes holding whole lines → one string per line (``\\r\\n`` too). polars' reader is the fast
    way; it is marked unstable, so this is the one place that calls it. It sniffs compression from
    the first bytes, so lines that start like a compressed stream are split off in Python first."""
    heads: list[str] = []
    while _LOOKS_COMPRESSED.match(block):
        cut = block.find(b"\n")
        line, block = (block, b"") if cut < 0 else (block[:cut], block[cut + 1 :])
        try:
            heads.append(line.removesuffix(b"\r").decode("utf-8"))
        except UnicodeDecodeError:
            raise pl.exceptions.ComputeError("invalid utf-8 sequence") from None
    rest = pl.scan_lines(block).collect().to_series() if block else pl.Series("line", [], dtype=pl.String)
    return pl.concat([pl.Series("line", heads, dtype=pl.String), rest]) if heads else rest


def _lines(block: bytes, source: str, first_line_no: int, stats: SourceStats, meta: dict[str, str]) -> pl.DataFrame:
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
        *(pl.lit(v, dtype=pl.String).alias(k) for k, v in meta.items()),
    )
    if invalid:
        stats.invalid_utf8 += frame.select(pl.col("line").str.contains("\ufffd", literal=True).sum()).item()
    long = frame.filter(pl.col("line").str.len_bytes() > MAX_LINE_BYTES)
    if long.height:
        stats.too_long += long["line_no"].to_list()
        frame = frame.with_columns(
            pl.when(pl.col("line").str.len_bytes() > MAX_LINE_BYTES)
            .then(pl.col("line").str.slice(0, MAX_LINE_BYTES // 4))  # chars: at most MAX_LINE_BYTES bytes
            .otherwise(pl.col("line"))
        )
    stats.lines += frame.height
    return frame


def read_lines(
    path: str, stats: SourceStats | None = None, *, chunk_bytes: int | None = None, stdin: BinaryIO | None = None
) -> Iterator[pl.DataFrame]:
    """Yield lines frames for one source (a path, or ``-`` for stdin) as its bytes arrive.

    ``stdin`` replaces ``sys.stdin`` for ``-`` (the TUI reads piped data from another descriptor,
    because the terminal's keys must come in on fd 0)."""
    reader = LineReader(path, stats, chunk_bytes=chunk_bytes, stdin=stdin)
    yield from reader


class LineReader:
    """One source's lines frames, read (and decompressed) on a thread of its own and batched by
    size or time (``meshlog.batching``): a pipe is parsed in blocks as large as a file's, and a
    live one still hands over what came within ``MAX_WAIT``. ``paused`` says whether the last
    frame closed because the source had nothing more to give yet."""

    def __init__(
        self,
        path: str,
        stats: SourceStats | None = None,
        *,
        chunk_bytes: int | None = None,
        stdin: BinaryIO | None = None,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.path = path
        self.stats = stats if stats is not None else SourceStats(path)
        self.name = "<stdin>" if path == "-" else path
        self.paused = False
        self._chunk = chunk_bytes or CHUNK_BYTES
        self._stdin = stdin
        self._max_wait = max_wait
        self._gatherer: Gatherer | None = None

    @property
    def idle(self) -> bool:
        """Nothing read ahead: the next frame waits on the source (so parse what is in hand now)."""
        return self._gatherer is None or self._gatherer.idle

    def __iter__(self) -> Iterator[pl.DataFrame]:
        path, stats, name = self.path, self.stats, self.name
        meta = path_metadata(path) if path != "-" else {}
        stream = _open(path, self._stdin)
        read = _reader(stream)
        if not stream.seekable():  # a pipe: compressed or not, it says in its first bytes
            try:
                read = _sniffed(path, read)
            except _READ_ERRORS as exc:
                stats.errors.append(f"{name}: read failed before line 1: {exc}")
                return
        gatherer = self._gatherer = Gatherer(read, max_bytes=self._chunk, max_wait=self._max_wait)
        pending = bytearray()
        skipping = False  # inside a line already cut at MAX_LINE_BYTES: drop bytes up to its newline
        line_no = 1
        batches = iter(gatherer)
        try:
            while True:
                try:
                    batch = next(batches, None)
                except _READ_ERRORS as exc:
                    stats.errors.append(f"{name}: read failed after line {line_no - 1 + bool(pending)}: {exc}")
                    break
                if batch is None:
                    break
                self.paused = batch.paused
                block = batch.blocks[0] if len(batch.blocks) == 1 else b"".join(batch.blocks)
                stats.bytes_read += len(block)
                cut = block.rfind(b"\n")
                if skipping:
                    first = block.find(b"\n")
                    if first < 0:
                        continue
                    skipping = False
                    block = block[first + 1 :]
                    cut = block.rfind(b"\n")
                    line_no += 1  # the cut line itself was emitted when the cap was hit
                if cut < 0:
                    pending += block
                    if len(pending) > MAX_LINE_BYTES:  # one endless line: emit its head, skip the rest
                        frame = _lines(bytes(pending[:MAX_LINE_BYTES]) + b"\n", name, line_no, stats, meta)
                        stats.too_long.append(line_no)
                        pending.clear()
                        skipping = True
                        yield frame
                    continue
                whole = b"".join((pending, memoryview(block)[: cut + 1]))  # one copy, not a slice and a concat
                pending[:] = block[cut + 1 :]
                frame = _lines(whole, name, line_no, stats, meta)
                line_no += frame.height
                yield frame
            if pending:
                self.paused = False
                yield _lines(bytes(pending), name, line_no, stats, meta)
        finally:
            gatherer.close()
            if path != "-":
                gatherer.join(1.0)
                stream.close()


def expand(paths: list[str]) -> list[str]:
    """Paths as given: directories become their files (sorted), globs their matches; none means stdin."""
    if not paths:
        return ["-"]
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
        elif os.path.isdir(p):
            out += sorted(str(f) for f in Path(p).rglob("*") if f.is_file())
        elif not os.path.exists(p) and glob.has_magic(p):
            out += sorted(glob.glob(p, recursive=True)) or [p]  # no match: reported as missing
        else:
            out.append(p)
    return out
