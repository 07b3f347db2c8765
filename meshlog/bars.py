"""Numbers as one line of block characters, for the terminal report and the TUI alike."""

from __future__ import annotations

from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One character per value, scaled to the largest: 0 is a blank, anything above it at least ``▁``,
    so a single error among thousands of requests still shows."""
    top = max(values, default=0) or 1
    return "".join(" " if not v else BARS[max(0, round(v / top * len(BARS)) - 1)] for v in values)
