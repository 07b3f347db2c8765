"""What the TUI shows, kept apart from widgets: parsed chunks in, filtered/sorted frames and summaries out.

Chunks arrive from a worker thread while the app runs; the app asks for views at its own pace
(a timer), so an arriving line costs an append, not a redraw. Views are cached per data version.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from meshlog.filters import compile_where
from meshlog.formats.compiler import CompiledFormat
from meshlog.parse import OTHER_SCHEMA, AccessLog, LineCounts
from meshlog.parse.tally import Tally
from meshlog.reports.contract import Summary
from meshlog.reports.state import SummaryState, merge_all, state_of
from meshlog.reports.summary import summary_dict

# The table's columns, in this order, when the format has them (the rest are in the detail view).
TABLE_COLUMNS = (
    "start_time", "response_code", "response_flags", "method", "path", "duration", "upstream_service_time",
    "upstream_cluster", "authority", "pod", "source", "request_id",
)  # fmt: skip


@dataclass
class View:
    """One filtered, sorted frame of requests and how it was made."""

    rows: pl.DataFrame
    where: str
    sort: tuple[str, bool] | None
    total: int  # requests before the filter

    def index_of(self, row: dict[str, Any]) -> int:
        """Where a request (known by source and line) stands in this view; 0 when it is not in it."""
        at = self.rows.select(
            ((pl.col("source") == row.get("source")) & (pl.col("line_no") == row.get("line_no"))).arg_true().first()
        ).item()
        return int(at or 0)


@dataclass
class LogState:
    """Everything parsed so far (thread-safe appends) and the current filter and sort."""

    format: CompiledFormat | None = None
    version: int = 0
    where: str = ""
    sort: tuple[str, bool] | None = None  # (column, descending)
    tally: Tally = field(default_factory=Tally)  # the line accounting of everything added
    connections: int = 0  # ztunnel records seen (Istio ambient): reportable without an Envoy format
    _requests: list[pl.DataFrame] = field(default_factory=list)
    _connection_rows: list[pl.DataFrame] = field(default_factory=list)
    _states: list[SummaryState] = field(default_factory=list)  # one per chunk, merged when a summary is asked
    _sources: set[str] = field(default_factory=set)  # inputs that gave requests
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _all: pl.DataFrame | None = None
    _all_version: int = -1
    _view: View | None = None
    _view_key: tuple[Any, ...] = ()

    def add(self, log: AccessLog | None, tally: Tally | None) -> None:
        """One parsed chunk (None: lines of an input no format fits, only counted) and its tally
        (None when ``tally`` is the stream parser's own, which counts as it parses). Called from the
        reading thread."""
        with self._lock:
            if log is not None:
                self.format = self.format or log.format
                if log.requests.height:
                    self._requests.append(log.requests)
                    self._sources.update(log.requests["source"].unique().to_list())
                if log.requests.height or log.connections.height:
                    self._states.append(state_of(log.requests).with_connections(log.connections))
                    self.connections += log.connections.height
                if log.connections.height:
                    self._connection_rows.append(log.connections)
            if tally is not None:
                self.tally.merge(tally)
            self.version += 1

    @property
    def lines(self) -> LineCounts:
        return self.tally.counts

    def requests(self) -> pl.DataFrame:
        """All requests so far as one frame (re-joined only when new chunks came)."""
        with self._lock:
            if self._all_version != self.version:
                parts = self._requests
                self._all = pl.concat(parts, how="diagonal_relaxed", rechunk=False) if parts else pl.DataFrame()
                self._requests = [self._all] if parts else []
                self._all_version = self.version
            assert self._all is not None
            return self._all

    def connection_rows(self) -> pl.DataFrame:
        """ztunnel's connections so far, in input order (the Connections tab pages them)."""
        with self._lock:
            parts = self._connection_rows
            if len(parts) > 1:
                self._connection_rows = parts = [pl.concat(parts, how="diagonal_relaxed")]
            return parts[0] if parts else pl.DataFrame()

    def log(self) -> AccessLog | None:
        if self.format is None:
            return None
        return AccessLog(self.requests(), self.tally.examples, pl.DataFrame(schema=OTHER_SCHEMA), self.format)

    def merged(self) -> SummaryState:
        """The summary state of everything read so far: the chunks' states merged, with the line
        accounting (the dashboard reads counts, never the rows the table pages through)."""
        with self._lock:
            merged = merge_all(self._states)
            self._states = [merged]
            tally = Tally()
            tally.merge(self.tally)  # a copy: the reading thread goes on counting into its own
        return merged.with_tally(tally)

    @property
    def reportable(self) -> bool:
        """Is there anything to summarise: an Envoy format known, or ztunnel's connections?"""
        return self.format is not None or self.connections > 0

    def summary(self, top: int = 25) -> Summary | None:
        """The same report ``summarize`` prints, for everything read so far."""
        if not self.reportable:
            return None
        return summary_dict(self.merged(), self.format, top=top)

    def set_filter(self, where: str) -> None:
        """Check ``where`` against the columns now (raises ``FilterError`` with the column) and keep it."""
        requests = self.requests()
        if where.strip() and requests.width:
            compile_where(where, requests.schema)
        self.where = where.strip()

    def toggle_sort(self, column: str) -> None:
        """First click sorts descending (slowest, latest, largest first), the next ascending, then off."""
        if self.sort is None or self.sort[0] != column:
            self.sort = (column, True)
        elif self.sort[1]:
            self.sort = (column, False)
        else:
            self.sort = None

    def view(self) -> View:
        requests = self.requests()
        key = (self.version, self.where, self.sort)
        if self._view is not None and self._view_key == key:
            return self._view
        rows = requests
        if self.where and rows.width:
            rows = rows.filter(compile_where(self.where, rows.schema))
        if self.sort and self.sort[0] in rows.columns:
            rows = rows.sort(self.sort[0], descending=self.sort[1], nulls_last=True, maintain_order=True)
        self._view = View(rows, self.where, self.sort, requests.height)
        self._view_key = key
        return self._view

    def table_columns(self) -> list[str]:
        """The table's columns: those the format has, and the source only when there are several."""
        columns = self.requests().columns
        return [c for c in TABLE_COLUMNS if c in columns and (c != "source" or len(self._sources) > 1)]
