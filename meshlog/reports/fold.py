"""Input of any size folded into one summary state: a state per parsed chunk, merged as chunks come.

``chunk`` runs in the parse workers beside the parsing (``pipeline.parse_paths(then=…)``): it applies
``--where`` and an ISO ``--since`` / ``--until`` and builds the chunk's state, so only counts cross
to the reader. A window that counts back from the last request (``--since 15m``) is decided by
``reports.window.Settling`` instead, which needs the chunk's rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import polars as pl

from meshlog.filters import bounds, in_window, is_relative, time_filter
from meshlog.parse import AccessLog
from meshlog.reports.state import SummaryState, empty_state, merge_all, state_of
from meshlog.reports.window import Settling

MERGE_EVERY = 32  # chunk states held before they are merged into one


class Folded:
    """The summary state of everything folded in so far, and the ``--since`` / ``--until`` window."""

    def __init__(
        self,
        times: tuple[str | None, str | None] = (None, None),
        by: str | None = None,
        keep: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
        keep_l4: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    ) -> None:
        since, until = times
        self.times, self.by, self.keep, self.keep_l4 = times, by, keep, keep_l4
        self.dims: tuple[str, ...] = (by,) if by else ()
        relative = is_relative(since) or is_relative(until)
        self._in_time = None if relative else time_filter(since, until)
        self._settling = Settling(since, until, by=by) if relative else None
        self._states: list[SummaryState] = []
        self._l4_rows: list[pl.DataFrame] = []  # relative window: connections until it is known

    def chunk(self, log: AccessLog) -> SummaryState | tuple[pl.DataFrame, pl.DataFrame]:
        """One parsed chunk as what ``add`` takes: its state, or (relative window) its requests and
        connections. Pure: parse workers call it."""
        rows = log.requests if self.keep is None else self.keep(log.requests)
        connections = log.connections if self.keep_l4 is None else self.keep_l4(log.connections)
        if self._settling is not None:
            return rows, connections
        if self._in_time is not None:
            rows = self._in_time(rows)
            since, until = self.times
            connections = connections.filter(in_window(*bounds(since, until, None), column="timestamp"))
        return state_of(rows, by=self.by).with_connections(connections)

    def add(self, piece: SummaryState | tuple[pl.DataFrame, pl.DataFrame]) -> None:
        """Fold one ``chunk`` result in (in the reading thread)."""
        if isinstance(piece, tuple):
            assert self._settling is not None
            rows, connections = piece
            self._settling.add(rows)
            if connections.height:  # one row per connection, few: they wait for the window whole
                self._l4_rows.append(connections)
            return
        self._states.append(piece)
        if len(self._states) >= MERGE_EVERY:
            self._states = [merge_all(self._states)]

    @property
    def state(self) -> SummaryState:
        if self._settling is not None:
            state = self._settling.finish()[0]
            if not self._l4_rows:
                return state
            start, end = self.window
            connections = pl.concat(self._l4_rows, how="diagonal_relaxed")
            return state.with_connections(connections.filter(in_window(start, end, column="timestamp")))
        self._states = [merge_all(self._states)] if self._states else [empty_state(self.by)]
        return self._states[0]

    @property
    def window(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """``--since`` / ``--until`` as the times they stood for: a duration counts back from the last
        request (from the last connection when only ztunnel's records came)."""
        if self._settling is not None:
            if self._settling.latest is None and self._l4_rows:
                latest = max(f["timestamp"].max() for f in self._l4_rows)  # type: ignore[type-var]
                return bounds(*self.times, latest)  # type: ignore[arg-type]
            return self._settling.finish()[1:]
        since, until = self.times
        return bounds(since, until, None) if since or until else (None, None)
