"""What goes wrong in the TUI's background threads reaches the screen (streaming-core issue)."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from meshlog.tui import MeshlogApp, create_app
from tests.tui.test_app import SIZE, until


class _Failing:
    """A stdin whose read fails the way no read error is expected to (a bug, not an I/O error)."""

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        raise ValueError("the reader broke")

    def close(self) -> None:
        pass


def test_an_exception_in_the_reader_is_shown_not_lost() -> None:
    app = create_app(["-"], stdin=_Failing())

    async def check(pilot: Pilot[Any]) -> None:
        assert isinstance(pilot.app, MeshlogApp)
        await until(pilot, lambda: not pilot.app.reading)  # type: ignore[attr-defined]
        await pilot.pause(0.2)
        totals = str(pilot.app.query_one("#totals", Static).render())
        assert "internal error in the reader: ValueError: the reader broke" in totals
        assert any("the reader broke" in n.message for n in pilot.app._notifications)

    async def run() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await check(pilot)

    asyncio.run(run())
