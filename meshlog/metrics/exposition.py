"""Prometheus text exposition (what a sidecar's ``/stats/prometheus`` returns) → a frame of samples.

Why not ``prometheus_client``'s parser: it appends ``_total`` to every counter family, and with
Istio's stat tags Envoy writes both ``envoy_cluster_upstream_rq{response_code=…}`` and
``envoy_cluster_upstream_rq_total``, so two different counters end up under one name. Here every
sample keeps the exact name it was written with. The whole text is parsed column-wise (a scrape
is a few thousand lines; a merged 15020 scrape of a busy pod can be far more).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = rf"^({_NAME})(?:\{{(.*)\}})?[ \t]+(\S+)(?:[ \t]+(-?[0-9]+))?[ \t]*$"
_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*[ \t]*=[ \t]*"(?:[^"\\]|\\.)*"'
_TYPE = rf"^#[ \t]+TYPE[ \t]+({_NAME})[ \t]+(\w+)"
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_info", "_gcount", "_gsum")

LABELS = pl.List(pl.Struct({"name": pl.String, "value": pl.String}))
SAMPLES_SCHEMA = {"name": pl.String, "family": pl.String, "type": pl.String, "labels": LABELS, "value": pl.Float64}


@dataclass(frozen=True)
class Exposition:
    """Samples (``name, family, type, labels, value``) and the lines that are not samples.

    ``rejected`` holds ``line_no, line`` of lines that are neither a sample nor a comment:
    they are reported, not silently skipped.
    """

    samples: pl.DataFrame
    rejected: pl.DataFrame


def _unescape(expr: pl.Expr) -> pl.Expr:
    # \\ first goes through a placeholder so that "\\n" (backslash, n) does not become a newline
    return (
        expr.str.replace_all(r"\\", "\x00", literal=True)
        .str.replace_all(r"\"", '"', literal=True)
        .str.replace_all(r"\n", "\n", literal=True)
        .str.replace_all("\x00", "\\", literal=True)
    )


def parse_exposition(text: str) -> Exposition:
    """Parse Prometheus text format 0.0.4 (and the OpenMetrics flavour an app may add on 15020)."""
    lines = pl.DataFrame({"line": text.splitlines()}, schema={"line": pl.String}).with_row_index("line_no", 1)
    stripped = pl.col("line").str.strip_chars()
    comment = stripped.str.starts_with("#")
    types = (
        lines.filter(comment)
        .select(pl.col("line").str.extract_groups(_TYPE).alias("t"))
        .unnest("t")
        .rename({"1": "family", "2": "type"})
        .drop_nulls()
        .unique("family", keep="first")
    )
    candidates = lines.filter(~comment & (stripped != "")).with_columns(
        pl.col("line").str.extract_groups(_SAMPLE).alias("m")
    )
    parts = candidates.unnest("m").rename({"1": "name", "2": "raw_labels", "3": "raw_value", "4": "timestamp"})
    parts = parts.with_columns(value=pl.col("raw_value").cast(pl.Float64, strict=False))
    good = parts.filter(pl.col("name").is_not_null() & pl.col("value").is_not_null())
    rejected = parts.filter(pl.col("name").is_null() | pl.col("value").is_null()).select("line_no", "line")

    pairs = pl.col("raw_labels").fill_null("").str.extract_all(_PAIR)
    labels = pairs.list.eval(
        pl.struct(
            name=pl.element().str.extract(r"^([a-zA-Z0-9_]+)"),
            value=_unescape(pl.element().str.extract(r'="(.*)"$')),
        )
    )
    samples = good.select("name", labels.alias("labels"), "value")
    return Exposition(_with_family(samples, types), rejected)


def _with_family(samples: pl.DataFrame, types: pl.DataFrame) -> pl.DataFrame:
    """The family each sample belongs to: its own name when typed, else the name minus a suffix
    (``x_bucket`` → ``x`` when ``# TYPE x histogram``)."""
    typed = set(types["family"].to_list())
    base = pl.col("name")
    for suffix in _SUFFIXES:
        base = (
            pl.when(pl.col("name").str.ends_with(suffix)).then(pl.col("name").str.strip_suffix(suffix)).otherwise(base)
        )
    family = (
        pl.when(pl.col("name").is_in(list(typed)))
        .then(pl.col("name"))
        .otherwise(pl.when(base.is_in(list(typed))).then(base).otherwise(pl.col("name")))
    )
    return (
        samples.with_columns(family=family)
        .join(types, on="family", how="left")
        .with_columns(pl.col("type").fill_null("untyped"))
        .select(list(SAMPLES_SCHEMA))
    )


def label(name: str) -> pl.Expr:
    """The value of one label of the ``labels`` column (null when the series lacks it)."""
    return (
        pl.col("labels")
        .list.eval(pl.element().filter(pl.element().struct.field("name") == name).struct.field("value"))
        .list.first()
        .alias(name)
    )


def series_key() -> pl.Expr:
    """A stable identity for a series: its name plus its labels sorted by name."""
    pairs = pl.col("labels").list.eval(
        pl.element().struct.field("name") + pl.lit("=") + pl.element().struct.field("value")
    )
    return pl.concat_str(pl.col("name"), pl.lit("{"), pairs.list.sort().list.join("\x1f"), pl.lit("}")).alias("key")
