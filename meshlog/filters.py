"""The ``--where`` language: small boolean filters over request columns, compiled to a polars expression.

    response_code>=500
    response_flags~UF and upstream_cluster~reviews
    not (method=GET or method=HEAD), duration>1000

Comparisons ``= == != > >= < <=`` compare with a number or text; ``~`` / ``!~`` test a regex
(``response_flags~UF``); ``,`` means ``and``. Values may be quoted with ``"`` or ``'``.
"""

from __future__ import annotations

from collections.abc import Collection

import polars as pl
import pyparsing as pp

from meshlog.errors import FilterError

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
