"""The lifecycle every lab server shares: start on enter, undo everything started on exit or failure."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self


class Managed:
    """Subclasses implement ``_start`` and register their clean-up on ``self._stack``; a start that
    fails half-way still stops what it had started."""

    _stack: contextlib.ExitStack

    def _start(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._stack.close()
