"""Text lines → typed fields by the compiled scanner (``_scanner.c``), when it is built.

The polars road is ``text.extract`` (the split plan as polars kernels, the regex for what the
plan refuses) then ``cast.cast_fields``; it stays the reference. This is the C road to the same
frame: the plan (pure data, ``formats/plan.py``) is flattened into a tuple of nodes the extension
walks over the line column's Arrow buffers, reading each wanted field as it passes, typed by
``cast.py``'s own rules (which texts are unset, the cluster's ``;``) into Arrow columns polars
takes without a copy. A line the scanner does not vouch for (a separator count off, a value it
leaves to polars' casts) goes down the polars road, so reasons and edge cases are the reference's.

Without the extension (no C compiler at install) or with ``MESHLOG_PURE=1``, ``available()`` is
False and only the polars road is taken.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from meshlog.formats.compiler import CompiledFormat
from meshlog.formats.plan import Const, Leaf, Plan, Split
from meshlog.parse.cast import DATETIME, cast_fields, dtype_of, strips_semicolon, unset_texts

try:
    from meshlog.parse import _scanner  # type: ignore[attr-defined]
except ImportError:  # not built: no C compiler when meshlog was installed
    _scanner = None

_CONST, _LEAF, _SPLIT = 0, 1, 2  # _scanner.c: node kinds
_TEXT, _INTEGER, _TIME = 0, 1, 2  # slot modes
_UNSET_DASH, _UNSET_EMPTY, _STRIP_SEMICOLON = 1, 2, 4  # text slot flags
_MAX_PARTS = 256  # _scanner.c: MAX_PARTS
_ISO_MS = "%Y-%m-%dT%H:%M:%S%.fZ"  # the chrono format of Envoy's default START_TIME, the one time read in C

Node = tuple[int, int, bytes, bytes, tuple[int, ...]]


def built() -> bool:
    """Whether the extension was compiled into this install."""
    return _scanner is not None


def available() -> bool:
    """Whether parsing uses the extension: built, and not turned off by ``MESHLOG_PURE=1``."""
    return _scanner is not None and os.environ.get("MESHLOG_PURE", "") in ("", "0")


@dataclass(frozen=True)
class _Program:
    """A plan flattened for the extension: nodes in preorder (node 0 the root), the (mode, flags) of
    each output slot, and the field each slot holds."""

    nodes: tuple[Node, ...]
    slots: tuple[tuple[int, int], ...]
    fields: tuple[int, ...]


def _slot(compiled: CompiledFormat, i: int) -> tuple[int, int]:
    """How the scanner reads field ``i``: ``cast._typed``'s rules, as a mode and flags."""
    f = compiled.fields[i]
    dtype = dtype_of(f)
    if dtype == pl.Int64:
        return _INTEGER, 0
    if dtype == DATETIME:
        assert f.time is not None
        return (_TIME, 0) if f.time.chrono == _ISO_MS and not f.time.has_zone else (-1, 0)
    flags = _STRIP_SEMICOLON if strips_semicolon(f) else 0
    for text in unset_texts(f):
        flags |= {"-": _UNSET_DASH, "": _UNSET_EMPTY}[text]
    return _TEXT, flags


@functools.lru_cache(maxsize=64)
def _program(compiled: CompiledFormat, wanted: tuple[int, ...]) -> _Program | None:
    """The plan for the extension, or None when it has a piece the scanner does not walk (fields
    that touch, read by a regex; a time in a format other than Envoy's default)."""
    plan = compiled.plan
    if plan is None or compiled.encoding != "text":
        return None
    slots = {i: _slot(compiled, i) for i in wanted}
    if any(mode < 0 for mode, _ in slots.values()):
        return None
    nodes: list[Node] = []
    order: list[int] = []

    def add(node: Plan) -> int | None:
        at = len(nodes)
        if isinstance(node, Const):
            nodes.append((_CONST, -1, node.text.encode(), b"", ()))
        elif isinstance(node, Leaf):
            slot = -1
            if node.field in slots:
                slot = len(order)
                order.append(node.field)
            nodes.append((_LEAF, slot, node.prefix.encode(), node.suffix.encode(), ()))
        elif isinstance(node, Split) and len(node.parts) <= _MAX_PARTS:
            nodes.append((_SPLIT, -1, b"", b"", ()))
            children = [add(part) for part in node.parts]
            if any(c is None for c in children):
                return None
            nodes[at] = (_SPLIT, -1, node.sep.encode(), b"", tuple(c for c in children if c is not None))
        else:  # a Regex piece
            return None
        return at

    if add(plan) is None:
        return None
    return _Program(tuple(nodes), tuple(slots[i] for i in order), tuple(order))


class _Capsules:
    """The extension's (schema, array) pair, offered to polars through the Arrow PyCapsule interface."""

    def __init__(self, pair: tuple[Any, Any]) -> None:
        self._pair = pair

    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple[Any, Any]:
        return self._pair


VOUCHED, REFUSED, UNDECIDED = 0, 1, 2  # _scanner.c: why a line is (not) vouched for


def cut(line: pl.Series, compiled: CompiledFormat, wanted: Sequence[int] | None = None) -> pl.DataFrame | None:
    """``_why`` and the wanted fields' typed columns (named as the contract says, in field order): the
    scanner's reading of every line. ``_why`` is ``VOUCHED``, ``REFUSED`` (the plan's separator counts
    fail) or ``UNDECIDED`` (a value is left to polars' casts); the values of a line not vouched for
    are null. None when the extension is not in use or cannot walk this format."""
    if not available():
        return None
    fields = tuple(range(len(compiled.fields))) if wanted is None else tuple(sorted(wanted))
    program = _program(compiled, fields)
    if program is None:
        return None
    assert _scanner is not None
    frame = pl.DataFrame(_Capsules(_scanner.cut(line.__arrow_c_stream__(), program.nodes, program.slots)))
    names = {f"_s{slot}": compiled.fields[i].column for slot, i in enumerate(program.fields)}
    return frame.rename(names).select("_why", *(compiled.fields[i].column for i in fields))


def typed_fields(
    lines: pl.DataFrame, compiled: CompiledFormat, fields: Sequence[int] | None
) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame] | None:
    """What ``text.extract`` then ``cast.cast_fields`` give, by the scanner: the typed rows (every
    column of ``lines`` but ``line``, then the fields), the row numbers the format does not match,
    and ``_row, reason`` for rows that fit it two ways or hold a value that does not fit its type.
    None when the scanner is not used (the caller takes the polars road)."""
    from meshlog.parse import text

    found = cut(lines["line"], compiled, fields)
    if found is None:
        return None
    keep = [c for c in lines.columns if c != "line"]
    why = found["_why"]
    fast = pl.concat([lines.select(keep), found.drop("_why")], how="horizontal")
    if not (why != VOUCHED).any():
        return fast, pl.Series(text.ROW, [], dtype=pl.UInt32), pl.DataFrame(schema=text.AMBIGUOUS_SCHEMA)
    # The lines the scanner does not vouch for take the polars road as they would have: a refused
    # line straight to the regex (the plan would refuse it too), an undecided one through the plan.
    wanted = None if fields is None else list(fields)
    goods, unmatched, bad = [], [], []
    for kind, use_plan in ((REFUSED, False), (UNDECIDED, True)):
        at = (why == kind).arg_true()
        if not at.len():
            continue
        again = lines[at].with_columns(at.alias("_at"))
        raw, missed, ambiguous = text.extract(again, compiled, use_plan=use_plan, fields=wanted)
        good, failed = cast_fields(raw, compiled)
        goods.append(good)
        unmatched.append(missed)
        bad += [ambiguous, failed]
    good = pl.concat(goods)
    at = good["_at"]
    columns = [c for c in fast.columns if c not in keep]
    fast = fast.with_columns(fast[c].clone().scatter(at, good[c]) for c in columns)
    kept = (why == VOUCHED).scatter(at, True)
    return fast.filter(kept), pl.concat(unmatched).sort(), pl.concat(bad)


__all__ = ["available", "built", "cut", "typed_fields"]
