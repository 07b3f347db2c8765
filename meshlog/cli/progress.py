"""A progress bar on stderr while large files are read — only when stderr is a terminal."""

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
    """Yield ``tick()``: call it after each chunk; the bar follows the bytes the sources have read."""
    files = [p for p in expand(paths) if p != "-" and os.path.isfile(p)]
    total = sum(os.path.getsize(p) for p in files)
    if not sys.stderr.isatty() or total < _MIN_BYTES or len(files) != len(expand(paths)):
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
