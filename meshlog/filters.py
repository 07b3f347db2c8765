"""The ``--where`` language: small boolean filters over request columns, compiled to a polars expression.

    response_code>=500
    response_flags~UF and upstream_cluster~reviews
    not (method=GET or method=HEAD), duration>1000

Comparisons ``= == != > >= < <=`` read the value as the column's type: a number for numbers, an
ISO-8601 time for times (``start_time>=2026-11-25T21:00:00Z``), text otherwise; ``~`` / ``!~`` test
a regex (``response_flags~UF``); ``,`` means ``and``. Values may be quoted with ``"`` or ``'``.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import polars as pl
import pyparsing as pp

from meshlog.envelopes import META
from meshlog.errors import FilterError
from meshlog.parse import AccessLog

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_OPS = ("==", "!=", ">=", "<=", "!~", "=", ">", "<", "~")


def _build() -> pp.ParserElement:
    column = pp.Word(pp.alphas + "_", pp.alphanums + "_").set_name("column")
    op = pp.one_of(_OPS).set_name("operator")
    quoted = pp.QuotedString('"', esc_char="\\") | pp.QuotedString("'", esc_char="\\")
    bare = pp.Regex(r"[^\s,()]+").set_name("value")
    number = pp.Regex(r"-?\d+(?:\.\d+)?(?![^\s,()])").set_name("number")
    value = (quoted("text") | number("number") | bare("text")).set_name("value")
    comparison = pp.Group(pp.Located(column)("column") + op("op") - pp.Located(value)("value")).set_name(
        "a comparison (column op value)"
    )
    AND = pp.CaselessKeyword("and") | pp.Literal(",")
    OR = pp.CaselessKeyword("or")
    NOT = pp.CaselessKeyword("not")
    return pp.infix_notation(
        comparison, [(NOT, 1, pp.OpAssoc.RIGHT), (AND, 2, pp.OpAssoc.LEFT), (OR, 2, pp.OpAssoc.LEFT)]
    ).set_name("filter")


_GRAMMAR = _build().parse_with_tabs()  # a TAB in a value is a TAB, and error columns stay exact


class Backend:
    """What a compiled filter is built of. This one builds polars expressions; an engine gives its own
    (``engines.spark`` builds Spark columns), so ``--where`` means the same wherever it runs."""

    def col(self, name: str) -> Any:
        return pl.col(name)

    def text(self, column: Any) -> Any:
        return column.cast(pl.String)

    def matches(self, text: Any, pattern: str) -> Any:
        return text.str.contains(pattern)

    def known(self, condition: Any) -> Any:
        """A condition with null (a missing value) read as false."""
        return condition.fill_null(False)

    def constant(self, value: bool) -> Any:
        return pl.lit(value)

    def check_regex(self, pattern: str) -> str | None:
        """Why ``pattern`` is no regex for this engine, or None."""
        try:
            pl.Series([""]).str.contains(pattern)  # the regex engine polars runs, so the same syntax
        except pl.exceptions.PolarsError as exc:
            said = [ln.removeprefix("error:").strip() for ln in str(exc).splitlines() if ln.startswith("error:")]
            return said[0] if said else pattern
        return None


POLARS = Backend()


class _Written(Backend):
    """For filters meshlog writes itself (the hint rules'): their regexes are checked by the tests,
    not again on every run (a check compiles each one: ~0.4 ms apiece, at every start)."""

    def check_regex(self, pattern: str) -> str | None:
        return None


WRITTEN = _Written()


def compile_where(
    text: str, schema: Mapping[str, pl.DataType], backend: Backend = POLARS, *, absent: Collection[str] = ()
) -> Any:
    """Compile a ``--where`` expression for a frame with this ``schema`` (a polars expression, or
    what ``backend`` builds): values are read as their column's type; errors say the column
    (1-based) of the offending text. ``absent``: columns this kind of record lacks (the other kind
    has them), read as null: ``dst_service~reviews or response_code>=500`` keeps both kinds."""
    return _expr(_parse(text), text, schema, backend, frozenset(absent))


def where_filter(text: str, *, elsewhere: Collection[str] | None = None) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """``--where`` for the many chunks of one run (several inputs, maybe with different columns):
    checked now, compiled once per distinct schema. A wrapper column (pod, namespace, container,
    stream, captured_at) that one input lacks reads as null there, since another input may carry it.

    ``elsewhere``: the columns of the other kind of record (requests vs ztunnel's connections); here
    they read as null, so a term on them holds for none of this kind's records (``or`` keeps both
    kinds, ``and`` neither). None: any column this frame lacks is the other kind's."""
    named = columns_named(text)
    compiled: dict[tuple[tuple[str, pl.DataType], ...], pl.Expr] = {}
    lock = threading.Lock()  # parse workers call it side by side

    def keep(frame: pl.DataFrame) -> pl.DataFrame:
        if not frame.height:  # nothing to choose from (an input no format fits has no columns yet)
            return frame
        missing = [c for c in named if c not in frame.columns and c not in META]
        other_kind = missing if missing and (elsewhere is None or set(missing) <= set(elsewhere)) else []
        absent = [c for c in named if c not in frame.columns and c in META]
        if absent:
            frame = frame.with_columns(pl.lit(None, dtype=META[c]).alias(c) for c in absent)
        key = tuple(frame.schema.items())
        with lock:
            if key not in compiled:
                compiled[key] = compile_where(text, frame.schema, absent=other_kind)
            expr = compiled[key]
        return frame.filter(expr).drop(absent)

    return keep


def columns_named(text: str) -> set[str]:
    """The columns a ``--where`` expression reads (so a command can build just those)."""

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, pp.ParseResults):
            if "op" in node:
                yield node["column"][1][0]
            else:
                for item in node:
                    yield from walk(item)

    return set(walk(_parse(text)))


def _parse(text: str) -> pp.ParseResults:
    try:
        return _GRAMMAR.parse_string(text, parse_all=True)[0]
    except pp.ParseBaseException as exc:
        _check_parentheses(text)  # pyparsing's own word for an unpaired one is hard to read
        raise FilterError(f"expected {exc.msg.removeprefix('Expected ')}", text, exc.loc + 1) from None


def _check_parentheses(text: str) -> None:
    """Say which parenthesis does not pair up. Quotes open only where a value starts (right after an
    operator), and ``\\x`` inside them is one escaped character, as the grammar reads them."""
    opened: list[int] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1  # the escaped character, whatever it is
            elif ch == quote:
                quote = None
        elif ch in "'\"" and re.search(r"(==|!=|>=|<=|!~|[=<>~])\s*$", text[:i]):
            quote = ch
        elif ch == "(":
            opened.append(i)
        elif ch == ")":
            if not opened:
                raise FilterError("')' closes nothing", text, i + 1)
            opened.pop()
        i += 1
    if opened:
        raise FilterError("'(' is never closed", text, opened[-1] + 1)


def _expr(
    node: pp.ParseResults, text: str, schema: Mapping[str, pl.DataType], backend: Backend, absent: frozenset[str]
) -> Any:
    if "op" in node:
        return _comparison(node, text, schema, backend, absent)
    items = list(node)
    if isinstance(items[0], str) and items[0].lower() == "not":
        return ~_expr(items[1], text, schema, backend, absent)
    result = _expr(items[0], text, schema, backend, absent)
    for i in range(1, len(items), 2):
        right = _expr(items[i + 1], text, schema, backend, absent)
        result = (result | right) if items[i].lower() == "or" else (result & right)
    return result


def _comparison(
    node: pp.ParseResults, text: str, schema: Mapping[str, pl.DataType], backend: Backend, absent: frozenset[str]
) -> Any:
    """One ``column op value``; the value is read as the column's type, so ``response_code=abc`` or
    ``start_time>yesterday`` is an error at the value, never a filter that silently matches nothing."""
    column_start, (name,), _ = node["column"]
    value_start, value, _ = node["value"]
    if name in absent:  # as a column of nulls reads: no comparison holds, "does not match" does
        return backend.constant(node["op"] == "!~")
    if name not in schema:
        import difflib

        near = difflib.get_close_matches(name, list(schema), n=1, cutoff=0.75)
        if near:
            raise FilterError(f"no column {name!r}; did you mean {near[0]!r}?", text, column_start + 1)
        known = ", ".join(sorted(schema))
        raise FilterError(f"no column {name!r} (columns: {known})", text, column_start + 1)
    col, op, dtype = backend.col(name), node["op"], schema[name]
    given = value.get("number") or value.get("text")

    def wrong(expected: str) -> FilterError:
        return FilterError(f"{name} holds {expected}: got {given!r}", text, value_start + 1)

    if op in ("~", "!~"):
        if (why := backend.check_regex(given)) is not None:
            raise FilterError(f"not a valid regex ({why})", text, value_start + 1)
        matched = backend.known(backend.matches(backend.text(col), given))
        return ~matched if op == "!~" else matched
    target: Any  # a number, a time or text: what the column holds
    if dtype.is_numeric():
        if not _NUMBER.fullmatch(given):  # quoted or not: '500' is a number too
            raise wrong("numbers")
        target = float(given) if "." in given else int(given)
    elif isinstance(dtype, pl.Datetime):
        try:
            target = _iso_time(given)
        except ValueError:
            raise wrong("times (ISO-8601, e.g. 2026-11-25T20:31:00Z)") from None
    else:
        col, target = backend.text(col), given
    compare = {
        "=": col == target, "==": col == target, "!=": col != target,
        ">": col > target, ">=": col >= target, "<": col < target, "<=": col <= target,
    }[op]  # fmt: skip
    return backend.known(compare)


def _iso_time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.strip())
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def quote(value: str) -> str:
    """A value as the filter language reads it back exactly (``|``, spaces, quotes, backslashes, TABs
    and newlines included)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return "'" + escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + "'"


def _flag_pattern(flag: str) -> str:
    return f"(^|,){re.escape(flag)}(,|$)"


def flag_filter(flag: str) -> str:
    """Lines whose ``response_flags`` hold ``flag`` (alone or in a list such as ``UF,URX``)."""
    return f"response_flags~{quote(_flag_pattern(flag))}"


def has_flag(flag: str) -> pl.Expr:
    """``flag_filter`` as an expression (null flags: False)."""
    return pl.col("response_flags").cast(pl.String).str.contains(_flag_pattern(flag)).fill_null(False)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, latest: dt.datetime | None, *, option: str = "--since") -> dt.datetime:
    """An ISO-8601 time, or a duration (``15m``, ``2h``) back from ``latest`` (the last request, or now)."""
    m = _DURATION.match(text.strip())
    if m:
        if latest is None:
            raise FilterError("a relative time needs requests with start_time", text, 1, option=option)
        return latest - dt.timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    try:
        return _iso_time(text)
    except ValueError:
        raise FilterError(
            f"expected an ISO-8601 time (2026-11-25T20:31:00Z) or a duration (15m, 2h), got {text!r}",
            text,
            1,
            option=option,
        ) from None


def is_relative(text: str | None) -> bool:
    """A duration (``15m``) rather than a time: it is resolved against the last request."""
    return bool(text) and bool(_DURATION.match(str(text).strip()))


def time_filter(since: str | None, until: str | None) -> Callable[[pl.DataFrame], pl.DataFrame] | None:
    """``--since`` / ``--until`` given as ISO times, for chunks as they stream (durations need the
    last request: see ``window``)."""
    start = parse_time(since, None) if since else None
    end = parse_time(until, None, option="--until") if until else None
    if start is None and end is None:
        return None

    def keep(frame: pl.DataFrame) -> pl.DataFrame:
        if "start_time" not in frame.columns:
            return frame.clear()
        return frame.filter(in_window(start, end))

    return keep


def bounds(
    since: str | None, until: str | None, latest: dt.datetime | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``--since`` / ``--until`` as times: ISO as given, durations back from ``latest``."""
    start = parse_time(since, latest) if since else None
    end = parse_time(until, latest, option="--until") if until else None
    return start, end


def in_window(start: dt.datetime | None, end: dt.datetime | None, column: str = "start_time") -> pl.Expr:
    """Records in ``[start, end)`` by ``column`` (a record without a time is in no window);
    ztunnel's connections have ``timestamp``."""
    cond = pl.col(column).is_not_null()
    if start is not None:
        cond &= pl.col(column) >= start
    if end is not None:
        cond &= pl.col(column) < end
    return cond


def check_time(text: str, *, option: str = "--since") -> None:
    """Raise ``FilterError`` now if ``text`` is neither an ISO-8601 time nor a duration (before any
    input is read; a duration is resolved later, against the last request)."""
    if not _DURATION.match(text.strip()):
        parse_time(text, None, option=option)


def check_times(since: str | None, until: str | None) -> None:
    """``check_time`` for both options a command takes (each named in its error)."""
    for text, option in ((since, "--since"), (until, "--until")):
        if text:
            check_time(text, option=option)


def window(
    requests: pl.DataFrame, since: str | None, until: str | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``--since`` / ``--until`` as times: ISO as given, durations back from the last request."""
    if not (since or until) or "start_time" not in requests.columns:
        return None, None
    return bounds(since, until, requests.select(pl.col("start_time").max()).item())


def narrow(
    log: AccessLog, *, where: str | None = None, since: str | None = None, until: str | None = None
) -> AccessLog:
    """The same log with only the requests that pass ``--where`` and fall in ``[since, until)``.

    Line counts stay those of the whole input: filtering chooses requests, it does not lose lines.
    """
    requests = log.requests
    conditions: list[pl.Expr] = []
    if where:
        conditions.append(compile_where(where, requests.schema))
    start, end = window(requests, since, until)
    if start is not None or end is not None:
        conditions.append(in_window(start, end))
    if not conditions:
        return log
    return AccessLog(requests.filter(pl.all_horizontal(conditions)), log.unparsed, log.other, log.format)
