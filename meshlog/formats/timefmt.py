"""Envoy's strftime dialect (absl ``FormatTime`` plus ``%s`` and ``%Nf``) → a regex and a chrono format.

polars parses times with chrono, so each Envoy specifier maps to a chrono specifier and
to a regex that matches exactly what Envoy prints for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshlog.errors import FormatError

# Envoy's defaults when START_TIME has no argument (checked on Envoy 1.40).
DEFAULT_UTC = "%Y-%m-%dT%H:%M:%E3SZ"
DEFAULT_LOCAL = "%Y-%m-%dT%H:%M:%E3S%z"

_SPEC: dict[str, tuple[str, str]] = {  # specifier → (regex, chrono)
    "Y": (r"\d{4}", "%Y"),
    "y": (r"\d\d", "%y"),
    "m": (r"\d\d", "%m"),
    "d": (r"\d\d", "%d"),
    "e": (r"[ \d]\d", "%e"),
    "H": (r"\d\d", "%H"),
    "I": (r"\d\d", "%I"),
    "M": (r"\d\d", "%M"),
    "S": (r"\d\d", "%S"),
    "j": (r"\d{3}", "%j"),
    "p": (r"[AP]M", "%p"),
    "b": (r"[A-Z][a-z]{2}", "%b"),
    "h": (r"[A-Z][a-z]{2}", "%b"),
    "B": (r"[A-Z][a-z]+", "%B"),
    "a": (r"[A-Z][a-z]{2}", "%a"),
    "A": (r"[A-Z][a-z]+", "%A"),
    "z": (r"[+-]\d{4}", "%z"),
    "Ez": (r"[+-]\d\d:\d\d", "%:z"),
    "s": (r"\d+", "%s"),
    "F": (r"\d{4}-\d\d-\d\d", "%Y-%m-%d"),
    "T": (r"\d\d:\d\d:\d\d", "%H:%M:%S"),
    "D": (r"\d\d/\d\d/\d\d", "%m/%d/%y"),
    "R": (r"\d\d:\d\d", "%H:%M"),
    "%": ("%", "%%"),
}


@dataclass(frozen=True)
class TimeFormat:
    envoy: str  # the strftime pattern as Envoy got it
    regex: str  # matches what Envoy prints (no groups)
    chrono: str | None  # None: cannot be parsed to a datetime, the column stays text
    has_zone: bool  # the text carries its own offset (%z); otherwise it is UTC


def compile_time_format(
    pattern: str | None, *, local: bool = False, fmt: str | None = None, column: int = 1
) -> TimeFormat:
    """Translate one START_TIME argument; unknown specifiers keep the column as text.

    ``fmt`` and ``column`` place errors in the whole format string (``column``: where the argument starts).
    """
    envoy = pattern if pattern else (DEFAULT_LOCAL if local else DEFAULT_UTC)
    regex: list[str] = []
    chrono: list[str] | None = []
    has_zone = False
    i = 0
    while i < len(envoy):
        ch = envoy[i]
        if ch != "%":
            regex.append(re.escape(ch))
            if chrono is not None:
                chrono.append(ch)
            i += 1
            continue
        m = re.match(r"%(E\*S|E\d?S|Ez|\d?f|[A-Za-z%])", envoy[i:])
        if not m:
            raise FormatError(f"bad time specifier in {envoy!r}", fmt or envoy, column + i)
        spec = m.group(1)
        i += len(m.group(0))
        if spec == "n":
            raise FormatError("a time format cannot contain a newline (%n)", fmt or envoy, column + i - len(m.group(0)))
        if spec in ("z", "Ez"):
            has_zone = True
        if spec.endswith("f"):  # %f = 9 digits, %Nf = N digits (Envoy's own extension)
            digits = int(spec[0]) if spec[0].isdigit() else 9
            regex.append(rf"\d{{{digits}}}")
            part: str | None = f"%{digits}f" if digits in (3, 6, 9) else None
            if part is None and chrono and chrono[-1].endswith("."):
                chrono[-1] = chrono[-1][:-1]  # chrono's %.f reads any number of digits after '.'
                part = "%.f"
        elif spec.startswith("E") and spec.endswith("S"):  # seconds with N (or any) fraction digits
            frac = spec[1:-1]
            regex.append(r"\d\d\.\d+" if frac in ("*", "") else rf"\d\d\.\d{{{frac}}}")
            part = "%S%.f"
        elif spec in _SPEC:
            rx, part = _SPEC[spec]
            regex.append(rx)
        else:
            regex.append(r"\S+?")
            part = None
        if chrono is not None:
            chrono = None if part is None else [*chrono, part]
    return TimeFormat(envoy, "".join(regex), "".join(chrono) if chrono is not None else None, has_zone)
