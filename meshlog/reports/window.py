"""``--since`` / ``--until`` as durations (``15m``), in one pass and in the memory of the window alone.

A duration counts back from the last request, which is known only when the input ends. But the
latest request seen so far only grows, so a request older than *latest so far − duration* is
already decided: outside a relative ``--since`` for good, inside a relative ``--until`` for good.
Decided requests go into the summary state as they come; the undecided ones wait as rows (at most
the window's duration of traffic: the last 15 minutes for ``--since 15m``) and are decided at the
end against the last request, to the microsecond, as the row-level filter decided them.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from meshlog.filters import bounds, in_window, is_relative
from meshlog.reports.state import SummaryState, merge_all, state_of


class Settling:
    """Requests through a window that counts back from the last request (see the module docstring)."""

    def __init__(self, since: str | None, until: str | None, *, by: str | None = None) -> None:
        self.since, self.until, self.by = since, until, by
        self.latest: dt.datetime | None = None
        self._held: list[pl.DataFrame] = []
        self._settled: list[SummaryState] = []
        self._done: tuple[SummaryState, dt.datetime | None, dt.datetime | None] | None = None

    def add(self, requests: pl.DataFrame) -> None:
        """One chunk's requests (``--where`` already applied)."""
        if "start_time" not in requests.columns or not requests.height:
            return
        top = requests["start_time"].max()
        if top is not None and (self.latest is None or top > self.latest):  # type: ignore[operator]
            self.latest = top  # type: ignore[assignment]
        if self.latest is None:
            return
        start, end = bounds(self.since, self.until, self.latest)
        rows = requests.filter(pl.col("start_time").is_not_null())
        if start is not None:  # older than the start is out for good (the start only moves later)
            rows = rows.filter(pl.col("start_time") >= start)
        if end is not None and not is_relative(self.until):
            rows = rows.filter(pl.col("start_time") < end)
        if is_relative(self.since) or end is None or not is_relative(self.until):
            decided = pl.lit(not is_relative(self.since))
        else:  # relative --until, ISO or no --since: before the end so far is inside for good
            decided = pl.col("start_time") < end
        held = [*self._held, rows]
        if start is not None:  # held requests the start has passed since are out for good
            held = [h.filter(pl.col("start_time") >= start) for h in held]
        settled = [h.filter(decided) for h in held]
        if sum(s.height for s in settled):
            self._settled.append(state_of(pl.concat(settled, how="diagonal_relaxed"), by=self.by))
        kept = [k for h in held if (k := h.filter(~decided)).height]
        self._held = [pl.concat(kept, how="diagonal_relaxed")] if len(kept) > 1 else kept
        if len(self._settled) > 16:
            self._settled = [merge_all(self._settled)]

    def finish(self) -> tuple[SummaryState, dt.datetime | None, dt.datetime | None]:
        """The state of the requests in the window, and the window's bounds (once the input ended)."""
        if self._done is None:
            start = end = None
            if self.latest is not None:
                start, end = bounds(self.since, self.until, self.latest)
            held = pl.concat(self._held, how="diagonal_relaxed") if self._held else pl.DataFrame()
            rest = [state_of(held.filter(in_window(start, end)), by=self.by)] if held.height else []
            states = [*self._settled, *rest]
            self._done = (merge_all(states) if states else state_of(pl.DataFrame(), by=self.by), start, end)
        return self._done
