"""Numbers drawn for people, the same in the terminal report and the TUI: sparklines and shares."""

from __future__ import annotations

from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One character per value, scaled to the largest: 0 is a blank, anything above it at least ``▁``,
    so a single error among thousands of requests still shows."""
    top = max(values, default=0) or 1
    return "".join(" " if not v else BARS[max(0, round(v / top * len(BARS)) - 1)] for v in values)


def percent(share: float) -> str:
    """A share as a percentage that never reads 0% when it is not: ``16%``, ``4.2%``, ``0.49%``."""
    p = 100 * share
    if p == 0 or p >= 10:
        return f"{p:.0f}%"
    return f"{p:.1f}%" if p >= 1 else f"{p:.2g}%"
