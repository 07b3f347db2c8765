"""The TUI driven with Textual's Pilot on real-Envoy fixtures.

Expected values come from the fixtures' expected files (what the lab sent through Envoy), never
from meshlog's own output.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static, TabbedContent

from meshlog.formats.presets import resolve
from meshlog.metrics.http import Connection
from meshlog.parse import AccessLog, parse_lines
from meshlog.sources import read_lines
from meshlog.tui import MeshlogApp, create_app
from meshlog.tui.detail import DetailScreen, request_details
from meshlog.tui.help import HelpScreen
from meshlog.tui.metrics_pane import MetricsPane
from meshlog.tui.table import RequestTable
from tests.conftest import FIXTURES, failed

ISTIO = FIXTURES / "envoy" / "istio"
CHAIN = FIXTURES / "chain"
SIZE = (140, 44)


def expected_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (ISTIO / "expected.jsonl").read_text().splitlines()]


async def until(pilot: Pilot[Any], ready: Callable[[], bool], timeout: float = 15.0) -> None:
    """Let the app run (workers, timers) until ``ready()``."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError("the app did not get there in time")
        await pilot.pause(0.05)


def as_text(renderable: Any) -> str:
    """What a renderable puts on a terminal, without colour codes (so any ESC left came from the data)."""
    out = io.StringIO()
    Console(file=out, width=200, color_system=None, force_terminal=False, legacy_windows=False).print(renderable)
    return out.getvalue()


def table_text(t: RequestTable) -> str:
    return "\n".join("".join(seg.text for seg in t.render_line(y)) for y in range(t.size.height))


def loaded(app: MeshlogApp) -> Callable[[], bool]:
    return lambda: not app.reading and app._summary is not None and app._summary_version == app.state.version


def table(app: MeshlogApp) -> RequestTable:
    return app.query_one(RequestTable)


async def run(app: MeshlogApp, test: Callable[[Pilot[Any]], Awaitable[None]]) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await test(pilot)


def test_dashboard_panels_show_the_fixture() -> None:
    records = expected_records()
    flags = Counter(f for r in records for f in r["response_flags"])
    codes = Counter(r["response_code"] for r in records)

    async def check(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, MeshlogApp)
        await until(pilot, loaded(app))
        flag_panel = app.query_one("#flags", DataTable)
        shown = {str(flag_panel.get_row_at(i)[0]): flag_panel.get_row_at(i)[1] for i in range(flag_panel.row_count)}
        assert shown == dict(flags)
        code_panel = app.query_one("#codes", DataTable)
        assert {
            int(str(code_panel.get_row_at(i)[0])): code_panel.get_row_at(i)[1] for i in range(code_panel.row_count)
        } == dict(codes)
        totals = str(app.query_one("#totals", Static).render())
        assert f"{len(records)} requests" in totals and "0 unparsed · 0 other" in totals and "format istio" in totals
        # keys work from the first moment: the cursor is on the first hint, Enter lists its lines
        assert app.focused is app.query_one("#hints", DataTable)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.query_one(TabbedContent).active == "requests" and app.state.where.startswith("response_flags~")

    asyncio.run(run(create_app([str(ISTIO / "access.log")]), check))


def test_filter_bar_quick_keys_and_panel_rows_filter_the_table() -> None:
    records = expected_records()
    errors = [r for r in records if failed(r)]
    with_uf = [r for r in records if "UF" in r["response_flags"]]

    async def check(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, MeshlogApp)
        await until(pilot, loaded(app))
        await pilot.press("slash")
        await pilot.press(*"response_code>=500", "enter")
        assert table(app).frame.height == len([r for r in records if r["response_code"] >= 500])
        assert app.query_one(TabbedContent).active == "requests"
        await pilot.press("c", "e")
        assert table(app).frame.height == len(errors)
        status = str(app.query_one("#table-status", Static).render())
        only_errors = "response_code>=500 or (response_code=0 and response_flags~.)"
        assert status.startswith(f"{len(errors)} of {len(records)} requests · filter: {only_errors}")
        await pilot.press("slash", *"nope>1", "enter")  # a bad filter is said, and the old one stays
        await pilot.pause(0.1)
        assert app.state.where == only_errors
        assert any("no column 'nope'" in n.message for n in app._notifications)
        assert isinstance(app.focused, Input) and app.focused.value == "nope>1"  # left in the bar, for mending
        app.focused.value = ""
        await pilot.press(*"path~*", "enter")  # so is a bad regex (never a crash)
        await pilot.pause(0.1)
        assert app.state.where == only_errors
        assert any(
            "not a valid regex (repetition operator missing expression)" in n.message for n in app._notifications
        )
        await pilot.press("escape")  # out of the filter bar, back to the table
        await pilot.press("c")
        assert table(app).frame.height == len(records)
        app.query_one("#filter", Input).value = ""
        # on a request, `u` keeps its upstream cluster and `f` its flags, narrowing what is shown
        await pilot.press("2", "home")
        t = table(app)
        t.cursor = next(i for i, r in enumerate(t.frame.iter_rows(named=True)) if r["response_flags"] == "URX,UF")
        current = t.current()
        assert current is not None
        cluster = current["upstream_cluster"]
        await pilot.press("u")
        assert table(app).frame.height == len([r for r in records if r["upstream_cluster"] == cluster])
        await pilot.press("f")
        same = [r for r in records if r["upstream_cluster"] == cluster and {"URX", "UF"} <= set(r["response_flags"])]
        assert table(app).frame.height == len(same) == 2  # the HTTP request and the TCP connection
        assert app.state.where == (
            f"(upstream_cluster='{cluster}') and response_flags~'(^|,)URX(,|$)' and response_flags~'(^|,)UF(,|$)'"
        )
        await pilot.press("c")
        app.query_one("#filter", Input).value = ""
        # `e` narrows what the filter shows to its errors; pressed again it gives the filter back
        await pilot.press("slash", *"upstream_cluster~backend", "enter")
        backend = [r for r in records if "backend" in (r["upstream_cluster"] or "")]
        assert table(app).frame.height == len(backend)
        await pilot.press("e")
        assert table(app).frame.height == len([r for r in backend if failed(r)]) < len(backend)
        assert app.state.where == f"(upstream_cluster~backend) and ({only_errors})"
        await pilot.press("e")
        assert app.state.where == "upstream_cluster~backend" and table(app).frame.height == len(backend)
        await pilot.press("c")
        # the tab keys work from every tab, the request table included (focus goes with the tab)
        tabs = app.query_one(TabbedContent)
        for key, tab in (
            ("1", "dashboard"),
            ("2", "requests"),
            ("3", "metrics"),
            ("2", "requests"),
            ("1", "dashboard"),
        ):
            await pilot.press(key)
            await pilot.pause(0.05)
            assert tabs.active == tab and app.focused is not None and tab in [a.id for a in app.focused.ancestors]
        # what to check comes first: Enter on a hint lists its lines (every UF here is a refused connect)
        hints = app.query_one("#hints", DataTable)
        assert app.focused is hints and "Upstream refuses connections" in str(hints.get_row_at(0)[2])
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.query_one(TabbedContent).active == "requests"
        assert table(app).frame.height == len(with_uf)
        await pilot.press("1")
        # Enter on the dashboard's UF row = only requests whose flags include UF (URX,UF too)
        flags = app.query_one("#flags", DataTable)
        flags.focus()
        row = next(i for i in range(flags.row_count) if str(flags.get_row_at(i)[0]) == "UF")
        flags.move_cursor(row=row)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.query_one(TabbedContent).active == "requests"
        assert table(app).frame.height == len(with_uf)
        assert app.query_one("#filter", Input).value == "response_flags~'(^|,)UF(,|$)'"

    asyncio.run(run(create_app([str(ISTIO / "access.log")]), check))


def test_one_click_on_a_status_code_row_filters() -> None:
    records = expected_records()

    async def check(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, MeshlogApp)
        await until(pilot, loaded(app))
        await pilot.pause(0.1)  # the panel's new rows drawn before the click is aimed at one (under load: not yet)
        codes = app.query_one("#codes", DataTable)
        row = next(i for i in range(codes.row_count) if str(codes.get_row_at(i)[0]) == "503")
        await pilot.click("#codes", offset=(4, 1 + row))  # the heading, then the rows (the border is its box's)
        await pilot.pause(0.1)
        assert app.query_one(TabbedContent).active == "requests"
        assert app.state.where == "response_code=503"
        assert table(app).frame.height == len([r for r in records if r["response_code"] == 503])

    asyncio.run(run(create_app([str(ISTIO / "access.log")]), check))


def test_sort_by_clicking_a_heading_and_by_key() -> None:
    async def check(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, MeshlogApp)
        await until(pilot, loaded(app))
        await pilot.press("2")
        t = table(app)
        x = sum(w + 1 for c, w in t._layout[: [c for c, _ in t._layout].index("response_code")])
        await pilot.click(RequestTable, offset=(x + 1, 0))
        codes = t.frame["response_code"].to_list()
        assert codes == sorted(codes, reverse=True)
        await pilot.press("s")
        durations = t.frame["duration"].to_list()
        assert durations[0] == max(d for d in durations if d is not None)
        assert "sorted by duration ↓" in str(app.query_one("#table-status", Static).render())

    asyncio.run(run(create_app([str(ISTIO / "access.log")]), check))


def test_drill_down_shows_every_hop_of_the_request() -> None:
    chain = json.loads((CHAIN / "expected.json").read_text())
    rid, case = next((k, v) for k, v in chain.items() if v["client"]["response_flags"] == ["URX"])

    async def check(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, MeshlogApp)
        await until(pilot, loaded(app))
        await pilot.press("2")
        t = table(app)
        assert "source" in t.columns  # two inputs: which file a row came from is a column
        assert {str(r["source"]).rsplit("/", 1)[-1] for r in t.frame.iter_rows(named=True)} == {
            "client.log",
            "server.log",
        }
        t.cursor = next(
            i
            for i, r in enumerate(t.frame.iter_rows(named=True))
            if r["request_id"] == rid and r["cluster_direction"] == "outbound"
        )
        await pilot.press("enter")
        await pilot.pause(0.1)
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        plain = as_text(screen.body)
        assert "UpstreamRetryLimitExceeded" in plain and "Retries exhausted" in plain
        hops = [line for line in plain.splitlines() if re.search(r"(client|server)\.log:\d", line)]
        assert len(hops) == case["client_lines"] + case["server_lines"] == 4
        assert [("outbound" in h) for h in hops] == [True, False, False, False]  # the client's call, then 3 attempts
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)

    asyncio.run(run(create_app([str(CHAIN / "client.log"), str(CHAIN / "server.log")]), check))


def test_a_request_id_on_thousands_of_lines_is_capped_not_a_freeze() -> None:
    """A client that reuses one x-request-id puts it on every line: the detail view draws the first
    hops and says how many share it, in well under a second."""
    fmt = resolve("istio")
    log = AccessLog.concat([parse_lines(c, fmt) for c in read_lines(str(ISTIO / "access.log"))], fmt).requests
    first = log.row(0, named=True)
    many = pl.concat([log.head(1)] * 5000).with_columns(pl.int_range(pl.len()).alias("line_no"))
    t0 = time.perf_counter()
    text = as_text(request_details(first, many))
    assert time.perf_counter() - t0 < 2.0
    assert "5,000 lines share this id; the first 50 in time order:" in text
    assert len([line for line in text.splitlines() if "access.log:" in line]) == 50
    tcp = log.filter(pl.col("request_id").is_null()).row(0, named=True)  # the lab's TCP connections
    assert "this line has no request id (Envoy logged -: a TCP connection, or no header)" in as_text(
        request_details(tcp, log)
    )


def test_follow_a_slow_pipe_with_pause_and_new_rows_indicator() -> None:
    lines = (ISTIO / "access.log").read_bytes().splitlines(keepends=True)
    read_fd, write_fd = os.pipe()
    stdin = os.fdopen(read_fd, "rb", buffering=0)
    writer = os.fdopen(write_fd, "wb", buffering=0)
    app = create_app(["-"], format="istio", stdin=stdin, refresh_seconds=0.1)

    async def check(pilot: Pilot[Any]) -> None:
        try:
            await follow(pilot)
        finally:
            if not writer.closed:
                writer.close()

    def shows(n: int) -> Callable[[], bool]:
        return lambda: table(app).frame.height == n

    async def follow(pilot: Pilot[Any]) -> None:
        assert isinstance(pilot.app, MeshlogApp)
        await pilot.press("2")
        for n in (1, 2, 3):  # each line shows up before the next is even written
            writer.write(lines[n - 1])
            await until(pilot, shows(n))
        assert "LIVE" in str(app.query_one("#totals", Static).render())
        await pilot.press("home")  # look at the top: new rows are announced, not scrolled to
        writer.write(lines[3])
        await until(pilot, lambda: table(app).frame.height == 4)
        assert "▼ 1 new row (End)" in str(app.query_one("#table-status", Static).render())
        await pilot.press("p")
        writer.write(b"".join(lines[4:8]))
        await until(pilot, lambda: app.state.lines.access == 8)
        await pilot.pause(0.3)
        assert table(app).frame.height == 4  # paused: rows arrive, the screen holds
        totals = str(app.query_one("#totals", Static).render())
        assert "PAUSED" in totals and "8 requests (+4 since the pause)" in totals
        await pilot.press("p")
        await until(pilot, lambda: table(app).frame.height == 8)
        await pilot.press("end")
        writer.write(b"".join(lines[8:]))
        writer.close()
        await until(pilot, lambda: not app.reading and table(app).frame.height == len(lines))
        assert table(app).cursor == len(lines) - 1  # at the end, the table follows
        assert "done" in str(app.query_one("#totals", Static).render())

    try:
        asyncio.run(run(app, check))
    finally:
        if not writer.closed:
            writer.close()


def test_dead_prometheus_is_a_notice_not_a_freeze() -> None:
    app = create_app([str(ISTIO / "access.log")], prometheus=Connection("http://127.0.0.1:1", timeout=1))

    async def check(pilot: Pilot[Any]) -> None:
        await until(pilot, loaded(app))
        pane = app.query_one(MetricsPane)
        await until(pilot, lambda: "connection refused" in str(pane.query_one("#metrics-status", Static).render()))
        assert str(pane.query_one("#metrics-status", Static).render()) == (
            "Prometheus: http://127.0.0.1:1: connection refused (is the port-forward / Prometheus running?)"
        )
        await pilot.press("2")  # keys still work
        assert app.query_one(TabbedContent).active == "requests"

    asyncio.run(run(app, check))


def test_export_writes_the_filtered_rows(tmp_path: Path) -> None:
    records = expected_records()
    app = create_app([str(ISTIO / "access.log")], export_dir=tmp_path)

    notices: list[str] = []

    async def check(pilot: Pilot[Any]) -> None:
        await until(pilot, loaded(app))
        await pilot.press("e", "x")
        await pilot.pause(0.1)
        notices.extend(n.message for n in app._notifications)

    asyncio.run(run(app, check))
    (written,) = tmp_path.glob("meshlog-export-*.csv")
    assert any(str(written.resolve()) in n for n in notices), notices  # the notice says where it went
    rows = pl.read_csv(written)
    assert rows.height == len([r for r in records if failed(r)])
    want = {r["request_id"] for r in records if failed(r)}
    assert set(rows["request_id"].to_list()) == want


def test_an_export_that_cannot_be_written_is_a_notice(tmp_path: Path) -> None:
    app = create_app([str(ISTIO / "access.log")], export_dir=tmp_path / "no" / "such")

    async def check(pilot: Pilot[Any]) -> None:
        await until(pilot, loaded(app))
        await pilot.press("x")
        await pilot.pause(0.1)
        assert app.is_running
        assert any(n.message.startswith(f"cannot write {tmp_path / 'no' / 'such'}/") for n in app._notifications)

    asyncio.run(run(app, check))


def test_escape_sequences_in_fields_never_reach_the_terminal(tmp_path: Path) -> None:
    line = (ISTIO / "access.log").read_text().splitlines()[0]
    evil = line.replace("meshlog-case/ok", "x\x1b]0;pwned\x07\x1b[2J").replace('"GET /ok ', '"GET /ok\x1b[31m ')
    log = tmp_path / "evil.log"
    log.write_text(evil + "\n")
    app = create_app([str(log)], format="istio")

    async def check(pilot: Pilot[Any]) -> None:
        await until(pilot, loaded(app))
        await pilot.press("2")
        await pilot.pause(0.1)
        screen = table_text(table(app))
        assert "\x1b" not in screen and "/ok\\x1b[31m" in screen
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, DetailScreen)
        detail = as_text(app.screen.body)
        assert "x\\x1b]0;pwned\\x07\\x1b[2J" in detail and "\x1b" not in detail and "\x07" not in detail

    asyncio.run(run(app, check))


def test_help_screen_and_command_palette() -> None:
    async def check(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await until(pilot, loaded(app))  # type: ignore[arg-type]
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert "Filter: only errors (5xx, 0 with a flag)" in commands and "Export filtered rows as parquet" in commands
        assert "Filter: flag URX (3)" in commands
        await pilot.press("2")
        for tab in ("dashboard", "metrics", "requests", "dashboard"):  # the palette's tab commands, from any tab
            commands[f"Show {tab}"].callback()
            await pilot.pause(0.05)
            assert app.query_one(TabbedContent).active == tab

    asyncio.run(run(create_app([str(ISTIO / "access.log")]), check))


class _TableOnly(App[None]):
    def compose(self) -> ComposeResult:
        yield RequestTable()


def test_columns_are_as_wide_as_their_values() -> None:
    """Numbers by their largest value anywhere (the slow outlier sits last), text by its first rows;
    the mesh suffix is not counted, since it is not drawn."""
    from meshlog.tui.table import layout

    frame = pl.DataFrame(
        {
            "response_code": [200] * 999 + [503],
            "duration": [3] * 999 + [247514],
            "upstream_cluster": ["outbound|9080|v1|reviews.default.svc.cluster.local"] * 1000,
            "path": ["/ok"] * 1000,
        }
    )
    t = RequestTable()
    t.columns = list(frame.columns)
    wanted = t._measure(frame)
    assert wanted["duration"] == len("247514") and wanted["upstream_cluster"] == len("outbound|9080|v1|reviews.default")
    widths = dict(layout(t.columns, wanted, 80))
    assert widths["duration"] == 6 and widths["upstream_cluster"] == len("outbound|9080|v1|reviews.default")
    assert sum(w + 1 for w in widths.values()) == 80  # what is left goes to the path


def test_a_million_rows_page_from_the_frame() -> None:
    """Only the visible rows become text: the table holds no per-row objects."""
    base = pl.DataFrame({"response_code": [200, 503], "path": ["/a", "/b"], "duration": [1, 2]})
    big = pl.concat([base] * 500_000)

    async def check(pilot: Pilot[Any]) -> None:
        t = pilot.app.query_one(RequestTable)
        t.show(big, ["response_code", "path", "duration"], None)
        t.focus()
        await pilot.press("end")
        await pilot.pause(0.1)
        assert t.cursor == 999_999
        start, rows = t._page
        assert len(rows) <= 2 * SIZE[1] and start > 999_000
        assert table_text(t).splitlines()[-1].startswith("503   /b")

    async def main() -> None:
        async with _TableOnly().run_test(size=SIZE) as pilot:
            await check(pilot)

    asyncio.run(main())


def test_follow_forward_traffic_from_a_real_fluent_client() -> None:
    """fluent-logger (PyPI) sends kubectl-plain lines as fluentd records; rows appear while it sends."""
    from fluent import sender

    from tests.forward.support import K8S_TAG, SAMPLES

    lines = (SAMPLES / "kubectl-plain.log").read_text().splitlines()
    app = create_app(forward=("127.0.0.1", 0), refresh_seconds=0.1)

    async def check(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.forward_server is not None)
        client = sender.FluentSender(K8S_TAG, host="127.0.0.1", port=app.forward_server.port, nanosecond_precision=True)
        half = next(i for i, line in enumerate(lines) if line.startswith("[")) + 3  # start-up noise, then 3 requests
        try:
            for i, line in enumerate(lines[:half]):
                assert client.emit_with_time(None, 1719556871.25 + i, {"log": line + "\n", "stream": "stdout"})
            await until(pilot, lambda: app.state.lines.total == half)  # the format was detected on the way
            assert app.state.lines.access == 3 and "LIVE" in str(app.query_one("#totals", Static).render())
            for i, line in enumerate(lines[half:], start=half):
                assert client.emit_with_time(None, 1719556871.25 + i, {"log": line + "\n", "stream": "stdout"})
            await until(pilot, lambda: app.state.lines.total == len(lines))
        finally:
            client.close()
        await pilot.press("2")
        await until(pilot, lambda: table(app).frame.height == app.state.lines.access)
        assert app.state.lines.unparsed == 0
        assert table(app).frame["pod"].drop_nulls().len() == table(app).frame.height  # kubernetes metadata kept

    asyncio.run(run(app, check))
