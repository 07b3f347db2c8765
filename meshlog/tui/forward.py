"""Rows for the TUI from fluentd / fluent-bit ``forward`` traffic (the same receiver as ``meshlog listen``)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from meshlog.formats.compiler import CompiledFormat
from meshlog.stream import Job, StreamParser
from meshlog.tui.state import LogState


class ForwardFeed:
    """The receiver's ``on_lines``: each batch through the one ``StreamParser`` (each tag's format
    detected from its first lines a preset fits) into ``state``. Lines of a tag no preset fits are
    still counted, and ``on_problem`` names the tag (the screen shows it)."""

    def __init__(
        self, state: LogState, fmt: CompiledFormat | None, *, on_problem: Callable[[str], None] | None = None
    ) -> None:
        self.state = state
        self.stream = StreamParser(fmt)
        self._on_problem = on_problem

    def __call__(self, lines: pl.DataFrame) -> None:
        for job in self.stream.ready(lines, paused=True):  # a forward batch is what came: show it now
            self._take(job)

    def finish(self) -> None:
        for job in self.stream.finish():
            self._take(job)

    def _take(self, job: Job) -> None:
        parsed = self.stream.parse(job)
        self.state.add(parsed.log, parsed.tally)
        for problem in self.stream.new_problems():
            if self._on_problem is not None:
                self._on_problem(problem)
