"""Progress on stderr while input is read — only when stderr is a terminal.

Files of known size get a bar; stdin (``kubectl logs … | meshlog summarize``) gets a counter of
lines and bytes with the rate, since a pipe's size is unknown until it ends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from meshlog.pipeline import Run
from meshlog.sources import expand

_MIN_BYTES = 32 << 20  # below this a bar only flickers


@contextmanager
def progress(paths: list[str], run: Run) -> Iterator[Callable[[], None]]:
    """Yield ``tick()``: call it after each chunk; the display follows what the sources have read."""
    inputs = expand(paths)
    files = [p for p in inputs if p != "-" and os.path.isfile(p)]
    if not sys.stderr.isatty():
        yield lambda: None
        return
    if inputs == ["-"]:
        with _counter(run) as tick:
            yield tick
        return
    total = sum(os.path.getsize(p) for p in files)
    if total < _MIN_BYTES or len(files) != len(inputs):
        yield lambda: None
        return
    from rich.console import Console  # rich costs ~45 ms to import: only when a bar is shown
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("reading"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    )  # fmt: skip
    task = bar.add_task("read", total=total)
    with bar:
        yield lambda: bar.update(task, completed=min(total, sum(s.bytes_read for s in run.sources)))


@contextmanager
def _counter(run: Run) -> Iterator[Callable[[], None]]:
    """stdin: lines and bytes so far, and the rate."""
    import time

    from rich.console import Console
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    counter = Progress(
        TextColumn("reading stdin: {task.fields[lines]:,} lines, {task.fields[size]} ({task.fields[rate]})"),
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
    )  # fmt: skip
    task = counter.add_task("stdin", total=None, lines=0, size="0 B", rate="waiting")
    started = time.monotonic()

    def tick() -> None:
        read = sum(s.bytes_read for s in run.sources)
        lines = sum(s.lines for s in run.sources)
        took = max(time.monotonic() - started, 1e-3)
        rate = f"{lines / took:,.0f} lines/s, {_size(int(read / took))}/s"
        counter.update(task, completed=read, lines=lines, size=_size(read), rate=rate)

    with counter:
        yield tick


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"
