"""The two roads of the text parser, held equal: the compiled scanner, and polars alone
(``MESHLOG_PURE=1``, the reference). Fixture, peer-data and property tests parse through
``on_both_roads`` so every input they read checks one road against the other."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from polars.testing import assert_frame_equal

from meshlog.parse import AccessLog

T = TypeVar("T", AccessLog, list[AccessLog])


@contextmanager
def road(pure: bool) -> Iterator[None]:
    """Parse on the polars road (``pure``) or the scanner's, whatever the environment says."""
    before = os.environ.get("MESHLOG_PURE")
    os.environ["MESHLOG_PURE"] = "1" if pure else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["MESHLOG_PURE"]
        else:
            os.environ["MESHLOG_PURE"] = before


def assert_same_log(a: AccessLog, b: AccessLog) -> None:
    for name in ("requests", "unparsed", "other", "connections"):
        try:
            assert_frame_equal(getattr(a, name), getattr(b, name))
        except AssertionError as e:
            raise AssertionError(f"{name} differ between the roads: {e}") from None


def on_both_roads(parse: Callable[[], T]) -> T:
    """``parse()`` on each road; they must give the same logs. The scanner's result is returned."""
    with road(pure=True):
        reference = parse()
    with road(pure=False):
        scanned = parse()
    if isinstance(reference, AccessLog):
        assert isinstance(scanned, AccessLog)
        assert_same_log(reference, scanned)
    else:
        assert isinstance(scanned, list) and len(scanned) == len(reference)
        for a, b in zip(reference, scanned, strict=True):
            assert_same_log(a, b)
    return scanned
