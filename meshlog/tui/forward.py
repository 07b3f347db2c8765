"""Rows for the TUI from fluentd / fluent-bit ``forward`` traffic (the same receiver as ``meshlog listen``)."""

from __future__ import annotations

import threading

import polars as pl

from meshlog.errors import DetectionError
from meshlog.formats.compiler import CompiledFormat
from meshlog.parse import parse_lines
from meshlog.parse.detect import SAMPLE_LINES, detect
from meshlog.tui.state import LogState


class ForwardFeed:
    """The receiver's ``on_lines``: parse each batch into ``state``; without ``--format`` the format
    is detected from the first lines a preset fits (start-up noise first is fine)."""

    def __init__(self, state: LogState, fmt: CompiledFormat | None) -> None:
        self.state = state
        self.format = fmt
        self.problem: str | None = None
        self._pending: list[pl.DataFrame] = []
        self._lock = threading.Lock()

    def __call__(self, lines: pl.DataFrame) -> None:
        with self._lock:
            if self.format is None:
                self._pending.append(lines)
                sample = pl.concat(self._pending, how="diagonal_relaxed")
                try:
                    self.format = detect(sample["line"].to_list())
                except DetectionError as exc:
                    if sample.height >= SAMPLE_LINES:
                        self.problem = str(exc)
                        self._pending = []
                    return
                lines, self._pending = sample, []
            self.state.add(parse_lines(lines, self.format))
