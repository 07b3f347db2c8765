"""A request table that pages straight from a polars frame (Line API): only visible rows become text.

A million requests cost what the screen shows: each repaint slices the frame at the scroll
offset, so there is no widget (or Python row object) per request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, ClassVar

import polars as pl
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from meshlog.escape import safe
from meshlog.names import IN_MESH

# (narrowest, widest) a column is drawn; the path takes what is left. Columns go, last in DROP first,
# when even the narrowest widths do not fit.
WIDTHS = {
    "start_time": (12, 12), "response_code": (5, 5), "response_flags": (5, 9), "method": (6, 7),
    "path": (12, 80), "duration": (5, 9), "upstream_service_time": (5, 9), "upstream_cluster": (24, 46),
    "authority": (14, 46), "pod": (16, 40), "source": (10, 32), "request_id": (36, 36),
    # ztunnel's connections (the Connections tab); the error takes what is left, as the path does
    "timestamp": (12, 12), "event": (8, 8), "direction": (8, 8), "src_workload": (14, 36),
    "dst_service": (14, 40), "dst_workload": (14, 36), "bytes_sent": (6, 10), "bytes_recv": (6, 10),
    "error": (16, 200),
}  # fmt: skip
FLEX = ("path", "error")  # the column that takes the width left
DROP = ("request_id", "pod", "source", "upstream_service_time", "method", "authority", "response_flags",
        "bytes_recv", "bytes_sent", "event", "dst_workload")  # fmt: skip
GROW = ("duration", "upstream_service_time", "upstream_cluster", "authority", "path", "source", "request_id", "pod",
        "response_flags", "method")  # fmt: skip
HEADINGS = {
    "start_time": "time", "response_code": "code", "response_flags": "flags", "duration": "ms",
    "upstream_service_time": "up ms", "upstream_cluster": "upstream cluster", "request_id": "request id",
    "timestamp": "time", "src_workload": "source", "dst_service": "service", "dst_workload": "destination",
    "bytes_sent": "sent", "bytes_recv": "recv",
}  # fmt: skip
# shown shorter: cluster and authority without the ".svc.cluster.local" every in-mesh name has, the
# source (with several inputs) by its file name
SHORTENED = {"upstream_cluster": (IN_MESH, "$1"), "authority": (IN_MESH, "$1"), "source": (r"^.*/", ""),
             "dst_service": (IN_MESH, "$1")}  # fmt: skip
_HEADER = Style(bold=True, reverse=True)
_CURSOR = Style(reverse=True)
_CODE_STYLES = {"5": Style(color="red", bold=True), "4": Style(color="yellow"), "0": Style(color="magenta")}


def _shown(column: str) -> pl.Expr:
    """A column as the table draws it: the ``SHORTENED`` ones cut, on the page's rows at once."""
    if column not in SHORTENED:
        return pl.col(column)
    return pl.col(column).cast(pl.String).str.replace(*SHORTENED[column]).alias(column)


def cell(value: Any) -> str:
    """A value as table text: times to the millisecond, nothing raw from the log."""
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.strftime("%H:%M:%S.%f")[:-3]
    return safe(value)


def layout(columns: Sequence[str], wanted: dict[str, int], width: int) -> list[tuple[str, int]]:
    """Column widths for a table ``width`` wide: every column at its narrowest, dropping those in
    ``DROP`` order while that does not fit; then each grows towards what its values need
    (``wanted``), the path first; what is left goes to the path."""
    shown = list(columns)
    narrowest = {c: WIDTHS.get(c, (8, 20))[0] for c in shown}

    def used(widths: dict[str, int]) -> int:
        return sum(w + 1 for c, w in widths.items() if c in shown)

    for c in DROP:
        if used(narrowest) <= width:
            break
        if c in shown:
            shown.remove(c)
    widths = {c: narrowest[c] for c in shown}
    for c in [c for c in GROW if c in shown] + [c for c in shown if c not in GROW]:
        need = min(max(wanted.get(c, 0), widths[c]), WIDTHS.get(c, (8, 20))[1])
        widths[c] += max(0, min(need - widths[c], width - used(widths)))
    if flex := next((c for c in FLEX if c in widths), None):
        widths[flex] += max(0, width - used(widths))
    return [(c, widths[c]) for c in shown]


class RequestTable(ScrollView, can_focus=True):
    """Rows of the current view; ↑↓ PgUp PgDn Home End move, Enter opens, a click on a heading sorts."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "up", show=False),
        Binding("down,j", "move(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home,g", "jump(0)", "first", show=False),
        Binding("end,G", "jump(-1)", "last", show=False),
        Binding("enter", "open", "details"),
        Binding("f", "narrow('response_flags')", "same flags"),
        Binding("u", "narrow('upstream_cluster')", "same cluster"),
    ]
    DEFAULT_CSS = "RequestTable { height: 1fr; scrollbar-size-vertical: 1; overflow-x: hidden; }"

    cursor: reactive[int] = reactive(0)
    drills_down: ClassVar[bool] = True  # Enter opens a row, f/u narrow, a heading sorts (requests)

    class Opened(Message):
        """Enter (or a double click) on a row."""

        def __init__(self, row: dict[str, Any]) -> None:
            super().__init__()
            self.row = row

    class NarrowRequested(Message):
        """``f`` / ``u``: only the requests with this row's flags / upstream cluster."""

        def __init__(self, column: str, value: Any) -> None:
            super().__init__()
            self.column = column
            self.value = value

    class SortRequested(Message):
        def __init__(self, column: str) -> None:
            super().__init__()
            self.column = column

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frame = pl.DataFrame()
        self.columns: list[str] = []
        self.sort: tuple[str, bool] | None = None
        self._page: tuple[int, list[list[str]]] = (-1, [])
        self._layout: list[tuple[str, int]] = []
        self._columns_key: tuple[Any, ...] = ()
        self._columns_cache: list[tuple[str, int]] = []
        self._wanted: dict[str, int] = {}

    # -- data ----------------------------------------------------------------------------------

    def show(self, frame: pl.DataFrame, columns: list[str], sort: tuple[str, bool] | None) -> None:
        """Point the table at a new view (cheap: nothing is converted until painted)."""
        self.frame, self.columns, self.sort = frame, columns, sort
        self._page = (-1, [])
        self._wanted = self._measure(frame)
        self._columns_key = ()
        self.virtual_size = Size(1, frame.height + 1)  # +1: the heading line; never wider than the view
        self.cursor = min(self.cursor, max(frame.height - 1, 0))
        self.refresh()

    def _measure(self, frame: pl.DataFrame) -> dict[str, int]:
        """How wide each column's values are (one vectorised pass, so the layout stays put while
        scrolling): numbers by their largest value over every row (the 6-digit durations are the ones
        you sort for), text by its first rows."""
        head = frame.head(500)
        shown = [c for c in self.columns if c in frame.columns and c != "start_time"]
        if not frame.height or not shown:
            return {}

        def width(c: str) -> pl.Expr:
            if frame.schema[c].is_numeric():
                return pl.max_horizontal(pl.col(c).max(), -10 * pl.col(c).min()).cast(pl.String).str.len_chars()
            return _shown(c).cast(pl.String).head(500).str.len_chars().max()

        numbers = [c for c in shown if frame.schema[c].is_numeric()]
        lengths = {
            **(frame.select(width(c).alias(c) for c in numbers).row(0, named=True) if numbers else {}),
            **(head.select(width(c).alias(c) for c in shown if c not in numbers).row(0, named=True)),
        }
        return {c: max(len(HEADINGS.get(c, c)) + 1, n or 1) for c, n in lengths.items()}

    @property
    def at_end(self) -> bool:
        return self.cursor >= self.frame.height - 1

    def current(self) -> dict[str, Any] | None:
        if not self.frame.height:
            return None
        return self.frame.row(self.cursor, named=True)

    # -- painting ------------------------------------------------------------------------------

    def _widths(self) -> list[tuple[str, int]]:
        width = max(self.size.width - 1, 20)  # the scrollbar's column
        key = (width, tuple(self.columns))
        if self._columns_key != key:
            self._columns_key = key
            self._columns_cache = layout(self.columns, self._wanted, width)
        return self._columns_cache

    def _rows(self, first: int, count: int) -> list[list[str]]:
        start, rows = self._page
        if start <= first and first + count <= start + len(rows):
            return rows[first - start : first - start + count]
        page = self.frame.slice(first, count * 2).select(_shown(c) for c in self.columns).rows()  # a screen ahead
        self._page = (first, [[cell(v) for v in row] for row in page])
        return self._page[1][:count]

    def _line(self, texts: Sequence[tuple[str, Style | None]], base: Style | None) -> Strip:
        segments = []
        for (text, style), (_, width) in zip(texts, self._layout, strict=True):
            shown = text[:width].ljust(width) if len(text) <= width else text[: width - 1] + "…"
            segments.append(Segment(shown + " ", (base + style) if base and style else (style or base)))
        return Strip(segments).crop(0, self.size.width)

    def render_line(self, y: int) -> Strip:
        self._layout = self._widths()
        if y == 0:
            names: list[tuple[str, Style | None]] = []
            for c, _ in self._layout:
                mark = "" if not self.sort or self.sort[0] != c else ("▼" if self.sort[1] else "▲")
                names.append((HEADINGS.get(c, c) + mark, None))
            return self._line(names, _HEADER)
        index = int(self.scroll_offset.y) + y - 1
        if index >= self.frame.height:
            return Strip.blank(self.size.width)
        first = int(self.scroll_offset.y)
        row = self._rows(first, max(self.size.height, 1))[index - first]
        texts = []
        for (c, _), text in zip(self._layout, self._ordered(row), strict=True):
            style = _CODE_STYLES.get(text[:1]) if c == "response_code" and text != "-" else None
            texts.append((text, style))
        return self._line(texts, _CURSOR if index == self.cursor else None)

    def _ordered(self, row: list[str]) -> list[str]:
        by_name = dict(zip(self.columns, row, strict=True))
        return [by_name[c] for c, _ in self._layout]

    # -- moving ----------------------------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.call_after_refresh(self._scroll_to_cursor)  # again once a new virtual size is laid out
        self.refresh()

    def _scroll_to_cursor(self) -> None:
        visible = max(self.size.height - 1, 1)
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def action_move(self, delta: int) -> None:
        self.cursor = max(0, min(self.cursor + delta, self.frame.height - 1))

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(self.size.height - 2, 1))

    def action_jump(self, where: int) -> None:
        self.cursor = max(self.frame.height - 1, 0) if where < 0 else 0

    def action_open(self) -> None:
        row = self.current()
        if row is not None and self.drills_down:
            self.post_message(self.Opened(row))

    def action_narrow(self, column: str) -> None:
        row = self.current()
        if row is not None and column in row and self.drills_down:
            self.post_message(self.NarrowRequested(column, row[column]))

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            x = 0
            for column, width in self._layout:
                if x <= event.x < x + width + 1:
                    if self.drills_down:
                        self.post_message(self.SortRequested(column))
                    return
                x += width + 1
            return
        index = int(self.scroll_offset.y) + event.y - 1
        if 0 <= index < self.frame.height:
            self.cursor = index
            if event.chain >= 2:
                self.action_open()


class ConnectionTable(RequestTable):
    """ztunnel's connections (Istio ambient), paged as requests are: browsed, not drilled into."""

    drills_down: ClassVar[bool] = False


CONNECTION_COLUMNS = (
    "timestamp", "event", "src_workload", "dst_service", "dst_workload", "direction",
    "bytes_sent", "bytes_recv", "duration", "error",
)  # fmt: skip
