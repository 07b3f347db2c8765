"""The split plan: how to cut a text line into fields with plain string splits instead of a regex.

One regex with a capture group per field is correct but slow on whole columns (measured
5 s per million Istio lines). Envoy's text formats are fields between literal
separators, so a line can be cut by splitting on a separator character, checking the
number of pieces, and recursing into each piece. When a line has exactly as many
separators as the format's literals, no field holds one, so the split is the one the
strict regex would find; lines that fail any count (a user agent with a ``"`` in it)
go to the regex instead. The plan is pure data; ``meshlog.parse.text`` turns it into
polars expressions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from meshlog.formats.grammar import Literal

# Separators tried first: quotes delimit free-text fields, spaces the rest.
_PREFERRED = ('"', " ", "\t", "|", ",", ";")


@dataclass(frozen=True)
class Const:
    """A piece that is only literal text."""

    text: str


@dataclass(frozen=True)
class Leaf:
    """A piece holding one field between a literal prefix and suffix."""

    field: int
    prefix: str
    suffix: str


@dataclass(frozen=True)
class Split:
    """Split on ``sep``: exactly ``len(parts) - 1`` occurrences, each part planned on its own."""

    sep: str
    parts: tuple[Plan, ...]


@dataclass(frozen=True)
class Regex:
    """Fields that touch with no separator: a small regex on this piece only."""

    tokens: tuple[Literal | int, ...]


Plan = Const | Leaf | Split | Regex


def build_plan(tokens: Sequence[Literal | int], fixed_chars: Sequence[frozenset[str]]) -> Plan:
    """Plan a token sequence; ``fixed_chars[i]`` are characters field ``i`` always contains."""
    fields = [t for t in tokens if isinstance(t, int)]
    if not fields:
        return Const("".join(t.text for t in tokens if isinstance(t, Literal)))
    if len(fields) == 1:
        i = tokens.index(fields[0])
        prefix = "".join(t.text for t in tokens[:i] if isinstance(t, Literal))
        suffix = "".join(t.text for t in tokens[i + 1 :] if isinstance(t, Literal))
        return Leaf(fields[0], prefix, suffix)
    sep = _choose_separator(tokens, fixed_chars)
    if sep is None:
        return Regex(tuple(tokens))
    return Split(sep, tuple(build_plan(part, fixed_chars) for part in _split_tokens(tokens, sep)))


def _choose_separator(tokens: Sequence[Literal | int], fixed_chars: Sequence[frozenset[str]]) -> str | None:
    first = next(i for i, t in enumerate(tokens) if isinstance(t, int))
    last = max(i for i, t in enumerate(tokens) if isinstance(t, int))
    inner = Counter("".join(t.text for t in tokens[first:last] if isinstance(t, Literal)))
    banned = set().union(*(fixed_chars[t] for t in tokens if isinstance(t, int)))
    candidates = [c for c in inner if c not in banned]
    if not candidates:
        return None
    preferred = [c for c in _PREFERRED if c in candidates]
    return preferred[0] if preferred else max(candidates, key=lambda c: inner[c])


def _split_tokens(tokens: Sequence[Literal | int], sep: str) -> list[list[Literal | int]]:
    parts: list[list[Literal | int]] = [[]]
    for token in tokens:
        if isinstance(token, int):
            parts[-1].append(token)
            continue
        pieces = token.text.split(sep)
        for n, piece in enumerate(pieces):
            if n:
                parts.append([])
            if piece:
                parts[-1].append(Literal(piece, token.column))
    return parts
