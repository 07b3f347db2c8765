"""Format string → ``CompiledFormat``: the fields, their types, one strict regex and a split plan.

Compiling happens once per run; parsing then works on whole polars columns
(``meshlog.parse``). Envoy's own config-time checks are repeated here with Envoy's
words, so a format meshlog accepts is one Envoy accepts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from typing import Literal as Lit

from meshlog.errors import FormatError
from meshlog.formats import grammar
from meshlog.formats.grammar import Command, Literal
from meshlog.formats.operators import (
    ALIASES,
    HEADER_OPERATORS,
    NO_WHITESPACE,
    Args,
    Kind,
    column_name,
    kind_of,
    lookup,
)
from meshlog.formats.plan import Plan, build_plan
from meshlog.formats.timefmt import TimeFormat, compile_time_format

Encoding = Lit["text", "json"]

_KIND_PATTERNS: dict[Kind, str] = {
    Kind.INTEGER: r"-|\d*",
    Kind.MILLISECONDS: r"-|\d*",
    Kind.BYTES: r"-|\d*",
    Kind.FLAGS: r"-|[A-Za-z0-9_,]*",
}
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z:]+")

# What a kind of value can hold, so that a separator inside another field (Istio's cluster
# `outbound|9080||reviews…` in a `|`-separated format) cannot be taken for the field's end. Lines
# the shapes do not fit are read again with any non-blank text allowed (``lenient``: what Envoy
# prints in odd cases). `{free}` is `\S*?`, or `\S*` for the second reading that tells an
# ambiguous line (``CompiledFormat.regex_for(greedy=True)``).
_IPV4 = r"(?:\d{1,3}\.){3}\d{1,3}"
_IPV6 = r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(?:%[\w.-]+)?"
_ENDPOINT = rf"{_IPV4}(?::\d{{1,5}})?|\[{_IPV6}\](?::\d{{1,5}})?|{_IPV6}"
# envoy://<internal listener>/<endpoint id> (ambient waypoints: envoy://connect_originate/10.0.0.1:8080)
_ADDRESS = rf"-|{_ENDPOINT}|[/@]{{free}}|envoy://[\w.:-]+/(?:{_ENDPOINT}|[\w.:-]*)"
_CLUSTER = r"-|(?:inbound|outbound|inbound-vip|outbound-vip)\|\d*\|[^|\s]*\|[^|\s]*|[^|\s]*"
_PATH = r"-|[/*]{free}|[A-Za-z][A-Za-z0-9+.-]*://{free}"
_CLUSTER_OPERATORS = frozenset({"UPSTREAM_CLUSTER", "UPSTREAM_CLUSTER_RAW"})
_PATH_COMMANDS = frozenset({("REQ", ":PATH"), ("REQ", "X-ENVOY-ORIGINAL-PATH?:PATH"), ("PATH", None)})


@dataclass(frozen=True)
class Field:
    """One column of the parsed frame and where it comes from."""

    column: str
    kind: Kind
    source: str  # the command as written (``%REQ(USER-AGENT):10%``), or the JSON value
    time: TimeFormat | None = None
    max_len: int | None = None
    token: bool = False  # never holds whitespace
    unset: str = "-"  # what Envoy prints in text mode when there is no value
    shape: str | None = None  # a tighter pattern of what the operator prints (``{free}`` = fallback)

    @property
    def pattern(self) -> str:
        """Regex (no groups) for this field's text in a text-mode line."""
        return self.pattern_of()

    def pattern_of(self, *, greedy: bool = False, lenient: bool = False) -> str:
        """The pattern. ``greedy`` reads the free-form parts the other way (lazy ↔ greedy), so that a
        line both readings fit differently is known to be ambiguous; ``lenient`` lets a shaped
        field (address, cluster, path) hold any non-blank text."""
        if self.kind is Kind.TIMESTAMP and self.time is not None:
            return rf"-|{self.time.regex}"
        if self.shape is not None:
            free = r"\S*" if greedy else r"\S*?"
            return self.shape.replace("{free}", free) + (f"|{free}" if lenient else "")
        if self.token:
            return r"\S*?" if greedy else r"\S*"
        if self.kind in _KIND_PATTERNS:
            return _KIND_PATTERNS[self.kind]
        return ".*" if greedy else ".*?"


@dataclass(frozen=True)
class CompiledFormat:
    """A format ready to parse lines: text (literals + fields) or JSON (key → field)."""

    source: str
    encoding: Encoding
    fields: tuple[Field, ...]
    name: str | None = None
    tokens: tuple[Literal | int, ...] = ()  # text: literals and indexes into ``fields``
    json_keys: tuple[str, ...] = ()  # json: the key each field is read from
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def columns(self) -> list[str]:
        return [f.column for f in self.fields]

    @property
    def regex(self) -> str:
        """One anchored regex with a named group per field; the strict reference parser."""
        return "^" + self.regex_prefix(len(self.fields), groups=True) + "$"

    def regex_for(self, *, greedy: bool = False, lenient: bool = False) -> str:
        """``regex`` with free-form parts read the other way (``greedy``: where both readings match a
        line with different fields, it has two) or with shaped fields holding any text (``lenient``)."""
        return "^" + self.regex_prefix(len(self.fields), groups=True, greedy=greedy, lenient=lenient) + "$"

    def regex_prefix(
        self, n_fields: int, *, groups: bool = False, greedy: bool = False, lenient: bool = False
    ) -> str:
        """Regex for the format up to and including the literal after field ``n_fields``."""
        parts: list[str] = []
        seen = 0
        for token in self.tokens:
            if isinstance(token, Literal):
                parts.append(re.escape(token.text))
                continue
            if seen == n_fields:
                break
            pattern = self.fields[token].pattern_of(greedy=greedy, lenient=lenient)
            parts.append(f"(?P<_f{token}>{pattern})" if groups else f"(?:{pattern})")
            seen += 1
        return "".join(parts)

    @property
    def plan(self) -> Plan | None:
        """The fast split plan for text formats (see ``plan.py``)."""
        return build_plan(self.tokens, [_fixed_chars(f) for f in self.fields]) if self.encoding == "text" else None


def _fixed_chars(f: Field) -> frozenset[str]:
    """Characters a field always prints (a timestamp's separators): never split on them."""
    if f.kind is Kind.TIMESTAMP and f.time is not None:
        return frozenset(c for c in f.time.envoy if not c.isalnum() and c != "%")
    return frozenset()


def compile_format(fmt: str, *, name: str | None = None) -> CompiledFormat:
    """Compile a text format string, or a JSON map given as a JSON object string."""
    stripped = fmt.strip()
    if stripped.startswith("{"):
        try:
            mapping = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise FormatError(f"JSON format map is not valid JSON: {exc.msg}", fmt, exc.pos + 1) from None
        if isinstance(mapping, dict):
            return compile_json_format(mapping, name=name, source=fmt)
    return compile_text_format(fmt, name=name)


def compile_text_format(fmt: str, *, name: str | None = None) -> CompiledFormat:
    """Compile a text format: one record per line, the trailing newline is the record end."""
    body = _strip_record_end(fmt)
    if not body:
        raise FormatError("the format is empty: Envoy would log nothing", fmt, 1)
    if "\n" in body:
        raise FormatError(
            "a newline inside the format splits every record over two lines; meshlog reads one record per line",
            fmt,
            body.index("\n") + 1,
        )
    tokens = grammar.tokenize(body)
    fields: list[Field] = []
    out: list[Literal | int] = []
    warnings: list[str] = []
    names: dict[str, int] = {}
    for token in tokens:
        if isinstance(token, Literal):
            out.append(token)
            continue
        _check_command(token, fmt, warnings)
        if out and not isinstance(out[-1], Literal):
            warnings.append(
                f"{fields[out[-1]].source} and {token.source} touch with no text between them: "
                "the split between them is a guess"
            )
        fields.append(_field(token, _unique(column_name(token.name, token.arg), names), fmt))
        out.append(len(fields) - 1)
    if not fields:
        raise FormatError("the format has no %OPERATOR%: every line would be the same text", fmt, 1)
    return CompiledFormat(fmt, "text", tuple(fields), name, tuple(out), warnings=tuple(warnings))


def compile_json_format(
    mapping: dict[str, Any], *, name: str | None = None, source: str | None = None
) -> CompiledFormat:
    """Compile Envoy's ``json_format`` map: each key becomes a column, typed by its operator."""
    src = source if source is not None else json.dumps(mapping)
    fields: list[Field] = []
    warnings: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, str):
            tokens = grammar.tokenize(value) if value else []
            commands = [t for t in tokens if isinstance(t, Command)]
            for command in commands:
                _check_command(command, src, warnings)
            if len(tokens) == 1 and commands:  # one operator alone keeps its type in typed JSON
                fields.append(_field(commands[0], key, src))
            else:  # mixed text is always a JSON string
                fields.append(Field(key, Kind.STRING, value))
        elif isinstance(value, (dict, list)):
            fields.append(Field(key, Kind.JSON, json.dumps(value)))
        else:
            fields.append(Field(key, Kind.STRING, json.dumps(value)))
    if not fields:
        raise FormatError("the JSON format map has no keys", src, 1)
    return CompiledFormat(src, "json", tuple(fields), name, json_keys=tuple(mapping), warnings=tuple(warnings))


def _strip_record_end(fmt: str) -> str:
    r"""Drop the record terminator: a real newline, or ``\n`` typed on a command line."""
    if fmt.endswith("\\n"):
        return fmt[:-2]
    return fmt.removesuffix("\n")


def _unique(column: str, names: dict[str, int]) -> str:
    names[column] = names.get(column, 0) + 1
    return column if names[column] == 1 else f"{column}_{names[column]}"


def _field(command: Command, column: str, fmt: str) -> Field:
    kind = kind_of(command.name, command.arg)
    time = None
    if kind is Kind.TIMESTAMP:
        arg_column = command.column + len(command.name) + 2  # after "%NAME("
        time = compile_time_format(command.arg, local=command.name.endswith("_LOCAL"), fmt=fmt, column=arg_column)
    if command.max_len is not None and kind is not Kind.STRING:
        kind = Kind.STRING  # a truncated value is text, whatever it was
    token = command.name in NO_WHITESPACE and command.arg is None
    return Field(
        column, kind, command.source, time, command.max_len, token, lookup(command.name).unset, _shape(command, kind)
    )


def _shape(command: Command, kind: Kind) -> str | None:
    """The tighter pattern of what an operator prints, when it has one and is not truncated."""
    if command.max_len is not None:
        return None
    if kind is Kind.ADDRESS:
        return _ADDRESS
    if command.name in _CLUSTER_OPERATORS and command.arg is None:
        return _CLUSTER
    if (ALIASES.get(command.name, command.name), command.arg) in _PATH_COMMANDS:
        return _PATH
    return None


def _check_command(command: Command, fmt: str, warnings: list[str]) -> None:
    """Reject what Envoy 1.40 rejects at config load, in Envoy's words."""
    op = lookup(command.name)
    if not op.known:
        warnings.append(f"unknown operator {command.source} (not in Envoy 1.40): parsed as text")
        return
    has_arg, has_len = command.arg is not None, command.max_len is not None
    if op.args is Args.NONE and (has_arg or has_len):
        raise FormatError(f"{command.name} does not take any parameters or length", fmt, command.column)
    if op.args in (Args.REQUIRED, Args.REQUIRED_LEN) and not command.arg:
        raise FormatError(f"{command.name} requires parameters", fmt, command.column)
    if op.args in (Args.REQUIRED, Args.OPTIONAL) and has_len:
        raise FormatError(f"{command.name} does not allow length to be specified.", fmt, command.column)
    if ALIASES.get(command.name, command.name) in HEADER_OPERATORS and command.arg:
        headers = command.arg.split("?")
        if len(headers) > 2:
            raise FormatError(f"More than 1 alternative header specified in token: {command.arg}", fmt, command.column)
        if not all(_HEADER_NAME.fullmatch(h) for h in headers):
            raise FormatError(
                "Invalid header configuration. Format string contains invalid characters.",
                fmt,
                command.column,
            )
