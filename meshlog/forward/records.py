"""Collector records (fluentd / fluent-bit) → lines frames: the log line and where it came from.

Which key holds the line, how partial CRI chunks are joined and how the tag names the pod
follow ``../shared/reference/input-streams.md`` §3, §4 and §7, as ``meshlog.kubernetes`` defines
them for the unwrapper too. Reading each record's keys is per-record Python work (it comes out
of msgpack one record at a time); everything after that (trailing newline, tag →
pod/namespace/container, times, line numbers) is done by polars on whole columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from meshlog.forward.protocol import Event
from meshlog.kubernetes import COLLECTOR_KEYS, KUBERNETES_KEYS, MESSAGE_KEYS, record_partial, tag_metadata

MAX_PARTIAL_BYTES = 16 << 20  # a `P` chain longer than this is cut into a line (never held forever)

LINES_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "line_no": pl.Int64(),
    "captured_at": pl.Datetime("us", "UTC"),
    "pod": pl.String(),
    "namespace": pl.String(),
    "container": pl.String(),
    "stream": pl.String(),
    "line": pl.String(),
}
_RAW_SCHEMA: dict[str, pl.DataType] = {
    "tag": pl.String(),
    "micros": pl.Int64(),
    "stream": pl.String(),
    "k_pod": pl.String(),
    "k_namespace": pl.String(),
    "k_container": pl.String(),
    "line": pl.String(),
}


def _text(value: Any) -> tuple[str, bool]:
    """A record value as text, and whether it held invalid UTF-8 (kept as U+FFFD)."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
        return text, "\ufffd" in text and "\ufffd".encode() not in value
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # msgpack str with bytes that are not UTF-8 (decoded with surrogateescape)
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), True
    return value, False


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def record_message(record: dict[Any, Any]) -> tuple[str, bool]:
    """The log line a record carries, and whether it held invalid UTF-8.

    The first of ``log``, ``message``, ``MESSAGE``; a record without one (fluent-bit
    ``Merge_Log`` lifts an Istio JSON access line into the record) is the JSON of the record
    minus the collector's keys, compact like Envoy's. Any other record without one gets the
    same treatment, so it is still counted (as *other*) rather than dropped. The trailing
    newline is left on (the frame strips it after partial chunks are joined).
    """
    for key in MESSAGE_KEYS:
        value = record.get(key)
        if value is not None:
            return _text(value)
    rest = {_text(k)[0]: v for k, v in record.items() if k not in COLLECTOR_KEYS}
    return _text(rest)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class _Partial:
    row: tuple[str, int, str | None, str | None, str | None, str | None]  # the first chunk's tag … container
    parts: list[str] = field(default_factory=list)
    size: int = 0


class LineAssembler:
    """Events → lines frames, with state across batches: line numbers per source, open `P` chains.

    ``source`` is ``forward:<tag>``; ``line_no`` counts from 1 per source. Records tagged
    partial (``_p``/``logtag`` == ``P``, ``kubernetes.record_partial``) are held per (tag, stream) and
    joined with the chunks that follow until the one that is not partial. ``flush()`` hands over chains
    still open.
    """

    def __init__(self, *, max_partial_bytes: int = MAX_PARTIAL_BYTES) -> None:
        self.max_partial_bytes = max_partial_bytes
        self.invalid_utf8 = 0  # lines that held bytes that are not UTF-8 (kept as U+FFFD)
        self.cut_partials = 0  # `P` chains handed over unfinished because they grew too long
        self._next_line: dict[str, int] = {}
        self._open: dict[tuple[str, str | None], _Partial] = {}

    @property
    def open_partials(self) -> int:
        return len(self._open)

    def lines(self, events: Iterable[Event]) -> pl.DataFrame:
        """The lines frame for these events (records still waiting for their last chunk are held)."""
        rows: list[tuple[str, int, str | None, str | None, str | None, str | None, str]] = []
        for event in events:
            record = event.record
            line, invalid = record_message(record)
            self.invalid_utf8 += invalid
            kube = record.get("kubernetes")
            kube = kube if isinstance(kube, dict) else {}
            stream = _str_or_none(record.get("stream"))
            row = (
                event.tag,
                event.time.micros,
                stream,
                _str_or_none(kube.get(KUBERNETES_KEYS["pod"])),
                _str_or_none(kube.get(KUBERNETES_KEYS["namespace"])),
                _str_or_none(kube.get(KUBERNETES_KEYS["container"])),
            )
            key = (event.tag, stream)
            partial = record_partial(record)
            held = self._open.get(key)
            if partial:
                if held is None:
                    held = self._open[key] = _Partial(row)
                held.parts.append(line)
                held.size += len(line)
                if held.size > self.max_partial_bytes:
                    del self._open[key]
                    self.cut_partials += 1
                    rows.append((*held.row, "".join(held.parts)))
                continue
            if held is not None:
                del self._open[key]
                rows.append((*held.row, "".join(held.parts) + line))
            else:
                rows.append((*row, line))
        return self._frame(rows)

    def flush(self) -> pl.DataFrame:
        """Lines for the `P` chains never finished (the stream stopped): kept, not lost."""
        rows = [(*held.row, "".join(held.parts)) for held in self._open.values()]
        self._open.clear()
        return self._frame(rows)

    def _frame(self, rows: list[tuple[str, int, str | None, str | None, str | None, str | None, str]]) -> pl.DataFrame:
        if not rows:
            return pl.DataFrame(schema=LINES_SCHEMA)
        raw = pl.DataFrame(rows, schema=_RAW_SCHEMA, orient="row")
        from_tag = tag_metadata(pl.col("tag"))

        def origin(name: str) -> pl.Expr:
            return pl.coalesce(pl.col(f"k_{name}"), from_tag[name]).alias(name)

        frame = raw.select(
            (pl.lit("forward:") + pl.col("tag")).alias("source"),
            pl.int_range(pl.len(), dtype=pl.Int64).over("tag").alias("line_no"),
            pl.col("micros").cast(pl.Datetime("us", "UTC")).alias("captured_at"),
            origin("pod"),
            origin("namespace"),
            origin("container"),
            pl.col("stream"),
            pl.col("line").str.strip_suffix("\n"),
        )
        base = pl.col("source").replace_strict(self._next_line, default=1, return_dtype=pl.Int64)
        frame = frame.with_columns(pl.col("line_no") + base)
        for source, last in frame.group_by("source").agg(pl.col("line_no").max()).iter_rows():
            self._next_line[source] = last + 1
        return frame
