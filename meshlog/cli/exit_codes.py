"""Exit codes: scripts can tell a usage mistake from bad input from a strict-mode failure."""

from __future__ import annotations

import enum

from meshlog.errors import (
    ConfigError,
    DetectionError,
    FormatError,
    InputError,
    MeshlogError,
    QueryError,
    UnparsedLinesError,
    UnreachableError,
)


class ExitCode(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1  # trace: no line carries the request id; flags: not a built-in flag
    USAGE = 2  # bad option, bad format string, unreadable config, format not detected
    INPUT = 3  # an input could not be read (others may have been)
    STRICT = 4  # --strict and some lines did not parse
    UNREACHABLE = 5  # a server (Prometheus, a sidecar) did not answer
    INTERNAL = 70  # a bug in meshlog (sysexits' EX_SOFTWARE): one line, and MESHLOG_TRACEBACK=1 for more
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)


def exit_code_for(error: MeshlogError) -> ExitCode:
    if isinstance(error, UnreachableError):
        return ExitCode.UNREACHABLE
    if isinstance(error, (FormatError, ConfigError, DetectionError, QueryError)):
        return ExitCode.USAGE
    if isinstance(error, InputError):
        return ExitCode.INPUT
    if isinstance(error, UnparsedLinesError):
        return ExitCode.STRICT
    return ExitCode.USAGE
