"""The grammar of Envoy's format-string language, and nothing else.

Envoy scans a format left to right: any character but ``%`` is literal, ``%%`` is a
literal ``%``, and every other ``%`` must open a command ``%NAME[(ARG)][:N]%`` whose
NAME is upper-case letters, digits and ``_``. ARG is matched lazily: it ends at the
first ``)`` directly followed by ``%`` or ``:<digits>%``, so it may itself hold ``(``
and ``)`` (``%CEL(size(request.path)):5%``). This module turns a format string into
tokens with their positions; what the tokens mean lives in ``operators.py``.

BNF::

    format   ::= token*
    token    ::= "%%" | command | literal
    command  ::= "%" NAME [ "(" ARG ")" ] [ ":" DIGITS ] "%"
    NAME     ::= [A-Z0-9_]+
    literal  ::= [^%]+
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyparsing as pp

from meshlog.errors import FormatError


@dataclass(frozen=True)
class Literal:
    """Literal text between commands (``%%`` already turned into ``%``)."""

    text: str
    column: int


@dataclass(frozen=True)
class Command:
    """One ``%NAME(arg):N%`` command, as written."""

    name: str
    arg: str | None
    max_len: int | None
    column: int
    source: str

    def __str__(self) -> str:
        return self.source


Token = Literal | Command


def _build() -> pp.ParserElement:
    percent = pp.Literal("%%").set_name("'%%'")
    percent.set_parse_action(lambda s, loc, t: Literal("%", loc + 1))

    name = pp.Word("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_").set_name("operator name")
    # Envoy's lazy argument: stop at the first ")" that is followed by "%" or ":N%".
    arg = pp.Regex(r"\((?P<argtext>.*?)\)(?=%|:[0-9]+%)", flags=re.DOTALL).set_name("(argument)")
    arg.set_parse_action(lambda t: t["argtext"])
    max_len = pp.Suppress(":") + pp.Word(pp.nums).set_name("length")("max_len")
    pct = pp.Suppress("%")
    command = (pct + name("name") + pp.Opt(arg("arg")) + pp.Opt(max_len) + pct).set_name("command")

    def make_command(s: str, loc: int, t: pp.ParseResults) -> Command:
        arg_text = t.get("arg")
        length = t.get("max_len")
        source = "%" + t["name"]
        source += f"({arg_text})" if arg_text is not None else ""
        source += f":{length}" if length is not None else ""
        return Command(
            name=t["name"],
            arg=arg_text,
            max_len=int(length) if length is not None else None,
            column=loc + 1,
            source=source + "%",
        )

    command.set_parse_action(make_command)
    literal = pp.Regex(r"[^%]+", flags=re.DOTALL).set_name("literal text")
    literal.set_parse_action(lambda s, loc, t: Literal(t[0], loc + 1))
    grammar = pp.ZeroOrMore(percent | command | literal) + pp.StringEnd()
    # pyparsing expands tabs by default; a TAB in a format is a literal TAB in every line.
    return grammar.leave_whitespace().parse_with_tabs()


_GRAMMAR = _build()


def tokenize(fmt: str) -> list[Token]:
    """Split a format string into literals and commands, or raise ``FormatError`` at the bad ``%``."""
    try:
        tokens = list(_GRAMMAR.parse_string(fmt, parse_all=True))
    except pp.ParseException as exc:
        raise _explain(fmt, exc.loc) from None
    return _merge_literals(tokens)


def _merge_literals(tokens: list[Token]) -> list[Token]:
    merged: list[Token] = []
    for token in tokens:
        last = merged[-1] if merged else None
        if isinstance(token, Literal) and isinstance(last, Literal):
            merged[-1] = Literal(last.text + token.text, last.column)
        else:
            merged.append(token)
    return merged


def _explain(fmt: str, loc: int) -> FormatError:
    """Say in words why the ``%`` at ``loc`` opens no valid command."""
    rest = fmt[loc:]
    lower = re.match(r"%([A-Za-z0-9_]+)(?:\(.*?\))?(?::[0-9]+)?%", rest, re.DOTALL)
    if lower and not lower.group(1).isupper():
        message = f"operator names are upper case: {lower.group(0)!r} (did you mean %{lower.group(1).upper()}%?)"
    elif re.match(r"%[A-Z0-9_]+(?:\([^%]*?\))?:(?![0-9]+%)", rest):
        message = "the length after ':' must be digits followed by '%'"
    elif opened := re.match(r"%[A-Z0-9_]+\(", rest):
        message = f"unterminated argument of the {opened.group(0)!r} opened here: expected ')' followed by '%' or ':N%'"
    elif opened := re.match(r"%[A-Z0-9_]+", rest):
        message = f"unterminated command {opened.group(0)!r} opened here: expected a closing '%'"
    else:
        message = "'%' does not start a valid command; write %% for a literal percent sign"
    return FormatError(message, fmt, loc + 1)
