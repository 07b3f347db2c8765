"""The ``--where`` language: small boolean filters over request columns, compiled to a polars expression.

    response_code>=500
    response_flags~UF and upstream_cluster~reviews
    not (method=GET or method=HEAD), duration>1000

Comparisons ``= == != > >= < <=`` compare with a number or text; ``~`` / ``!~`` test a regex
(``response_flags~UF``); ``,`` means ``and``. Values may be quoted with ``"`` or ``'``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection

import polars as pl
import pyparsing as pp

from meshlog.errors import FilterError
from meshlog.parse import AccessLog

_OPS = ("==", "!=", ">=", "<=", "!~", "=", ">", "<", "~")


def _build() -> pp.ParserElement:
    column = pp.Word(pp.alphas + "_", pp.alphanums + "_").set_name("column")
    op = pp.one_of(_OPS).set_name("operator")
    quoted = pp.QuotedString('"', esc_char="\\") | pp.QuotedString("'", esc_char="\\")
    bare = pp.Regex(r"[^\s,()]+").set_name("value")
    number = pp.Regex(r"-?\d+(?:\.\d+)?(?![^\s,()])").set_name("number")
    value = (quoted("text") | number("number") | bare("text")).set_name("value")
    comparison = pp.Group(pp.Located(column)("column") + op("op") - value).set_name("a comparison (column op value)")
    AND = pp.CaselessKeyword("and") | pp.Literal(",")
    OR = pp.CaselessKeyword("or")
    NOT = pp.CaselessKeyword("not")
    return pp.infix_notation(
        comparison, [(NOT, 1, pp.OpAssoc.RIGHT), (AND, 2, pp.OpAssoc.LEFT), (OR, 2, pp.OpAssoc.LEFT)]
    ).set_name("filter")


_GRAMMAR = _build()


def compile_where(text: str, columns: Collection[str]) -> pl.Expr:
    """Compile a ``--where`` expression for a frame with ``columns``; errors say the column (1-based)."""
    try:
        tree = _GRAMMAR.parse_string(text, parse_all=True)
    except pp.ParseBaseException as exc:
        raise FilterError(f"expected {exc.msg.removeprefix('Expected ')}", text, exc.loc + 1) from None
    return _expr(tree[0], text, set(columns))


def _expr(node: pp.ParseResults, text: str, columns: set[str]) -> pl.Expr:
    if "op" in node:  # a comparison
        located = node["column"]
        name, start = located[1][0], located[0]
        if name not in columns:
            known = ", ".join(sorted(columns))
            raise FilterError(f"no column {name!r} (columns: {known})", text, start + 1)
        col = pl.col(name)
        op = node["op"]
        if "number" in node:
            value: object = float(node["number"]) if "." in node["number"] else int(node["number"])
        else:
            value = node["text"]
        if op in ("~", "!~"):
            matched = col.cast(pl.String).str.contains(str(value)).fill_null(False)
            return ~matched if op == "!~" else matched
        if isinstance(value, str):
            col = col.cast(pl.String)
        compare = {
            "=": col == value, "==": col == value, "!=": col != value,
            ">": col > value, ">=": col >= value, "<": col < value, "<=": col <= value,
        }[op]  # fmt: skip
        return compare.fill_null(False)
    items = list(node)
    if isinstance(items[0], str) and items[0].lower() == "not":
        return ~_expr(items[1], text, columns)
    result = _expr(items[0], text, columns)
    for i in range(1, len(items), 2):
        right = _expr(items[i + 1], text, columns)
        result = (result | right) if items[i].lower() == "or" else (result & right)
    return result


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, latest: dt.datetime | None) -> dt.datetime:
    """An ISO-8601 time, or a duration (``15m``, ``2h``) back from the latest request in the log."""
    m = _DURATION.match(text.strip())
    if m:
        if latest is None:
            raise FilterError("a relative time needs requests with start_time", text, 1)
        return latest - dt.timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise FilterError("expected an ISO-8601 time (2026-11-25T20:31:00Z) or a duration (15m, 2h)", text, 1) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def narrow(
    log: AccessLog, *, where: str | None = None, since: str | None = None, until: str | None = None
) -> AccessLog:
    """The same log with only the requests that pass ``--where`` and fall in ``[since, until)``.

    Line counts stay those of the whole input: filtering chooses requests, it does not lose lines.
    """
    requests = log.requests
    conditions: list[pl.Expr] = []
    if where:
        conditions.append(compile_where(where, requests.columns))
    if (since or until) and "start_time" in requests.columns:
        latest = requests.select(pl.col("start_time").max()).item()
        if since:
            conditions.append(pl.col("start_time") >= parse_time(since, latest))
        if until:
            conditions.append(pl.col("start_time") < parse_time(until, latest))
    if not conditions:
        return log
    return AccessLog(requests.filter(pl.all_horizontal(conditions)), log.unparsed, log.other, log.format)
