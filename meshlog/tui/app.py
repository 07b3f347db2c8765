"""``meshlog tui``: the dashboard, the request table, one request in detail, metrics beside the logs.

Reading and parsing run in a worker thread and only append to ``LogState``; a timer redraws at a
steady rate (coalesced, never per line), and the dashboard's summary is computed in a thread too,
so a million rows or a dead Prometheus never freeze the keys.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import polars as pl
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from meshlog.errors import FilterError, MeshlogError
from meshlog.escape import safe
from meshlog.figures import count
from meshlog.filters import flag_filter, quote
from meshlog.metrics.http import Connection
from meshlog.pipeline import FormatOptions, Run, compile_options, parse_paths
from meshlog.reports.contract import Summary
from meshlog.reports.latency import histogram
from meshlog.reports.traffic import errors_filter
from meshlog.tui.detail import DetailScreen
from meshlog.tui.help import HelpScreen
from meshlog.tui.metrics_pane import MetricsPane
from meshlog.tui.panels import Dashboard
from meshlog.tui.state import LogState
from meshlog.tui.table import CONNECTION_COLUMNS, ConnectionTable, RequestTable

TAB_FOCUS = {"dashboard": "#hints", "requests": "#table", "metrics": "#metrics-services",
             "connections": "#connections-table"}  # where keys go, per tab  # fmt: skip
EXPORT_SUFFIX = {"csv": "csv", "ndjson": "ndjson", "json": "json", "parquet": "parquet"}


def time_range(start: str | None, end: str | None) -> str:
    """``2026-11-25 21:21:28.501 → 21:21:29.335 UTC``: to the millisecond (a burst lasts less than a
    second), the date once when both ends share it."""
    if start is None or end is None:
        return "no times"
    a, b = (dt.datetime.fromisoformat(t).isoformat(" ", timespec="milliseconds")[:23] for t in (start, end))
    return f"{a} → {b[11:] if a[:10] == b[:10] else b} UTC"


def inputs_title(paths: list[str]) -> str:
    """The inputs as the title bar can hold them: file names, the first two, then how many more."""
    names = ["stdin" if p == "-" else Path(p).name or p for p in paths]
    return ", ".join(names[:2]) + (f" + {len(names) - 2} more" if len(names) > 2 else "")


def short_range(text: str) -> str:
    """``2026-11-25 21:21:28.501 → 21:21:29.335 UTC`` → ``21:21:28 → 21:21:29``: for a narrow header."""
    parts = text.removesuffix(" UTC").split(" → ")
    if len(parts) != 2:
        return text
    return " → ".join(p.rsplit(" ", 1)[-1][:8] for p in parts)


class MeshlogApp(App[None]):
    """One app for the CLI and the tests (``create_app``)."""

    TITLE = "meshlog"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help"),
        Binding("slash", "focus_filter", "filter"),
        Binding("e", "only_errors", "errors only"),
        Binding("c", "clear_filter", "clear filter"),
        Binding("p", "toggle_pause", "pause"),
        Binding("s", "sort('duration')", "sort by duration"),
        Binding("x", "export('csv')", "export"),
        Binding("1", "tab('dashboard')", "dashboard", show=False),
        Binding("2", "tab('requests')", "requests", show=False),
        Binding("3", "tab('metrics')", "metrics", show=False),
        Binding("4", "tab('connections')", "connections", show=False),
    ]
    CSS = """
    TabbedContent { height: 1fr; }
    TabPane { padding: 0; }
    #totals { height: 1; padding: 0 1; background: $boost; }  /* one line: what matters first */
    #filter { height: 3; }
    #table-status { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(
        self,
        paths: list[str],
        *,
        fmt: FormatOptions | None = None,
        input: str = "auto",
        stdin: BinaryIO | None = None,
        prometheus: Connection | None = None,
        refresh_seconds: float = 1.0,
        export_dir: Path | None = None,
        forward: tuple[str, int] | None = None,
        shared_key: str | None = None,
    ) -> None:
        super().__init__()
        self.forward = forward
        self.shared_key = shared_key
        self.forward_server: Any = None
        self.paths = paths or ([] if forward else ["-"])
        self.live = "-" in self.paths or forward is not None
        self.fmt_opts = fmt or FormatOptions(None, None, None)
        self.input_kind = input
        self.stdin = stdin
        self.prometheus = prometheus
        self.refresh_seconds = refresh_seconds
        self.export_dir = export_dir or Path.cwd()
        self.state = LogState()
        self.paused = False
        self.reading = True
        self.problem: str | None = None
        self._shown: tuple[int, str, tuple[str, bool] | None] = (-1, "", None)  # (version, where, sort) shown
        self._rows_seen = 0  # table height when the user last looked at the end
        self.first_rows_at: float | None = None
        self._summarizing = False
        self._summary_version = -1
        self._summary_at = self._summary_took = 0.0  # when the last summary ended, and how long it took
        self._summary: Summary | None = None
        self._metrics_asked = False
        self._errors_of: tuple[str, str] | None = None  # (filter before `e`, filter `e` made)
        self._paused_at = 0  # requests read when the screen was paused

    # -- layout ------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading…", id="totals")
        with TabbedContent(initial="dashboard"):
            with TabPane("Dashboard [1]", id="dashboard"):
                yield Dashboard()
            with TabPane("Requests [2]", id="requests"), Vertical():
                yield Input(
                    placeholder="filter (Enter): response_code>=500, response_flags~UF and upstream_cluster~reviews",
                    id="filter",
                )
                yield RequestTable(id="table")
                yield Static("", id="table-status")
            with TabPane("Metrics [3]", id="metrics"):
                yield MetricsPane()
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = inputs_title(self.paths)
        if self.forward is not None:
            self.listen_forward()
        if self.paths:
            self.read_inputs()
        else:
            self.reading = self.forward is not None
        self.set_interval(self.refresh_seconds, self.tick)
        self.query_one(f"#dashboard {TAB_FOCUS['dashboard']}").focus()  # keys work from the first moment
        if self.prometheus is not None:
            self.query_one(MetricsPane).show_status(f"asking {self.prometheus.base}…")
            self.set_interval(30, self.fetch_metrics)

    # -- reading (worker thread) -------------------------------------------------------------------

    def read_inputs(self) -> None:
        """Start the reader on a daemon thread: a pipe that never closes (``kubectl logs -f``) must
        not keep the app from quitting, and a Textual worker would be waited for."""
        threading.Thread(target=self._read, name="meshlog-tui-reader", daemon=True).start()

    def listen_forward(self) -> None:
        """Receive fluentd / fluent-bit forward traffic on a background thread for as long as the app runs."""
        from meshlog.forward.server import ForwardServer
        from meshlog.tui.forward import ForwardFeed

        assert self.forward is not None
        feed = ForwardFeed(self.state, compile_options(self.fmt_opts), on_problem=self._forward_problem)
        host, port = self.forward

        def on_lines(lines: pl.DataFrame) -> None:
            try:
                feed(lines)
            except Exception as exc:  # any exception: shown on screen; the receiver goes on
                self._worker_failed("forward", exc)

        try:
            self.forward_server = ForwardServer(
                on_lines, host=host, port=port, shared_key=self.shared_key, on_problem=self._forward_problem
            ).start()
        except MeshlogError as exc:
            self.problem = str(exc)
            self.reading = False
            return
        self.sub_title = f"forward {host}:{self.forward_server.port}"

    def _forward_problem(self, message: str) -> None:
        with contextlib.suppress(RuntimeError):
            self.call_from_thread(self.notify, message, title="forward", severity="warning")

    def _worker_failed(self, what: str, exc: BaseException) -> None:
        """An exception in a background thread: one line in the header and a notice, never lost."""
        self.problem = f"internal error in the {what}: {type(exc).__name__}: {exc}"
        with contextlib.suppress(RuntimeError):  # the app closed meanwhile
            self.call_from_thread(self.notify, self.problem, title=what, severity="error")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Textual workers (summary, metrics) keep their errors to themselves: show them."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.problem = f"internal error in {event.worker.name or 'a worker'}: {type(error).__name__}: {error}"
            self.notify(self.problem, title="error", severity="error")

    def on_unmount(self) -> None:
        if self.forward_server is not None:
            self.forward_server.stop()

    def _read(self) -> None:
        try:
            run = Run(compile_options(self.fmt_opts), input=self.input_kind, stdin=self.stdin)
            self.state.tally = run.tally  # the stream parser counts every line, of any input
            for chunk in parse_paths(self.paths, run, columns=None):
                self.state.add(chunk, None)
            self.state.add(None, None)  # lines that only were counted (start-up lines, no format) show too
            problems = run.errors + list(run.stream.problems.values())
            if problems:
                self.problem = problems[0]
            elif run.format is None and (note := run.stream.no_access_yet()):
                self.problem = note
        except MeshlogError as exc:
            self.problem = str(exc)
        except Exception as exc:  # a bug: on screen, never a silent dead reader
            self._worker_failed("reader", exc)
        finally:
            self.reading = False
            if self.is_running:
                with contextlib.suppress(RuntimeError):  # the app closed meanwhile
                    self.call_from_thread(self.tick)

    # -- redraw (timer, UI thread) -------------------------------------------------------------------

    def tick(self) -> None:
        """Redraw what changed since the last tick; a paused app only updates its counters."""
        if not self.is_running or not isinstance(self.screen, Screen) or not self.query("#totals"):
            return  # starting up or shutting down (a worker's last call can land after the screen went)
        self._show_totals()
        if self.paused:
            return
        key = (self.state.version, self.state.where, self.state.sort)
        if key != self._shown:
            self._show_table()
            self._shown = key
        # a summary of a million rows takes a while: while rows pour in, leave the CPU to the reading and
        # the keys most of the time (every 4 × what the last summary took), never more than once a tick
        due = not self.reading or time.monotonic() - self._summary_at >= 4 * self._summary_took
        if due and self.state.version != self._summary_version and not self._summarizing and self.state.reportable:
            self._summarizing = True
            self.summarize(self.state.version)
        if self.prometheus is not None and self.state.version and not self._metrics_asked:
            self._metrics_asked = True
            self.fetch_metrics()

    def _show_table(self) -> None:
        """A live stream is followed (like ``tail -f``) while the cursor sits on the last row; move
        away and new rows are counted instead of scrolled to."""
        table = self.query_one("#table", RequestTable)
        view = self.state.view()
        was_at_end = table.at_end or not table.frame.height
        table.show(view.rows, self.state.table_columns(), view.sort)
        if self.first_rows_at is None and view.rows.height:
            self.first_rows_at = time.perf_counter()  # for bench/tui.py: time to first rows on screen
        if self.live and was_at_end and not view.sort:
            table.action_jump(-1)
        if table.at_end or not self.live:
            self._rows_seen = view.rows.height
        self._show_table_status()
        self._show_connections()

    def _show_connections(self) -> None:
        """Istio ambient: a Connections tab appears when ztunnel's records come, and pages them."""
        if not self.state.connections:
            return
        if not self.query("#connections-table"):
            pane = TabPane("Connections [4]", ConnectionTable(id="connections-table"), id="connections")
            self.query_one(TabbedContent).add_pane(pane)
            self.call_after_refresh(self._show_connections)  # once the table is mounted
            return
        rows = self.state.connection_rows()
        table = self.query_one("#connections-table", ConnectionTable)
        was_at_end = table.at_end or not table.frame.height
        table.show(rows, [c for c in CONNECTION_COLUMNS if c in rows.columns], None)
        if self.live and was_at_end:  # followed like the requests: the newest in view while at the end
            table.action_jump(-1)

    def _show_table_status(self) -> None:
        table = self.query_one("#table", RequestTable)
        view = self.state.view()
        new = view.rows.height - max(self._rows_seen, table.cursor + 1)
        parts = [f"{view.rows.height:,} of {view.total:,} requests"]
        if view.where:
            parts.append(f"filter: {view.where}")
        if view.sort:
            parts.append(f"sorted by {view.sort[0]} {'↓' if view.sort[1] else '↑'}")
        if new > 0 and not view.sort:
            parts.append(f"▼ {new:,} new row{'s' if new > 1 else ''} (End)")
        self.query_one("#table-status", Static).update(Text(" · ".join(parts)))

    def _show_totals(self) -> None:
        s, lines = self.state, self.state.lines
        status = (
            "PAUSED"
            if self.paused
            else ("LIVE" if self.reading and self.live else "reading" if self.reading else "done")
        )
        text = Text.assemble(
            (f" {status} ", "reverse bold" if status in ("LIVE", "PAUSED") else "reverse"),
            f" {lines.access - s.connections:,} requests",
        )
        if s.connections:  # Istio ambient: ztunnel's records are access lines too (the panel's count, once known)
            l4 = self._summary.get("connections") if self._summary else None
            text.append(f" · {l4['total'] if l4 else s.connections:,} connections")
        if self.paused and lines.access > self._paused_at:
            text.append(f" (+{lines.access - self._paused_at:,} since the pause)", style="yellow")
        if self.problem:  # before the figures: one line, and a narrow terminal cuts its end
            text.append(f" · {safe(self.problem)}", style="bold red")
        summary = self._summary
        narrow = self.size.width < 140  # one line: the figures that matter first, the rest shorter or gone
        if summary:
            over, tr = summary["overview"], summary["time_range"]
            ratio = over["error_ratio"]
            if not summary["requests"] and (l4 := summary.get("connections")):  # a ztunnel log: its figures
                ratio, tr = l4["error_ratio"], l4["time_range"]
            text.append(" · ")
            text.append(f"errors {100 * ratio:.1f}%", style="bold red" if ratio >= 0.05 else "")
            if not narrow:
                text.append(f" · {over['requests_per_s'] or 0:.1f} req/s")
            span_text = time_range(tr["start"], tr["end"])
            text.append(f" · {short_range(span_text) if narrow else span_text}")
        text.append(f" · {lines.unparsed:,} unparsed · {lines.other:,} other")
        if s.format is not None and not narrow:
            text.append(f" · format {safe(s.format.name or 'custom')}")
        self.query_one("#totals", Static).update(text)

    @work(thread=True, exclusive=True, group="summary", exit_on_error=False)
    def summarize(self, version: int) -> None:
        t0 = time.monotonic()
        try:
            summary = self.state.summary()
            shapes: dict[str, list[int]] = {}
            if summary is not None:
                hist = histogram(self.state.merged(), "upstream_cluster")
                shapes = {str(k): list(v) for k, v in hist.iter_rows()}
        finally:
            self._summary_at, self._summary_took = time.monotonic(), time.monotonic() - t0
            self._summarizing = False  # last: a tick that sees it False sees the new timings too
        if summary is not None:
            self.call_from_thread(self._show_summary, summary, shapes, version)

    def _show_summary(self, summary: Summary, shapes: dict[str, list[int]], version: int) -> None:
        self._summary = summary
        self._summary_version = version
        self.query_one(Dashboard).update(summary, shapes)
        self._show_totals()

    # -- filtering, sorting, detail ---------------------------------------------------------------

    def apply_filter(self, where: str, *, keep: dict[str, Any] | None = None) -> bool:
        """Show the requests ``where`` selects, the cursor on the first (or on the ``keep`` row, when
        the new filter still shows it)."""
        try:
            self.state.set_filter(where)
        except FilterError as exc:
            self.notify(str(exc), title="filter", severity="error", timeout=6)
            return False
        self.query_one("#filter", Input).value = self.state.where
        table = self.query_one("#table", RequestTable)
        table.cursor = 0 if keep is None else self.state.view().index_of(keep)
        self._show_table()
        if self.prometheus is not None and self._metrics_asked:
            self.fetch_metrics()  # the metrics tab follows the filter
        self._shown = (self.state.version, self.state.where, self.state.sort)
        return True

    def on_key(self, event: Any) -> None:
        """Esc in the filter bar goes back to the table (the filter stays as it was applied)."""
        if event.key == "escape" and isinstance(self.focused, Input):
            event.stop()
            self.query_one("#table", RequestTable).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter" and self.apply_filter(event.value):
            self.query_one("#table", RequestTable).focus()

    def _filter_and_show(self, where: str) -> bool:
        if not self.apply_filter(where):
            return False
        self.action_tab("requests")
        return True

    def on_dashboard_filter_requested(self, event: Dashboard.FilterRequested) -> None:
        self._filter_and_show(event.where)

    def on_request_table_narrow_requested(self, event: RequestTable.NarrowRequested) -> None:
        """Narrow the filter to the requests sharing the cursor row's cluster, or carrying all of its
        flags (a row without one: those without one)."""
        value = event.value
        if value is None:
            same = f"not {event.column}~."
        elif event.column == "response_flags":  # every flag of the row, in whatever order Envoy printed them
            same = " and ".join(flag_filter(f) for f in str(value).split(","))
        else:
            same = f"{event.column}={quote(str(value))}"
        where = self.state.where
        keep = self.query_one("#table", RequestTable).current()
        self.apply_filter(f"({where}) and {same}" if where else same, keep=keep)

    def on_request_table_sort_requested(self, event: RequestTable.SortRequested) -> None:
        self.action_sort(event.column)

    def on_request_table_opened(self, event: RequestTable.Opened) -> None:
        self.push_screen(DetailScreen(event.row, self.state.requests()))

    def action_sort(self, column: str) -> None:
        self.state.toggle_sort(column)
        self._show_table()
        self._shown = (self.state.version, self.state.where, self.state.sort)

    def action_focus_filter(self) -> None:
        self.action_tab("requests")
        self.query_one("#filter", Input).focus()

    def action_only_errors(self) -> None:
        """Narrow the current filter to the errors among its rows; pressed again, undo just that."""
        where = self.state.where
        if self._errors_of is not None and where == self._errors_of[1]:
            self._filter_and_show(self._errors_of[0])
            self._errors_of = None
            return
        errors = errors_filter(self.state.requests().columns)
        if self._filter_and_show(f"({where}) and ({errors})" if where else errors):
            self._errors_of = (where, self.state.where)

    def action_clear_filter(self) -> None:
        self.apply_filter("")

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self._paused_at = self.state.lines.access
        self.notify("paused: rows keep arriving, the screen holds still" if self.paused else "resumed")
        self.tick()

    def action_tab(self, tab: str) -> None:
        # Focus moves into the new tab first: a focused widget left in a hidden pane hands focus to its
        # neighbour (the filter bar), and the TabbedContent would switch back to that widget's pane.
        if not self.query(f"#{tab}"):
            return  # the Connections tab is there only once ztunnel's records came
        self.query_one(f"#{tab} {TAB_FOCUS[tab]}").focus()
        self.query_one(TabbedContent).active = tab

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_export(self, fmt: str) -> None:
        """Write the filtered rows (what the table shows) to a file in the export directory."""
        from meshlog.export import write_rows

        rows = self.state.view().rows
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.export_dir / f"meshlog-export-{stamp}.{EXPORT_SUFFIX[fmt]}"
        try:
            with path.open("wb") as out:
                write_rows(rows, fmt, out)  # type: ignore[arg-type]
        except OSError as exc:  # a missing or read-only --export-dir: say so, keep the session
            self.notify(f"cannot write {path}: {exc.strerror}", title="export", severity="error", timeout=8)
            return
        self.notify(f"{rows.height:,} rows → {path.resolve()}", title="export", timeout=8)  # where it went, in full

    def get_system_commands(self, screen: Screen[Any]) -> Any:
        """The command palette (ctrl+p): filters, exports, tabs, follow."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Filter: only errors (5xx, 0 with a flag)", "narrows the filter", self.action_only_errors)
        yield SystemCommand("Filter: clear", "show every request", self.action_clear_filter)
        for flag in self._summary["response_flags"] if self._summary else []:
            where = flag_filter(flag["flag"])
            yield SystemCommand(f"Filter: flag {flag['flag']} ({flag['count']})", flag["meaning"],
                                lambda w=where: self._filter_and_show(w))  # fmt: skip
        for fmt in EXPORT_SUFFIX:
            yield SystemCommand(
                f"Export filtered rows as {fmt}", f"into {self.export_dir}", lambda f=fmt: self.action_export(f)
            )
        yield SystemCommand("Pause / resume", "hold the screen while rows keep arriving", self.action_toggle_pause)
        for tab in ("dashboard", "requests", "metrics"):
            yield SystemCommand(f"Show {tab}", f"switch to the {tab} tab", lambda t=tab: self.action_tab(t))

    # -- metrics (worker thread) -------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="metrics", exit_on_error=False)
    def fetch_metrics(self) -> None:
        from meshlog.metrics.compare import fetch_selections, log_selections, log_view, metrics_window
        from meshlog.metrics.prometheus import Prometheus, Selection
        from meshlog.metrics.report import merged_report

        assert self.prometheus is not None
        pane = self.query_one(MetricsPane)
        requests = self.state.requests()
        now = dt.datetime.now(dt.UTC)
        if "start_time" in requests.columns and requests.height and not self.reading:
            start, end = requests.select(
                pl.col("start_time").min().alias("a"), pl.col("start_time").max().alias("b")
            ).row(0)
            start, end, _ = metrics_window(start, end)
        else:  # following a live stream: the last 15 minutes
            start, end = now - dt.timedelta(minutes=15), now
        # the services of the requests the filter selects (filter on a cluster: that service's metrics),
        # asked of both sides as summarize --prometheus asks (compare.log_selections)
        selected = self.state.view().rows
        if self.state.where and not selected.height:
            self.call_from_thread(pane.show_nothing, "no request matches the filter: nothing to ask Prometheus about")
            return
        selections = log_selections(log_view(selected) if selected.height else log_view(pl.DataFrame()))
        if self.state.where and not selections:
            self.call_from_thread(
                pane.show_nothing, "the filtered requests name no mesh service (no outbound|/inbound| cluster)"
            )
            return
        t0 = time.monotonic()
        try:
            frames = fetch_selections(Prometheus(self.prometheus), selections or [Selection("source")], start, end)
        except MeshlogError as exc:
            self.call_from_thread(pane.show_status, f"Prometheus: {exc}", "bold red")
            self.call_from_thread(self.notify, str(exc), title="metrics", severity="warning")
            return
        n = len({svc for sel in selections for svc in sel.services})
        services = count(n, "service")
        scope = f"{services} of the filtered requests" if self.state.where else f"the log's {services}"
        scope += ", reporter " + " + ".join(sel.reporter for sel in selections or [Selection("source")])
        took = time.monotonic() - t0
        self.call_from_thread(
            pane.show_report, merged_report(frames), f"{self.prometheus.base} · {scope} · {took:.1f} s"
        )


def create_app(
    paths: list[str] | None = None,
    *,
    format: str | None = None,
    format_file: str | None = None,
    mesh_config: str | None = None,
    **options: Any,
) -> MeshlogApp:
    """The one way to build the app (the CLI and the tests both call this): the format options as the
    CLI spells them; every other keyword is ``MeshlogApp``'s own (input, stdin, prometheus, …)."""
    return MeshlogApp(list(paths or []), fmt=FormatOptions(format, format_file, mesh_config), **options)
