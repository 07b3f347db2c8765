"""Collector records (fluentd / fluent-bit) → lines frames: the log line and where it came from.

Which key holds the line, how partial CRI chunks are joined and how the tag names the pod
follow ``../shared/reference/input-streams.md`` §3, §4 and §7, as ``meshlog.kubernetes`` defines
them for the unwrapper too. Reading each record's keys is per-record Python work (it comes out
of msgpack one record at a time); everything after that (joining ``P`` chains with
``kubernetes.join_partials``, the unwrapper's join too; trailing newline, tag →
pod/namespace/container, times, line numbers) is done by polars on whole columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import polars as pl

from meshlog.forward.protocol import Event
from meshlog.kubernetes import (
    COLLECTOR_KEYS,
    KUBERNETES_KEYS,
    MESSAGE_KEYS,
    join_partials,
    record_partial,
    tag_metadata,
)

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
    "partial": pl.Boolean(),
}
_KEY = ("tag", "stream")  # a `P` chain goes on in the next record of the same tag and stream


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


class LineAssembler:
    """Events → lines frames, with state across batches: line numbers per source, open `P` chains.

    ``source`` is ``forward:<tag>``; ``line_no`` counts from 1 per source. Records tagged
    partial (``_p``/``logtag`` == ``P``, ``kubernetes.record_partial``) are joined per (tag, stream) with
    the chunks that follow until the one that is not partial (``kubernetes.join_partials``, over the
    batch with the records of the chains still open before it); a chain still open at the end of a
    batch is held for the next. ``flush()`` hands over chains still open.
    """

    def __init__(self, *, max_partial_bytes: int = MAX_PARTIAL_BYTES) -> None:
        self.max_partial_bytes = max_partial_bytes
        self.invalid_utf8 = 0  # lines that held bytes that are not UTF-8 (kept as U+FFFD)
        self.cut_partials = 0  # `P` chains handed over unfinished because they grew too long
        self._next_line: dict[str, int] = {}
        self._held = pl.DataFrame(schema=_RAW_SCHEMA)  # the records of the chains still open
        self._open = 0

    @property
    def open_partials(self) -> int:
        return self._open

    def lines(self, events: Iterable[Event]) -> pl.DataFrame:
        """The lines frame for these events (records still waiting for their last chunk are held)."""
        rows: list[tuple[str, int, str | None, str | None, str | None, str | None, str, bool]] = []
        for event in events:
            record = event.record
            line, invalid = record_message(record)
            self.invalid_utf8 += invalid
            kube = record.get("kubernetes")
            kube = kube if isinstance(kube, dict) else {}
            rows.append(
                (
                    event.tag,
                    event.time.micros,
                    _str_or_none(record.get("stream")),
                    _str_or_none(kube.get(KUBERNETES_KEYS["pod"])),
                    _str_or_none(kube.get(KUBERNETES_KEYS["namespace"])),
                    _str_or_none(kube.get(KUBERNETES_KEYS["container"])),
                    line,
                    record_partial(record),
                )
            )
        raw = pl.DataFrame(rows, schema=_RAW_SCHEMA, orient="row")
        return self._join(pl.concat([self._held, raw]) if self._held.height else raw, final=False)

    def flush(self) -> pl.DataFrame:
        """Lines for the `P` chains never finished (the stream stopped): kept, not lost."""
        return self._join(self._held, final=True)

    def _join(self, raw: pl.DataFrame, *, final: bool) -> pl.DataFrame:
        """Join the chains of ``raw`` (``kubernetes.join_partials``); hold back the open ones unless ``final``."""
        raw = self._cut(raw.with_row_index("row"))
        joined, unfinished = join_partials(raw, "partial", _KEY)
        self._held, self._open = raw.clear().drop("row"), 0
        if unfinished.len() and not final:
            members = joined.filter(pl.col("row").is_in(unfinished.implode()))["members"].explode()
            self._held = raw.filter(pl.col("row").is_in(members.implode())).drop("row")
            self._open = unfinished.len()
            joined = joined.filter(~pl.col("partial"))
        return self._frame(joined)

    def _cut(self, raw: pl.DataFrame) -> pl.DataFrame:
        """End a chain at the `P` chunk that takes it past ``max_partial_bytes`` (it is let out as it is).

        Counted in ``cut_partials``; the chunks after it start a chain of their own. Only the rare chains
        that grow that long are walked record by record.
        """
        if not raw["partial"].any():
            return raw
        flag = pl.col("partial")
        chain = (~flag.shift(1).over(_KEY).fill_null(False)).cum_sum().over(_KEY).alias("chain")
        size = pl.col("line").str.len_chars().cast(pl.Int64)
        sized = raw.with_columns(chain).with_columns(size.cum_sum().over([*_KEY, "chain"]).alias("size"))
        long = sized.filter(flag & (pl.col("size") > self.max_partial_bytes)).select(*_KEY, "chain").unique()
        if not long.height:
            return raw
        cuts: list[int] = []
        walked = sized.join(long, on=[*_KEY, "chain"], nulls_equal=True).sort("row")
        grown: dict[tuple[object, ...], int] = {}
        for tag, stream, chain_no, row, length, partial in walked.select(
            *_KEY, "chain", "row", size, "partial"
        ).iter_rows():
            at = (tag, stream, chain_no)
            if not partial:
                continue
            grown[at] = grown.get(at, 0) + length
            if grown[at] > self.max_partial_bytes:
                cuts.append(row)
                grown[at] = 0
        self.cut_partials += len(cuts)
        return raw.with_columns(flag & ~pl.col("row").is_in(pl.Series(cuts, dtype=raw.schema["row"]).implode()))

    def _frame(self, raw: pl.DataFrame) -> pl.DataFrame:
        if not raw.height:
            return pl.DataFrame(schema=LINES_SCHEMA)
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
