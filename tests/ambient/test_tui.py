"""The TUI on ambient logs: the dashboard's L4 panel, and a Connections tab that pages ztunnel's records
(it appears only when they come: a sidecar log's screen is as it was)."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static, TabbedContent

from meshlog.tui import MeshlogApp, create_app
from meshlog.tui.table import ConnectionTable
from tests.ambient.expect import MIXED, MIXED_LINES, SIDECAR, ZTUNNEL, field
from tests.tui.test_app import run, until


def test_a_connections_tab_pages_the_ztunnel_records_of_a_mixed_stream() -> None:
    in_mixed = [ZTUNNEL[m["index"]] for m in MIXED_LINES if m["kind"] == "ztunnel"]
    ended = [r for r in in_mixed if r["message"] != "connection opened"]

    async def check(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, MeshlogApp)
        await until(pilot, lambda: bool(app.query("#connections-table")) and app._summary is not None)
        await pilot.press("4")
        await until(pilot, lambda: app.query_one("#connections-table", ConnectionTable).frame.height > 0)
        assert app.query_one(TabbedContent).active == "connections"
        table = app.query_one("#connections-table", ConnectionTable)
        assert table.frame["src_addr"].to_list() == [field(r, "src.addr") for r in in_mixed]
        await pilot.press("enter")  # browsed, not drilled into: no detail screen for a connection
        await pilot.pause(0.1)
        assert len(app.screen_stack) == 1
        totals = str(app.query_one("#totals", Static).render())
        assert f"{len(ended)} connections" in totals
        l4 = app.query_one("#l4", Static)
        assert l4.display and f"{len(ended)} connections (ztunnel" in str(l4.render())

    asyncio.run(run(create_app([str(MIXED)]), check))


def test_a_sidecar_log_gets_no_connections_tab() -> None:
    async def check(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, MeshlogApp)
        await until(pilot, lambda: app._summary is not None)
        assert not app.query("#connections-table")
        assert not app.query_one("#l4", Static).display
        await pilot.press("4")  # no such tab: nothing happens
        assert app.query_one(TabbedContent).active == "dashboard"

    asyncio.run(run(create_app([str(SIDECAR)]), check))
