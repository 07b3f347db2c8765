"""Text-mode extraction: lines → one raw string column per field, vectorised.

Two paths over the same lines. The split plan (``formats/plan.py``) cuts most lines
with ``split_exact`` / ``strip_prefix`` and checks separator counts; the few lines it
cannot vouch for go through the strict anchored regex. Both give the same raw strings;
``cast.py`` types them afterwards.
"""

from __future__ import annotations

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
    raw, ambiguous = _without_ambiguous(raw, lines, compiled, by_regex)
    return raw, unmatched, ambiguous


def _extract(
    lines: pl.DataFrame, compiled: CompiledFormat, *, use_plan: bool, fields: list[int] | None
) -> tuple[pl.DataFrame, pl.Series, pl.Series]:
    """``extract``'s fields and unmatched rows, and the rows the regex (not the plan) read."""
    wanted = list(range(len(compiled.fields))) if fields is None else fields  # every field is still checked
    raw_names = {i: f"_f{i}" for i in wanted}
    keep = [c for c in lines.columns if c != "line"]
    plan = compiled.plan if use_plan else None
    if plan is None:
        slow, matched = _regex_fields(lines, compiled, keep, raw_names)
        return slow.filter(matched), lines.filter(~matched)[ROW], lines.filter(matched)[ROW]
    exprs = _PlanExprs(compiled)
    exprs.walk(plan, pl.col("line"), 0)
    lf = lines.lazy()
    for stage in exprs.stages:
        lf = lf.with_columns(stage)
    fast = lf.select(
        *keep,
        exprs.ok.alias("_ok"),
        *(exprs.values[i].alias(name) for i, name in raw_names.items()),
    ).collect()
    ok = fast["_ok"]
    none = pl.Series(ROW, [], dtype=pl.UInt32)
    if ok.all():
        return fast.drop("_ok"), none, none
    # The few lines the plan refuses go through the regex, and what it finds is written in place:
    # no filter, concat and sort of the whole chunk to put rows back in order.
    refused = ok.not_().arg_true()
    slow, matched = _regex_fields(lines[refused], compiled, [], raw_names)
    at = refused.filter(matched)
    fast = fast.with_columns(fast[c].clone().scatter(at, slow[c].filter(matched)) for c in raw_names.values())
    by_regex = lines[ROW].gather(at)
    if matched.all():
        return fast.drop("_ok"), none, by_regex
    keep_rows = ok.clone().scatter(at, True)
    return fast.filter(keep_rows).drop("_ok"), lines[refused.filter(~matched)][ROW], by_regex


def _regex_fields(
    lines: pl.DataFrame, compiled: CompiledFormat, keep: list[str], raw_names: dict[int, str]
) -> tuple[pl.DataFrame, pl.Series]:
    """The strict regex's fields for each line (null where it does not match), and whether it matched.

    Shaped fields (addresses, clusters, paths) are read by their shape first; the lines that fails
    are read again with those fields holding any non-blank text (``lenient``)."""
    line = pl.col("line")
    strict, lenient = compiled.regex, compiled.regex_for(lenient=True)
    if lenient == strict:
        groups = line.str.extract_groups(strict)
    else:
        groups = pl.when(line.str.contains(strict)).then(line.str.extract_groups(strict)).otherwise(
            line.str.extract_groups(lenient)
        )
    found = lines.select(*keep, groups.alias("_g"), line.str.contains(lenient if lenient != strict else strict))
    fields = found.select(*keep, *(pl.col("_g").struct.field(c) for c in raw_names.values()))
    return fields, found["line"]


AMBIGUOUS_SCHEMA = {ROW: pl.UInt32, "reason": pl.String}


def _without_ambiguous(
    raw: pl.DataFrame, lines: pl.DataFrame, compiled: CompiledFormat, by_regex: pl.Series
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read the lines the regex parsed once more with every free-form part taken the other way
    (``regex_for(greedy=True)``): a line whose fields then differ has two readings, and which one Envoy wrote
    cannot be known, so it is unparsed with the field it hinges on. The plan's lines are exact (a
    separator count), so only the regex's few lines are read again."""
    empty = pl.DataFrame(schema=AMBIGUOUS_SCHEMA)
    if not by_regex.len() or compiled.regex_for(greedy=True) == compiled.regex:
        return raw, empty
    candidates = lines.join(pl.DataFrame({ROW: by_regex}), on=ROW, how="semi").select(ROW, "line")
    line = pl.col("line")
    strict = line.str.contains(compiled.regex)  # each line is read again in the tier that read it

    def reading(greedy: bool) -> pl.Expr:
        return (
            pl.when(strict)
            .then(line.str.extract_groups(compiled.regex_for(greedy=greedy)))
            .otherwise(line.str.extract_groups(compiled.regex_for(greedy=greedy, lenient=True)))
        )

    both = candidates.select(ROW, reading(False).alias("a"), reading(True).alias("b"))
    differs = pl.lit(None, dtype=pl.String)
    for i in reversed(range(len(compiled.fields))):
        a, b = pl.col("a").struct.field(f"_f{i}"), pl.col("b").struct.field(f"_f{i}")
        name = compiled.fields[i].column
        text = pl.format(
            'ambiguous: the line fits the format two ways ({} "{}" or "{}"); a separator stands inside a value',
            pl.lit(name), a.str.slice(0, 40), b.str.slice(0, 40),
        )  # fmt: skip
        differs = pl.when(b.is_not_null() & (a != b)).then(text).otherwise(differs)
    ambiguous = both.select(ROW, differs.alias("reason")).filter(pl.col("reason").is_not_null())
    if not ambiguous.height:
        return raw, empty
    return raw.join(ambiguous.select(ROW), on=ROW, how="anti", maintain_order="left"), ambiguous


def match_counts(lines: pl.DataFrame, compiled: CompiledFormat) -> tuple[int, int]:
    """(lines the format matches, lines its split plan cuts cleanly): how well a format fits a sample."""
    regex_hits = lines.select(pl.col("line").str.contains(compiled.regex).sum()).item()
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
