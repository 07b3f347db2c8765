"""Broken format strings: exact messages, the column, and the caret a user sees."""

from __future__ import annotations

import pytest

from meshlog.errors import FormatError
from meshlog.formats.compiler import compile_format


@pytest.mark.parametrize(
    ("fmt", "column", "message"),
    [
        ("100%", 4, "'%' does not start a valid command; write %% for a literal percent sign"),
        ("%REQ(x)% %", 10, "'%' does not start a valid command; write %% for a literal percent sign"),
        ("%duration%", 1, "operator names are upper case: '%duration%' (did you mean %DURATION%?)"),
        (
            "x %REQ(USER-AGENT",
            3,
            "unterminated argument of the '%REQ(' opened here: expected ')' followed by '%' or ':N%'",
        ),
        ("%REQ(x):ab%", 1, "the length after ':' must be digits followed by '%'"),
        ("[%DURATION", 2, "unterminated command '%DURATION' opened here: expected a closing '%'"),
        # Envoy's own words, from `envoy --mode validate` on 1.40
        ("%DURATION(x)%", 1, "DURATION does not take any parameters or length"),
        ("a %DURATION:3%", 3, "DURATION does not take any parameters or length"),
        ("%REQ%", 1, "REQ requires parameters"),
        ("%START_TIME:3%", 1, "START_TIME does not allow length to be specified."),
        ("%UPSTREAM_METADATA(a:b):3%", 1, "UPSTREAM_METADATA does not allow length to be specified."),
        ("%REQ(A?B?C)%", 1, "More than 1 alternative header specified in token: A?B?C"),
        ("%REQ(A B)%", 1, "Invalid header configuration. Format string contains invalid characters."),
        ("%START_TIME(%Y%n)%", 15, "a time format cannot contain a newline (%n)"),
        ("", 1, "the format is empty: Envoy would log nothing"),
        ("just text\n", 1, "the format has no %OPERATOR%: every line would be the same text"),
        (
            "%DURATION%\n%BYTES_SENT%\n",
            11,
            "a newline inside the format splits every record over two lines; meshlog reads one record per line",
        ),
    ],
)
def test_broken_formats(fmt: str, column: int, message: str) -> None:
    with pytest.raises(FormatError) as info:
        compile_format(fmt)
    assert info.value.message == message
    assert info.value.column == column
    assert str(info.value) == f"format error at column {column}: {message}"


def test_caret_points_at_the_column() -> None:
    with pytest.raises(FormatError) as info:
        compile_format('[%START_TIME%] "%REQ(:METHOD)% 100% done"')
    assert info.value.caret() == '  [%START_TIME%] "%REQ(:METHOD)% 100% done"\n' + " " * 36 + "^"


def test_unknown_operator_compiles_as_text_with_one_warning() -> None:
    fmt = compile_format("%RESPONSE_CODE% %NOT_AN_OPERATOR%")
    assert [(f.column, f.kind.value) for f in fmt.fields] == [
        ("response_code", "integer"),
        ("not_an_operator", "string"),
    ]
    assert fmt.warnings == ("unknown operator %NOT_AN_OPERATOR% (not in Envoy 1.40): parsed as text",)


def test_trailing_newline_is_the_record_end() -> None:
    typed_on_a_command_line = compile_format("%DURATION% %BYTES_SENT%\\n")
    from_a_config_file = compile_format("%DURATION% %BYTES_SENT%\n")
    assert typed_on_a_command_line.regex == from_a_config_file.regex == r"^(?P<_f0>-|\d*)\ (?P<_f1>-|\d*)$"
