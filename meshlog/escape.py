"""Logged values are data: control characters and escape sequences are shown escaped, never sent raw.

A user agent can carry ``ESC]0;…BEL`` (retitle the terminal) or ``ESC[2J`` (clear it); every
terminal renderer (the CLI's tables, the TUI) passes values through ``safe`` first.
"""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe(value: Any) -> str:
    """A value as text with control characters (ESC, BEL, …) escaped; ``None`` as ``-``."""
    text = "-" if value is None else str(value)
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)
