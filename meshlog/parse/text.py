"""Text-mode extraction: lines → one raw string column per field, vectorised.

Two paths over the same lines. The split plan (``formats/plan.py``) cuts most lines
with ``split_exact`` / ``strip_prefix`` and checks separator counts; the few lines it
cannot vouch for go through the strict anchored regex. Both give the same raw strings;
``cast.py`` types them afterwards.
"""

from __future__ import annotations

import functools
import itertools
import re

import polars as pl

from meshlog.formats.compiler import CompiledFormat
from meshlog.formats.grammar import Literal
from meshlog.formats.plan import Const, Leaf, Plan, Regex, Split

ROW = "_row"


class _PlanExprs:
    """Polars expressions for a plan: staged split columns, leaf values and validity checks."""

    def __init__(self, compiled: CompiledFormat) -> None:
        self.compiled = compiled
        self.stages: list[list[pl.Expr]] = []
        self.values: dict[int, pl.Expr] = {}
        self.checks: list[pl.Expr] = []
        self._names = itertools.count()

    @property
    def ok(self) -> pl.Expr:
        """True for the lines the plan cuts exactly (a lone field needs no check)."""
        return pl.all_horizontal(self.checks).fill_null(False) if self.checks else pl.lit(True)

    def walk(self, node: Plan, expr: pl.Expr, depth: int) -> None:
        if isinstance(node, Const):
            self.checks.append(expr == node.text)
        elif isinstance(node, Leaf):
            value = expr
            if node.prefix:
                self.checks.append(expr.str.starts_with(node.prefix))
                value = value.str.strip_prefix(node.prefix)
            if node.suffix:
                self.checks.append(expr.str.ends_with(node.suffix))
                value = value.str.strip_suffix(node.suffix)
            if node.prefix and node.suffix:  # "x" with prefix "x" and suffix "x" must not pass
                self.checks.append(expr.str.len_bytes() >= len(node.prefix) + len(node.suffix))
            self.values[node.field] = value
        elif isinstance(node, Split):
            name = f"_split{next(self._names)}"
            while len(self.stages) <= depth:
                self.stages.append([])
            n = len(node.parts) - 1
            self.stages[depth].append(expr.str.splitn(node.sep, n + 1).alias(name))
            # Exactly n separators ⇔ the last of the n+1 pieces exists (a missing separator leaves it
            # null) and holds no separator (splitn leaves what follows an extra one in the last piece).
            last = pl.col(name).struct.field(f"field_{n}")
            self.checks.append(last.is_not_null() & ~last.str.contains(node.sep, literal=True))
            for i, part in enumerate(node.parts):
                self.walk(part, pl.col(name).struct.field(f"field_{i}"), depth + 1)
        elif isinstance(node, Regex):
            pattern = "^" + _tokens_regex(self.compiled, node.tokens) + "$"
            groups = expr.str.extract_groups(pattern)
            for token in node.tokens:
                if isinstance(token, int):
                    self.values[token] = groups.struct.field(f"_f{token}")
            self.checks.append(expr.str.contains(pattern))


def _tokens_regex(compiled: CompiledFormat, tokens: tuple[Literal | int, ...]) -> str:
    return "".join(
        re.escape(t.text) if isinstance(t, Literal) else f"(?P<_f{t}>{compiled.fields[t].pattern})" for t in tokens
    )


def extract(
    lines: pl.DataFrame, compiled: CompiledFormat, *, use_plan: bool = True, fields: list[int] | None = None
) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame]:
    """Raw field strings for the lines that match the format, the row numbers that do not, and the
    rows that fit it two ways (``_row``, ``reason``: which field the readings disagree on).

    ``lines`` needs a ``line`` column and a ``_row`` index. The result keeps every other column of
    ``lines`` (source, line_no, what wrappers said) and adds one ``String`` column per field
    (``_f0``, ``_f1``…), in row order.
    """
    raw, unmatched, by_regex = _extract(lines, compiled, use_plan=use_plan, fields=fields)
    raw, ambiguous = _without_ambiguous(raw, compiled, by_regex)
    return raw, unmatched, ambiguous


def _extract(
    lines: pl.DataFrame, compiled: CompiledFormat, *, use_plan: bool, fields: list[int] | None
) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame]:
    """``extract``'s fields and unmatched rows, and the regex's readings of the rows it (not the plan)
    read: ``_row``, ``line``, every ``_fN`` and ``_lenient`` (the tier that read the row)."""
    wanted = list(range(len(compiled.fields))) if fields is None else fields  # every field is still checked
    raw_names = {i: f"_f{i}" for i in wanted}
    keep = [c for c in lines.columns if c != "line"]
    plan = compiled.plan if use_plan else None
    if plan is None:
        slow, matched, readings = _regex_fields(lines, compiled, keep, raw_names)
        by_regex = readings.with_columns(lines[ROW], lines["line"]).filter(matched)
        return slow.filter(matched), lines.filter(~matched)[ROW], by_regex
    fast = _cut(lines, compiled, plan, keep, wanted)
    ok = fast["_ok"]
    none = pl.Series(ROW, [], dtype=pl.UInt32)
    if ok.all():
        return fast.drop("_ok"), none, pl.DataFrame()
    # The few lines the plan refuses go through the regex, and what it finds is written in place:
    # no filter, concat and sort of the whole chunk to put rows back in order.
    refused = ok.not_().arg_true()
    slow, matched, readings = _regex_fields(lines[refused], compiled, [], raw_names)
    at = refused.filter(matched)
    fast = fast.with_columns(fast[c].clone().scatter(at, slow[c].filter(matched)) for c in raw_names.values())
    by_regex = readings.filter(matched).with_columns(lines[ROW].gather(at), lines["line"].gather(at))
    if matched.all():
        return fast.drop("_ok"), none, by_regex
    keep_rows = ok.clone().scatter(at, True)
    return fast.filter(keep_rows).drop("_ok"), lines[refused.filter(~matched)][ROW], by_regex


def _cut(lines: pl.DataFrame, compiled: CompiledFormat, plan: Plan, keep: list[str], wanted: list[int]) -> pl.DataFrame:
    """``keep``, ``_ok`` and the wanted ``_fN``: the plan's cut of every line, by polars' split kernels."""
    exprs = _PlanExprs(compiled)
    exprs.walk(plan, pl.col("line"), 0)
    lf = lines.lazy()
    for stage in exprs.stages:
        lf = lf.with_columns(stage)
    return lf.select(*keep, exprs.ok.alias("_ok"), *(exprs.values[i].alias(f"_f{i}") for i in wanted)).collect()


FEW = 4096  # lines at most that a regex reads in Python's re: polars compiles each pattern per call, re once


@functools.lru_cache(maxsize=64)
def _python_regex(pattern: str) -> re.Pattern[str]:
    """The pattern for Python's ``re`` (``$`` → ``\\Z``: ``$`` would also match before a final newline)."""
    return re.compile(pattern.removesuffix("$") + r"\Z" if pattern.endswith("$") else pattern)


def _groups(lines: pl.Series, pattern: str, n_fields: int) -> pl.DataFrame:
    """``_f0`` … one String column per field: the pattern's groups per line, null where it does not
    match. A few lines (what the plan refused) are read with Python's ``re`` (compiled once per
    pattern), many with polars (compiled per call, fast per line)."""
    names = [f"_f{i}" for i in range(n_fields)]
    if lines.len() <= FEW:
        rx, nulls = _python_regex(pattern), (None,) * n_fields
        rows: list[tuple[str | None, ...]] = []
        for value in lines.to_list():
            m = rx.match(value) if value is not None else None
            rows.append(tuple(map(m.groupdict().__getitem__, names)) if m else nulls)
        return pl.DataFrame(rows, schema=dict.fromkeys(names, pl.String), orient="row")
    return pl.DataFrame({"line": lines}).select(pl.col("line").str.extract_groups(pattern).alias("_g")).unnest("_g")


def _regex_fields(
    lines: pl.DataFrame, compiled: CompiledFormat, keep: list[str], raw_names: dict[int, str]
) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame]:
    """The strict regex's fields for each line (null where it does not match), whether it matched, and
    every field as read (``_fN``) with ``_lenient`` (for the ambiguity check).

    Shaped fields (addresses, clusters, paths) are read by their shape first; only the lines that
    fails are read again with those fields holding any non-blank text (``lenient``)."""
    n = len(compiled.fields)
    names = [f"_f{i}" for i in range(n)]
    strict, lenient = compiled.regex, compiled.regex_for(lenient=True)
    found = pl.concat([lines.select(keep), _groups(lines["line"], strict, n)], how="horizontal")
    tier = pl.Series("_lenient", [False] * found.height, dtype=pl.Boolean)
    missed = found["_f0"].is_null()  # a match sets every group (maybe to ""): null means no match
    if lenient != strict and missed.any():
        at = missed.arg_true()
        again = _groups(lines["line"].gather(at), lenient, n)
        found = found.with_columns(found[c].scatter(at, again[c]) for c in names)
        tier = tier.scatter(at, again["_f0"].is_not_null())
    matched = found["_f0"].is_not_null().alias("line")
    fields = found.select(*keep, *(pl.col(c) for c in raw_names.values()))
    return fields, matched, found.select(names).with_columns(tier)


AMBIGUOUS_SCHEMA = {ROW: pl.UInt32, "reason": pl.String}


def _without_ambiguous(
    raw: pl.DataFrame, compiled: CompiledFormat, by_regex: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read the lines the regex parsed once more with every free-form part taken the other way
    (``regex_for(greedy=True)``, in the tier that read the line): a line whose fields then differ has
    two readings, and which one Envoy wrote cannot be known, so it is unparsed with the field it
    hinges on. The plan's lines are exact (a separator count), so only the regex's few lines are read."""
    empty = pl.DataFrame(schema=AMBIGUOUS_SCHEMA)
    if not by_regex.height or compiled.regex_for(greedy=True) == compiled.regex:
        return raw, empty
    n = len(compiled.fields)
    lenient = by_regex["_lenient"]
    other = _groups(by_regex["line"], compiled.regex_for(greedy=True), n)
    if lenient.any():
        at = lenient.arg_true()
        again = _groups(by_regex["line"].gather(at), compiled.regex_for(greedy=True, lenient=True), n)
        other = other.with_columns(other[c].scatter(at, again[c]) for c in other.columns)
    first = [  # per line: the first field the two readings disagree on, else None
        next((i for i, (x, y) in enumerate(zip(mine, theirs, strict=True)) if y is not None and x != y), None)
        for mine, theirs in zip(
            by_regex.select(f"_f{i}" for i in range(n)).iter_rows(), other.iter_rows(), strict=True
        )
    ] if by_regex.height <= FEW else _first_difference(by_regex, other, n)  # fmt: skip
    hits = [(pos, i) for pos, i in enumerate(first) if i is not None]
    if not hits:
        return raw, empty
    row_ids = by_regex[ROW].to_list()
    reasons: list[tuple[int, str]] = []
    for pos, i in hits:
        mine: str = by_regex[f"_f{i}"][pos] or ""
        theirs: str = other[f"_f{i}"][pos] or ""
        reasons.append((row_ids[pos], _AMBIGUOUS.format(compiled.fields[i].column, mine[:40], theirs[:40])))
    ambiguous = pl.DataFrame(reasons, schema=AMBIGUOUS_SCHEMA, orient="row")
    return raw.join(ambiguous.select(ROW), on=ROW, how="anti", maintain_order="left"), ambiguous


_AMBIGUOUS = 'ambiguous: the line fits the format two ways ({} "{}" or "{}"); a separator stands inside a value'


def _first_difference(mine: pl.DataFrame, theirs: pl.DataFrame, n: int) -> list[int | None]:
    """``_without_ambiguous``'s comparison over whole columns, for many lines."""
    expr = pl.lit(None, dtype=pl.Int64)
    for i in reversed(range(n)):
        a, b = pl.col(f"_f{i}"), pl.col(f"_b_f{i}")
        expr = pl.when(b.is_not_null() & (a != b)).then(pl.lit(i, dtype=pl.Int64)).otherwise(expr)
    both = pl.concat([mine.select(f"_f{i}" for i in range(n)), theirs.rename(lambda c: f"_b{c}")], how="horizontal")
    return both.select(expr.alias("i"))["i"].to_list()


def match_counts(lines: pl.DataFrame, compiled: CompiledFormat) -> tuple[int, int]:
    """(lines the format matches, lines its split plan cuts cleanly): how well a format fits a sample."""
    regex_hits = int(_groups(lines["line"], compiled.regex, len(compiled.fields))["_f0"].is_not_null().sum())
    plan = compiled.plan
    if plan is None or not regex_hits:
        return regex_hits, 0
    exprs = _PlanExprs(compiled)
    exprs.walk(plan, pl.col("line"), 0)
    lf = lines.lazy().select("line")
    for stage in exprs.stages:
        lf = lf.with_columns(stage)
    clean = lf.select(exprs.ok.sum()).collect().item()
    return regex_hits, clean


def failure_reasons(lines: pl.DataFrame, compiled: CompiledFormat) -> pl.Series:
    """Why each line fails: the first field that no longer matches, its column, and what stood there.

    Runs only on lines that failed; it loops over the format's fields, never over lines.
    """
    line = pl.col("line")
    n = len(compiled.fields)
    prefixes = {k: "^(" + compiled.regex_prefix(k) + ")" for k in range(n + 1)}
    reached = pl.lit(0)
    for k in range(1, n + 1):
        reached = pl.when(line.str.contains(prefixes[k])).then(k).otherwise(reached)
    frame = lines.select(line, reached.alias("k"))
    column = pl.lit(0, dtype=pl.UInt32)
    for k in frame["k"].unique().to_list():
        column = pl.when(pl.col("k") == k).then(line.str.extract(prefixes[k], 1).str.len_chars()).otherwise(column)
    got = line.str.slice(pl.col("col"), 30)
    reason = pl.format('no match after column {}: trailing text "{}"', pl.col("col") + 1, got)
    for k, f in enumerate(compiled.fields):
        expected = f"expected {f.column} ({f.kind.value}, {f.source})"
        reason = (
            pl.when(pl.col("k") == k)
            .then(pl.format('no match at column {}: {}, got "{}"', pl.col("col") + 1, pl.lit(expected), got))
            .otherwise(reason)
        )
    return frame.with_columns(column.fill_null(0).alias("col")).select(reason.alias("reason")).to_series()
