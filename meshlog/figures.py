"""Numbers drawn for people, the same in the terminal report and the TUI: sparklines and shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One character per value, scaled to the largest: 0 is a blank, anything above it at least ``▁``,
    so a single error among thousands of requests still shows."""
    top = max(values, default=0) or 1
    return "".join(" " if not v else BARS[max(0, round(v / top * len(BARS)) - 1)] for v in values)


def timeline_lines(
    buckets: Sequence[dict[str, Any]], keys: Sequence[str] = ("requests", "errors")
) -> list[tuple[str, str, int]]:
    """``(name, sparkline, peak)`` for the requests (or connections) and the errors of timeline buckets."""
    return [(key, sparkline(v := [b[key] for b in buckets]), max(v, default=0)) for key in keys]


def percent(share: float) -> str:
    """A share as a percentage that never reads 0% when it is not: ``16%``, ``4.2%``, ``0.49%``,
    ``<0.01%``; the digits chosen after rounding (9.99% is ``10%``, not ``10.0%``)."""
    p = 100 * share
    if p == 0:
        return "0%"
    if p >= 9.95:
        return f"{p:.0f}%"
    if p >= 0.995:
        return f"{p:.1f}%"
    return f"{p:.2f}%" if p >= 0.005 else "<0.01%"


def count(n: int, word: str, plural: str | None = None) -> str:
    """``1 request``, ``19 requests``, ``1,000 lines``: a count for people (thousands separated)."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def span(seconds: float) -> str:
    """A bucket width as people write it: ``10s``, ``5m``, ``3h``, ``2d`` (``90s`` stays ``90s``)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def millis(v: Any) -> str:
    """A duration in milliseconds as people read one: ``13 ms``, ``10.0 s``, ``19m 33s``, ``2h 05m``."""
    if v is None:
        return "-"
    ms = float(v)
    if ms < 10_000:
        return f"{ms:,.0f} ms" if ms.is_integer() else f"{ms:,.1f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def connections_headline(report: dict[str, Any]) -> str:
    """``41 connections (ztunnel), 12 errors (29.3%) · p50 2 ms, p99 10,002 ms``."""
    d = report["duration"]
    extra = f", {report['opened']:,} opened" if report["opened"] else ""
    return (
        f"{count(report['total'], 'connection')} (ztunnel{extra}) · errors: {report['errors']:,} "
        f"({percent(report['error_ratio'])}) · duration p50 {millis(d['p50'])}, p99 {millis(d['p99'])}"
    )
