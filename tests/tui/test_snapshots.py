"""SVG snapshots of every screen at a fixed terminal size (pytest-textual-snapshot).

Update after an intended change with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and
look at the SVGs before committing them.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from meshlog.metrics.http import Connection
from meshlog.tui import MeshlogApp, create_app
from tests.conftest import ROOT
from tests.tui.test_app import loaded, until

SIZE = (130, 40)
ISTIO = "fixtures/envoy/istio/access.log"  # relative: the header shows it, and must not show the checkout path
CHAIN = ["fixtures/chain/client.log", "fixtures/chain/server.log"]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def _ready(app: MeshlogApp, *keys: str) -> Any:
    async def run_before(pilot: Pilot[Any]) -> None:
        await until(pilot, loaded(app))
        for key in keys:
            await pilot.press(key)
        await pilot.pause(0.2)

    return run_before


def test_dashboard(snap_compare: Any) -> None:
    app = create_app([ISTIO])
    assert snap_compare(app, terminal_size=SIZE, run_before=_ready(app))


def test_requests_only_errors(snap_compare: Any) -> None:
    app = create_app([ISTIO])
    assert snap_compare(app, terminal_size=SIZE, run_before=_ready(app, "e"))


def test_detail_of_a_retried_request(snap_compare: Any) -> None:
    app = create_app(CHAIN)
    # the third request of the client log is the URX one; Enter opens it
    assert snap_compare(app, terminal_size=SIZE, run_before=_ready(app, "2", "down", "down", "enter"))


def test_help(snap_compare: Any) -> None:
    app = create_app([ISTIO])
    assert snap_compare(app, terminal_size=SIZE, run_before=_ready(app, "question_mark"))


def test_metrics_tab_with_a_dead_prometheus(snap_compare: Any) -> None:
    app = create_app([ISTIO], prometheus=Connection("http://127.0.0.1:1", timeout=1))

    async def run_before(pilot: Pilot[Any]) -> None:
        await _ready(app, "3")(pilot)
        await until(pilot, lambda: "connection refused" in str(app.query_one("#metrics-status").render()))
        app.clear_notifications()  # the toast's timing is not what this snapshot is about
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
