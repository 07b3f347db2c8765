"""Typed errors: every one says *where* (a format column, a source line, a URL)."""

from __future__ import annotations


def caret(text: str, column: int) -> str:
    """``text`` (the line of it that holds ``column``, 1-based) with a caret under that column."""
    line_start = text.rfind("\n", 0, max(column - 1, 0)) + 1
    line_end = text.find("\n", max(column - 1, 0))
    line = text[line_start : None if line_end < 0 else line_end]
    return f"  {line}\n  {' ' * max(column - 1 - line_start, 0)}^"


class MeshlogError(Exception):
    """Base of every error meshlog raises on purpose; the CLI turns it into one stderr line."""


class FormatError(MeshlogError):
    """A format string that Envoy would reject, with the column (1-based) where it goes wrong."""

    def __init__(self, message: str, fmt: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.format = fmt
        self.column = column

    def __str__(self) -> str:
        return f"format error at column {self.column}: {self.message}"

    def caret(self) -> str:
        """The format string with a caret under the offending column (one line of the format)."""
        return caret(self.format, self.column)


class ConfigError(MeshlogError):
    """A mesh config / format file that cannot be read or holds no usable access-log format."""


class InputError(MeshlogError):
    """Input that cannot be read at all (missing file, broken gzip, ...); names the source."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


class UnparsedLinesError(MeshlogError):
    """Strict mode: some lines did not parse. Carries the first one for the message."""

    def __init__(self, count: int, source: str, line_no: int, reason: str) -> None:
        lines = "1 line" if count == 1 else f"{count:,} lines"
        super().__init__(f"{lines} did not parse; first at {source}:{line_no}: {reason}")
        self.count = count
        self.source = source
        self.line_no = line_no
        self.reason = reason


class UsageError(MeshlogError):
    """Options that cannot go together, or that name something the input does not have."""


class DetectionError(MeshlogError):
    """No preset fits the input: the user must say which format the proxy writes."""


class FilterError(MeshlogError):
    """A ``--where`` (or ``--since`` / ``--until``) value that does not parse, names an unknown column or
    compares a column with a value of the wrong type; says which option and the column (1-based)."""

    def __init__(self, message: str, text: str, column: int, *, option: str = "--where") -> None:
        super().__init__(f"{option} error at column {column}: {message}")
        self.text = text
        self.column = column
        self.option = option

    def caret(self) -> str:
        """The option's value with a caret under the column."""
        return caret(self.text, self.column)


class UnreachableError(MeshlogError):
    """A metrics server (Prometheus, a sidecar's stats port) did not answer usefully; names the URL."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


class QueryError(MeshlogError):
    """Prometheus answered but rejected a query (bad PromQL, a bad selector value); carries the query."""

    def __init__(self, message: str, query: str) -> None:
        super().__init__(f"Prometheus rejected the query: {message} (query: {query})")
        self.query = query
