"""``summarize`` on Apache Spark: the compiled format as Spark SQL, the summary state built by GROUP BYs.

Why: a mesh's logs for a day sit in object storage, not on a laptop. Spark reads them where they
are (local files, directories, globs, ``.gz``; ``s3a://``, ``hdfs://``… through the cluster's own
connectors) and does the work natively: the format's anchored regex with positional groups
(``regexp_extract``), ``try_cast`` for typed fields with ``-`` as null, and one aggregation per
table of ``reports.state``. No Python UDF runs and nothing of meshlog is installed on the
executors; only the state's small tables come back (Arrow), and the same report code renders them.

``--where`` compiles to Spark columns through the filter language's own compiler
(``filters.Backend``), and ``--since/--until`` filter ``start_time`` (a relative window counts back
from the last request, read by one more aggregation). This step reads plain lines of text formats;
wrapped lines (CRI, kubectl ``--timestamps``, collectors) and JSON formats need the local engine for
now (``check_options`` says so before anything runs).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import polars as pl

from meshlog.engines.spark_lines import java, unwrapped
from meshlog.errors import ConfigError, DetectionError, UnreachableError, UsageError
from meshlog.filters import Backend, bounds, columns_named, compile_where, is_relative
from meshlog.formats.compiler import CompiledFormat
from meshlog.formats.operators import Kind
from meshlog.parse import JSON_UNDER_TEXT, UNPARSED_SCHEMA, lines_frame, looks_like_prefix, parse_lines, ztunnel
from meshlog.parse.cast import _EXPECTED, dtype_of, strips_semicolon, unset_texts
from meshlog.parse.classify import OTHER_LINES
from meshlog.parse.detect import SAMPLE_LINES, detect
from meshlog.parse.tally import KEEP_UNPARSED, Tally
from meshlog.reports.state import (
    KEEP_SLOWEST,
    KEYS,
    SLOWEST_COLUMNS,
    STATE_COLUMNS,
    SummaryState,
    attempts_column,
    from_tables,
    latency_keys,
)
from meshlog.reports.timeline import bucket_seconds

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

EXTRA = "pip install 'meshlog[spark]'"
WRAPPER_COLUMNS: dict[str, pl.DataType] = {c: pl.String() for c in ("pod", "namespace", "container", "stream")}
WRAPPER_COLUMNS["captured_at"] = pl.Datetime("us", "UTC")
_LOW_BITS = (1 << 33) - 1  # monotonically_increasing_id: partition id above, row within the partition below


def session(url: str) -> SparkSession:
    """A Spark session for ``url``: a Spark Connect address (``sc://host:15002``) or PySpark's own
    ``local[N]``. A Connect server that does not answer is an ``UnreachableError`` (exit 5) at once."""
    # pyspark warns on import about pandas versions it has not tried; meshlog hands it Arrow, not pandas
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(f"--engine spark needs pyspark: {EXTRA}") from None
    if url.startswith("sc://"):
        where = urlparse(url.replace("sc://", "http://", 1))
        host, port = where.hostname or "localhost", where.port or 15002
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as exc:
            raise UnreachableError(url, f"Spark Connect does not answer ({exc.strerror or exc})") from None
        try:
            spark = SparkSession.builder.remote(url).getOrCreate()
        except ImportError as exc:  # the Connect client's own needs (grpcio, pyarrow, pandas)
            raise ConfigError(f"--engine spark needs the Spark Connect client ({exc}): {EXTRA}") from None
    elif re.fullmatch(r"local(\[(\d+|\*)\])?", url):
        builder = SparkSession.builder.master(url).appName("meshlog")
        spark = builder.config("spark.ui.showConsoleProgress", "false").getOrCreate()  # stderr is ours
    else:
        raise UsageError(f"--spark-remote {url}: expected a Spark Connect address (sc://host:15002) or local[N]")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    return spark


def java_regex(fmt: CompiledFormat) -> str:
    """The format's strict regex for Java: the same groups, unnamed (Java names allow no ``_``)."""
    return java(fmt.regex)


def _typed(field: Any, raw: Column) -> Column:
    """A field's text as its type, as ``parse.cast`` types it: numbers and times null when they do
    not read (``-`` included), text null when unset."""
    from pyspark.sql import functions as F

    if field.kind.numeric:
        return raw.try_cast("bigint")
    if dtype_of(field) != pl.String():
        return _time(field, raw)
    value = F.when(~raw.isin(*unset_texts(field)), raw)
    return F.regexp_replace(value, ";$", "") if strips_semicolon(field) else value


_EPOCH = re.compile(r"%s(?:\.%(\d)f)?")
# chrono → Java DateTimeFormatter, for the directives Envoy's %START_TIME(...)% formats use
_JAVA = {"%Y": "yyyy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss", "%b": "MMM", "%z": "Z",
         "%3f": "SSS", "%6f": "SSSSSS", "%9f": "SSSSSSSSS",
         "%.3f": ".SSS", "%.6f": ".SSSSSS", "%.9f": ".SSSSSSSSS"}  # fmt: skip
_DIRECTIVE = re.compile(r"%\.?\d?[A-Za-z]")


def java_time_pattern(chrono: str) -> str | None:
    """A chrono pattern as Java's (what Spark's ``to_timestamp`` reads), or None when it holds a
    directive without a fixed Java twin (``%.f``: any number of digits)."""
    out, at = [], 0
    for m in _DIRECTIVE.finditer(chrono):
        literal = chrono[at : m.start()].replace("%%", "%")
        if literal:
            out.append("'" + literal.replace("'", "''") + "'")
        if m.group() not in _JAVA:
            return None
        out.append(_JAVA[m.group()])
        at = m.end()
    if tail := chrono[at:].replace("%%", "%"):
        out.append("'" + tail.replace("'", "''") + "'")
    return "".join(out)


def _time(field: Any, raw: Column) -> Column:
    """A time field as a UTC timestamp (microseconds): ISO-8601 as Envoy's default prints it
    (``%.f``: any digits), epoch seconds with a fraction (``%s.%3f``), or any pattern Java reads the
    same way (``%d/%b/%Y:%H:%M:%S %z``); times without a zone are UTC, as locally."""
    from pyspark.sql import functions as F

    chrono = field.time.chrono
    if chrono == "%Y-%m-%dT%H:%M:%S%.fZ":
        iso = F.when(raw.rlike(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"), raw)
        return iso.try_cast("timestamp")
    if _EPOCH.fullmatch(chrono):
        micros = (raw.try_cast("decimal(24,6)") * F.lit(1_000_000)).cast("bigint")
        return F.when(raw.rlike(r"^\d+(\.\d+)?$"), F.timestamp_micros(micros))
    pattern = java_time_pattern(chrono)
    if pattern is None:
        raise UsageError(f"--engine spark does not read the time format {chrono!r} yet (use the local engine)")
    return F.try_to_timestamp(raw, F.lit(pattern))


def check_options(**given: Any) -> None:
    """Options the Spark engine does not take yet: a usage error naming them, before any work."""
    refused = [name for name, value in given.items() if value]
    if refused:
        raise UsageError(f"--engine spark does not take {', '.join(refused)} yet (use the local engine)")


def _text_fields(fmt: CompiledFormat, used: list[tuple[int, Any]]) -> tuple[Column, list[Column]]:
    """A text format: does the line match its regex, and each used field's text (positional groups)."""
    from pyspark.sql import functions as F

    regex = java_regex(fmt)
    # one regex run per line for every field: the match rewritten as its groups joined by a byte no
    # line holds, then split (a group that took no part is "", as with regexp_extract)
    template = _SEP.join(f"${i + 1}" for i in range(len(fmt.fields)))
    parts = F.split(F.regexp_replace("line", regex, template), _SEP, -1)
    return F.col("line").rlike(regex), [F.try_element_at(parts, F.lit(i + 1)).alias(f"_r{i}") for i, _ in used]


_SEP = "\u0001"


def _json_fields(fmt: CompiledFormat, used: list[tuple[int, Any]]) -> tuple[Column, list[Column]]:
    """A JSON format, as ``parse.jsonl`` reads it: a line is a record when it is an object naming one
    of the format's keys; every key is read as text (a number as its digits, an object as its JSON),
    and a line that is no valid JSON is a broken record, not a match."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    line = F.col("line")
    keys = list(dict.fromkeys(fmt.json_keys))
    schema = StructType([*(StructField(k, StringType()) for k in keys), StructField("_corrupt", StringType())])
    record = F.from_json(line, schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"})
    names = "|".join(re.escape(json.dumps(k)) for k in keys)
    is_record = line.rlike(r"^\s*\{") & line.rlike(f"(?:{names})\\s*:")
    match = is_record & record.isNotNull() & record["_corrupt"].isNull()

    def raw(i: int, f: Any) -> Column:
        key = fmt.json_keys[i]
        if f.kind is Kind.JSON:  # structured: its JSON text
            return F.get_json_object(line, "$[" + json.dumps(key) + "]")
        return record[key]

    return match, [raw(i, f).alias(f"_r{i}") for i, f in used]


ZTUNNEL_KIND = "ztunnel-record"  # ztunnel's records: access lines locally, only counted here (for now)


def _ztunnel_record() -> Column:
    """``parse.ztunnel.is_record`` in Spark SQL."""
    from pyspark.sql import functions as F

    line = F.col("line")
    json = line.rlike(r"^\s*\{") & line.rlike(ztunnel.JSON_TARGET) & line.rlike(ztunnel.JSON_MESSAGE)
    return line.rlike(java(ztunnel.TEXT)) | json


class _SparkColumns(Backend):
    """``--where`` as Spark columns: the same language and checks as the local engine's (the regex
    runs in Java there: the common syntax is the same, Rust-only features are not)."""

    def col(self, name: str) -> Any:
        from pyspark.sql import functions as F

        return F.col(name)

    def text(self, column: Any) -> Any:
        return column.cast("string")

    def matches(self, text: Any, pattern: str) -> Any:
        return text.rlike(pattern)

    def known(self, condition: Any) -> Any:
        from pyspark.sql import functions as F

        return F.coalesce(condition, F.lit(False))

    def constant(self, value: bool) -> Any:
        from pyspark.sql import functions as F

        return F.lit(value)


Window = tuple[dt.datetime | None, dt.datetime | None]


def spark_state(
    spark: SparkSession,
    paths: Sequence[str],
    fmt: CompiledFormat | None,
    *,
    by: str | None = None,
    where: str | None = None,
    times: tuple[str | None, str | None] = (None, None),
) -> tuple[SummaryState, CompiledFormat, Window]:
    """The summary state of ``paths`` computed by Spark, the format used (``fmt``, or detected from
    the first lines Spark reads), and the ``--since/--until`` window as times. ``where`` and the
    window choose the requests as they do locally: a relative window counts back from the last
    request the filter keeps (one more aggregation: its latest ``start_time``)."""
    from pyspark.sql import functions as F

    given = list(paths)
    # a path that exists here is given whole (the server's working directory is not ours)
    paths = [os.path.abspath(p) if "://" not in p and os.path.exists(p) else p for p in paths]
    lines = spark.read.text(paths).select(
        F.col("value").alias("line"),
        F.col("_metadata.file_path").alias("_file"),
        F.col("_metadata.file_block_start").alias("_block"),
        F.monotonically_increasing_id().bitwiseAND(F.lit(_LOW_BITS)).alias("_idx"),
    )
    blocks = _arrow(lines.groupBy("_file", "_block").agg(F.count(F.lit(1)).alias("n"), F.min("_idx").alias("_first")))
    lines = unwrapped(lines)
    if fmt is None:
        sample = [r[0] for r in lines.select("line").limit(SAMPLE_LINES * 10).collect()]
        try:
            fmt = detect([s for s in sample if s.strip()][:SAMPLE_LINES])
        except DetectionError:
            if pl.DataFrame({"line": sample}, schema={"line": pl.String}).select(ztunnel.is_record().any()).item():
                raise UsageError(
                    "these are ztunnel's records (Istio ambient): the local engine reads them; drop --engine spark"
                ) from None
            raise
    fields = list(fmt.fields)
    wanted = STATE_COLUMNS | {by} | (columns_named(where) if where else set())
    used = [(i, f) for i, f in enumerate(fields) if f.column in wanted]
    match, raws = _json_fields(fmt, used) if fmt.encoding == "json" else _text_fields(fmt, used)
    kind = F.lit(None).cast("string")
    for name, pattern in reversed(OTHER_LINES):
        kind = F.when(F.col("line").rlike(pattern), F.lit(name)).otherwise(kind)
    kind = F.when(_ztunnel_record(), F.lit(ZTUNNEL_KIND)).otherwise(kind)
    kind = F.when(~match, kind)  # only a line that is no record is asked what it is
    parsed = lines.select("*", match.alias("_match"), kind.alias("_other"), *raws)
    typed = parsed.select(
        "*", *(_typed(f, F.when(F.col("_match"), F.col(f"_r{i}"))).alias(f.column) for i, f in used)
    )
    checked = [(i, f) for i, f in used if dtype_of(f) != pl.String()]
    failures = [
        F.when(
            F.col("_match") & F.col(f.column).isNull() & ~F.col(f"_r{i}").isin("-", ""),
            F.format_string(
                'field %s: expected %s, got "%s"',
                F.lit(f.column),
                F.lit(_EXPECTED[f.kind]),
                F.substring(F.col(f"_r{i}"), 1, 40),
            ),
        )
        for i, f in checked
    ]
    reason = F.coalesce(*failures) if failures else F.lit(None).cast("string")
    # as ``parse.parse_lines`` decides: a JSON access record under a text format is the wrong format;
    # a line of a known other kind is other; one that still looks like a record is unparsed
    line = F.col("line")
    json_record = line.rlike(r"^\s*\{") & line.contains('"response_code"') & (
        line.contains('"start_time"') | line.contains('"duration"')
    )
    if fmt.encoding == "json":
        json_record = F.lit(False)
    looks_like = line.rlike("^" + java(looks_like_prefix(fmt)))
    other = F.col("_other")
    outcome = typed.select(
        "*",
        F.when(F.col("_match") & reason.isNull(), F.lit("access"))
        .when(F.col("_match"), F.lit("unparsed"))
        .when(json_record & (other.isNull() | (other == "json-log")), F.lit("unparsed"))
        .when(other.isNotNull() | ~looks_like, F.lit("other"))
        .otherwise(F.lit("unparsed"))
        .alias("_outcome"),
        F.coalesce(other, F.lit("unrecognised")).alias("_kind"),
        F.when(F.col("_match"), reason).when(json_record, F.lit(JSON_UNDER_TEXT)).alias("_reason"),
    )
    # what the aggregations read, cached: typed fields and the outcome, the text only of unparsed lines
    keep = ["_file", "_block", "_idx", *WRAPPER_COLUMNS, *dict.fromkeys(f.column for _, f in used)]
    outcome = outcome.select(
        *keep, "_outcome", "_kind", "_reason", F.when(F.col("_outcome") == "unparsed", line).alias("line")
    ).persist()
    try:
        access = outcome.filter(F.col("_outcome") == "access")
        if where:
            schema = {"source": pl.String(), "line_no": pl.Int64(), **WRAPPER_COLUMNS}
            schema |= {f.column: dtype_of(f) for f in fmt.fields}
            access = access.filter(compile_where(where, schema, _SparkColumns()))
        window: Window = (None, None)
        if any(times):
            latest = None
            if is_relative(times[0]) or is_relative(times[1]):
                latest = _arrow(access.agg(F.max("start_time").alias("t")))["t"][0]
            window = bounds(*times, latest)
            start, end = window
            chosen = F.col("start_time").isNotNull()
            if start is not None:
                chosen &= F.col("start_time") >= F.lit(start)
            if end is not None:
                chosen &= F.col("start_time") < F.lit(end)
            access = access.filter(chosen)
        return _state(outcome, access, blocks, fmt, used, by, given), fmt, window
    finally:
        outcome.unpersist()


def _arrow(frame: DataFrame) -> pl.DataFrame:
    """A small Spark result as polars (Arrow across the wire; times stay UTC microseconds)."""
    table = frame.toArrow()
    out = pl.from_arrow(table)
    assert isinstance(out, pl.DataFrame)
    return out.with_columns(
        pl.col(c).dt.replace_time_zone("UTC") if isinstance(t, pl.Datetime) and t.time_zone is None else pl.col(c)
        for c, t in out.schema.items()
    )


def _state(
    outcome: DataFrame,
    access: DataFrame,
    blocks: pl.DataFrame,
    fmt: CompiledFormat,
    used: list[tuple[int, Any]],
    by: str | None,
    paths: list[str],
) -> SummaryState:
    """The state of the ``access`` rows chosen; the line accounting of every line (``outcome``)."""
    from pyspark.sql import functions as F

    schema: dict[str, pl.DataType] = {"source": pl.String(), "line_no": pl.Int64()}
    schema |= {c: pl.String() for c in ("pod", "namespace")}  # what wrappers said; dropped below if none did
    schema |= {f.column: dtype_of(f) for _, f in used}
    cols = set(schema)
    code, flags = F.col("response_code"), F.col("response_flags")
    if "response_code" not in cols:
        error = F.lit(False)
    elif "response_flags" in cols:
        error = (code >= 500) | ((code == 0) & flags.isNotNull())
    else:
        error = (code >= 500) | (code == 0)
    count = F.count(F.lit(1)).cast("bigint").alias("n")
    values = [count, F.sum(error.cast("bigint")).alias("errors")]
    if "path" in cols:
        values.append(F.sum((error & F.col("path").isNull()).cast("bigint")).alias("errors_no_path"))
    attempts = attempts_column(schema)
    if attempts:
        a = F.col(attempts)
        values += [
            F.sum(F.greatest(a - 1, F.lit(0))).cast("bigint").alias("retries"),
            F.sum((a > 1).cast("bigint")).alias("retried"),
            F.sum(((a > 1) & error).cast("bigint")).alias("retried_failed"),
        ]
    dims = (by,) if by and by != "upstream_cluster" else ()
    keys = [c for c in dict.fromkeys((*KEYS, *dims)) if c in cols]
    requests = _sums(access.groupBy(*keys).agg(*values), keys)
    for c in ("pod", "namespace"):  # as locally: a column no wrapper gave is not there
        if not requests.height or requests[c].null_count() == requests.height:
            requests = requests.drop(c)
            del schema[c]
    tables: dict[str, pl.DataFrame] = {"requests": requests}
    cols = set(schema)

    def counts(frame: DataFrame, on: list[str]) -> pl.DataFrame:
        return _arrow(frame.groupBy(*on).agg(count))

    if "duration" in cols:
        tables["durations"] = counts(access, [*latency_keys(cols, dims), "duration"])
    if "upstream_service_time" in cols:
        ust = [c for c in ("upstream_cluster",) if c in cols]
        tables["upstream_times"] = counts(access, [*ust, "upstream_service_time"])
        if "duration" in cols:
            gaps = access.select((F.col("duration") - F.col("upstream_service_time")).alias("gap"))
            tables["gaps"] = counts(gaps, ["gap"])
    if attempts:
        tables["attempts"] = counts(access.select(F.col(attempts).alias("attempts")), ["attempts"])
    if "path" in cols:
        tables["error_paths"] = counts(access.filter(error), ["path"])
    start = end = None
    step = 0
    if "start_time" in cols:
        span = _arrow(access.agg(F.min("start_time").alias("a"), F.max("start_time").alias("b")))
        start, end = span.row(0)
    if start is not None and end is not None:
        step = bucket_seconds(end - start)
        cell = F.floor(F.unix_micros(F.col("start_time")) / F.lit(step * 1_000_000)).cast("bigint").alias("cell")
        on = ["cell", *(("duration",) if "duration" in cols else ())]
        grid = access.filter(F.col("start_time").isNotNull()).select(cell, error.alias("_e"), *on[1:])
        tables["grid"] = _arrow(
            grid.groupBy(*on).agg(count.alias("requests"), F.sum(F.col("_e").cast("bigint")).alias("errors"))
        )
    names = _sources(paths)
    slowest = _slowest(access, cols, blocks, names) if "duration" in cols else pl.DataFrame()
    tally = _tally(outcome, blocks, names, fmt)
    return from_tables(dims, schema, tables, step=step, start=start, end=end, slowest=slowest, tally=tally)


def _slowest(access: DataFrame, cols: set[str], blocks: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """The ``KEEP_SLOWEST`` slowest requests, ties in input order (``reports.state.slowest_order``)."""
    from pyspark.sql import functions as F

    shown = [c for c in SLOWEST_COLUMNS if c in cols and c not in ("source", "line_no")]
    rows = access.filter(F.col("duration").isNotNull()).orderBy(F.col("duration").desc(), "_file", "_block", "_idx")
    slowest = _located(_arrow(rows.select(*shown, "_file", "_block", "_idx").limit(KEEP_SLOWEST)), blocks, names)
    return slowest.select(c for c in SLOWEST_COLUMNS if c in slowest.columns)


def _tally(outcome: DataFrame, blocks: pl.DataFrame, names: dict[str, str], fmt: CompiledFormat) -> Tally:
    """The line accounting of every line, and the first unparsed ones with their reasons: only these
    few lines come back, so the local parser words why each failed, exactly as it would here (Spark's
    own reason stays where it sees no failure)."""
    from pyspark.sql import functions as F

    kinds = _arrow(outcome.groupBy("_outcome", "_kind").agg(F.count(F.lit(1)).cast("bigint").alias("n")))
    unparsed_rows = outcome.filter(F.col("_outcome") == "unparsed").orderBy("_file", "_block", "_idx")
    first = unparsed_rows.select("line", F.col("_reason").alias("reason"), "_file", "_block", "_idx")
    examples = _located(_arrow(first.limit(KEEP_UNPARSED)), blocks, names)
    if examples.height:  # the few lines that came back, worded as the local engine words them
        local = parse_lines(lines_frame(examples["line"].to_list()), fmt).unparsed
        said = pl.DataFrame({"_n": local["line_no"], "_why": local["reason"]})
        examples = (
            examples.with_row_index("_n", offset=1).with_columns(pl.col("_n").cast(pl.Int64))
            .join(said, on="_n", how="left", maintain_order="left")
            .with_columns(pl.coalesce("_why", "reason").alias("reason")).drop("_n", "_why")
        )  # fmt: skip
    other = kinds.filter(pl.col("_outcome") == "other").select("_kind", "n").iter_rows()
    return Tally(
        access=_total(kinds, "access"),
        unparsed=_total(kinds, "unparsed"),
        other_kinds=Counter({k: int(n) for k, n in other}),
        examples=examples.select(*UNPARSED_SCHEMA).cast(UNPARSED_SCHEMA)  # type: ignore[arg-type]
        if examples.height
        else pl.DataFrame(schema=UNPARSED_SCHEMA),
    )


def _sums(frame: DataFrame, keys: list[str]) -> pl.DataFrame:
    out = _arrow(frame)
    return out.with_columns(pl.col(c).cast(pl.Int64) for c in out.columns if c not in keys)


def _total(kinds: pl.DataFrame, outcome: str) -> int:
    return int(kinds.filter(pl.col("_outcome") == outcome)["n"].sum() or 0)


def _sources(paths: list[str]) -> dict[str, str]:
    """Spark's ``file:`` URIs back to the names the user gave (as the local engine names sources)."""
    return {os.path.abspath(p): p for p in paths if "://" not in p}


def _located(rows: pl.DataFrame, blocks: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """``source`` and 1-based ``line_no`` for rows Spark placed by (file, block, row in partition): a
    file's lines before a block are the counts of its earlier blocks (each block is read in order)."""
    if not rows.height:
        return rows
    offsets = blocks.sort("_file", "_block").with_columns(
        (pl.col("n").cum_sum().over("_file") - pl.col("n")).alias("_before")
    )
    located = rows.join(offsets, on=["_file", "_block"], how="left", maintain_order="left")

    def source(uri: str) -> str:
        path = unquote(urlparse(uri).path) if uri.startswith("file:") else uri
        if path in names:
            return names[path]
        for whole, given in names.items():  # a file Spark found in a directory given
            if path.startswith(whole.rstrip("/") + "/"):
                return os.path.join(given, os.path.relpath(path, whole))
        return uri

    return located.with_columns(
        pl.col("_file").map_elements(source, return_dtype=pl.String).alias("source"),  # a few rows, not lines
        (pl.col("_before") + pl.col("_idx") - pl.col("_first") + 1).cast(pl.Int64).alias("line_no"),
    ).drop("_file", "_block", "_idx", "_first", "_before", "n")
