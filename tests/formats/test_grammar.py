"""Format text → tokens: Envoy's tokenizer rules, one case per row."""

from __future__ import annotations

import pytest

from meshlog.formats.grammar import Command, Literal, tokenize


def shape(fmt: str) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for t in tokenize(fmt):
        if isinstance(t, Literal):
            out.append(("lit", t.text))
        else:
            assert isinstance(t, Command)
            out.append(("cmd", t.name, repr(t.arg), repr(t.max_len)))
    return out


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("%DURATION%", [("cmd", "DURATION", "None", "None")]),
        ("a %% b", [("lit", "a % b")]),
        ("100%%%DURATION%", [("lit", "100%"), ("cmd", "DURATION", "None", "None")]),
        ("%REQ(:METHOD)%", [("cmd", "REQ", "':METHOD'", "None")]),
        ("%REQ(USER-AGENT):10%", [("cmd", "REQ", "'USER-AGENT'", "10")]),
        ("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", [("cmd", "REQ", "'X-ENVOY-ORIGINAL-PATH?:PATH'", "None")]),
        # Envoy 1.40's lazy argument: ')' is allowed unless followed by '%' or ':N%'
        ("%CEL(size(request.path)):5%", [("cmd", "CEL", "'size(request.path)'", "5")]),
        ("%START_TIME(%s.%3f)%", [("cmd", "START_TIME", "'%s.%3f'", "None")]),
        (
            "%START_TIME(%Y-%m-%dT%H:%M:%S%z)% x",
            [("cmd", "START_TIME", "'%Y-%m-%dT%H:%M:%S%z'", "None"), ("lit", " x")],
        ),
        (
            "[%A%][%B%]",
            [("lit", "["), ("cmd", "A", "None", "None"), ("lit", "]["), ("cmd", "B", "None", "None"), ("lit", "]")],
        ),
        ("%REQ():0%", [("cmd", "REQ", "''", "0")]),
        ("%A%\t%B%", [("cmd", "A", "None", "None"), ("lit", "\t"), ("cmd", "B", "None", "None")]),
    ],
)
def test_tokens(fmt: str, expected: list[tuple[str, ...]]) -> None:
    assert shape(fmt) == expected


def test_columns_are_one_based_positions() -> None:
    tokens = tokenize('[%START_TIME%] "%REQ(:METHOD)%')
    assert [t.column for t in tokens] == [1, 2, 14, 17]
