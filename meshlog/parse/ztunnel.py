"""ztunnel's access records (Istio ambient, L4): recognised in any input, typed as connections.

ztunnel logs one record per connection with target ``access`` (``connection opened`` at debug,
``connection complete`` at info, or error with ``error=``, ``connection failed`` at warn for early
rejections), in its text format::

    2024-04-12T10:17:44.080629Z<TAB>info<TAB>access<TAB>connection complete<TAB>src.addr=10.244.0.16:52008
        src.workload="productpage-v1-…" … duration="2ms"          (one line)

or, with ``LOG_FORMAT=json``, as one flat object with dotted keys (``"src.addr"``). Strings are
quoted with Rust's escaping; addresses and integers are bare (before 1.23 names were bare too, and
so was a ``connection failed`` error, spaces and all). The field set is ztunnel's own
(``src/proxy/metrics.rs``); a key it leaves out is unknown, so its column is null.

The records are told apart from every other line by their shape alone, so a ztunnel log needs no
``--format`` and a stream mixing ztunnel with Envoy lines (a waypoint, ``kubectl logs`` of both)
is split line by line: ztunnel records become ``connections``, the rest goes on to the Envoy format.
"""

from __future__ import annotations

import polars as pl

from meshlog.parse.cast import DATETIME
from meshlog.parse.jsonl import decode_keys
from meshlog.parse.text import ROW

# ztunnel key → column, in ztunnel's field order
FIELDS: dict[str, str] = {
    "src.addr": "src_addr",
    "src.workload": "src_workload",
    "src.namespace": "src_namespace",
    "src.identity": "src_identity",
    "src.cluster": "src_cluster",
    "dst.addr": "dst_addr",
    "dst.hbone_addr": "dst_hbone_addr",
    "dst.service": "dst_service",
    "dst.workload": "dst_workload",
    "dst.namespace": "dst_namespace",
    "dst.identity": "dst_identity",
    "dst.cluster": "dst_cluster",
    "direction": "direction",
    "bytes_sent": "bytes_sent",
    "bytes_recv": "bytes_recv",
    "duration": "duration",
    "error": "error",
}
INTEGERS = ("bytes_sent", "bytes_recv")
CONNECTION_SCHEMA: dict[str, pl.DataType] = {
    "timestamp": DATETIME,
    "level": pl.String(),
    "event": pl.String(),  # opened | complete | failed
    **{c: (pl.Int64() if c in (*INTEGERS, "duration") else pl.String()) for c in FIELDS.values()},
}
EVENTS = ("opened", "complete", "failed")

_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"
_LEVEL = r"(?i:trace|debug|info|warn|warning|error)"
# text: TIME level access message fields (tabs, or the spaces a terminal copy leaves); 1.22's
# tracing default wrote "LEVEL access: message fields"
TEXT = rf"^({_TIME})[\t ]+({_LEVEL})[\t ]+access:?[\t ]+connection (opened|complete|failed)(?:[\t ]+(.*?))?[\t ]*$"
JSON_TARGET = r'"(?:scope|target)"\s*:\s*"access"'
JSON_MESSAGE = r'"message"\s*:\s*"connection (?:opened|complete|failed)"'
_QUOTED = r'"(?:[^"\\]|\\.)*"'


_MAYBE = "connection (?:opened|complete|failed)"  # a literal scan: what every record says


def is_record() -> pl.Expr:
    """Is ``line`` a ztunnel access record (text or JSON)? For samples; a chunk goes through
    ``records``, which runs the full patterns only on the lines the cheap scan kept."""
    line = pl.col("line")
    text = line.str.contains(TEXT)
    json = line.str.contains(r"^\s*\{") & line.str.contains(JSON_TARGET) & line.str.contains(JSON_MESSAGE)
    return line.str.contains(_MAYBE) & (text | json)


def records(lines: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``lines`` that are ztunnel access records. Most lines of most inputs are Envoy's and
    none says "connection opened/complete/failed": that literal scan (~17 ms per 500k lines) keeps
    the few others for the patterns (which would cost 5× as much on every line)."""
    maybe = lines.filter(pl.col("line").str.contains(_MAYBE))
    return maybe.filter(is_record()) if maybe.height else maybe


def parse(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed connections (``CONNECTION_SCHEMA`` plus ``_row`` and the lines frame's metadata) of
    lines that are all ztunnel records, and ``_row, reason`` for those whose values do not fit."""
    is_json = pl.col("line").str.contains(r"^\s*\{")
    text, json = lines.filter(~is_json), lines.filter(is_json)
    raw_parts, bad_parts = [], []
    if text.height:
        raw_parts.append(_text_fields(text))
    if json.height:
        raw, bad = _json_fields(json)
        raw_parts.append(raw)
        bad_parts.append(bad)
    raw = pl.concat(raw_parts, how="diagonal_relaxed") if raw_parts else _raw_empty()
    typed, cast_failed = _typed(raw)
    meta = [c for c in lines.columns if c != "line"]
    typed = lines.select(meta).join(typed, on=ROW, how="inner").sort(ROW)
    bad = pl.concat([*bad_parts, cast_failed]) if bad_parts else cast_failed
    return typed, bad


def _raw_empty() -> pl.DataFrame:
    return pl.DataFrame(schema={ROW: pl.UInt32, "_time": pl.String, "_level": pl.String, "_event": pl.String,
                                **dict.fromkeys(FIELDS.values(), pl.String)})  # fmt: skip


def _text_fields(lines: pl.DataFrame) -> pl.DataFrame:
    """Raw text per key; quoted values unescaped. Each key is one regex over the whole column."""
    head = pl.col("line").str.extract_groups(TEXT).struct.rename_fields(["_time", "_level", "_event", "_rest"])
    frame = lines.select(ROW, head.alias("_h")).unnest("_h")
    rest = pl.col("_rest").fill_null("")

    def value(key: str) -> pl.Expr:
        name = key.replace(".", r"\.")
        # the error is the last field; a bare one (a 1.22 "connection failed") runs to the end of the line
        bare = r".*" if key == "error" else r"[^\s\"]\S*|"
        found = rest.str.extract(rf"(?:^|[\t ]){name}=({_QUOTED}|{bare})", 1)
        quoted = found.str.starts_with('"')
        return pl.when(quoted).then(_unescape(found.str.slice(1, found.str.len_chars() - 2))).otherwise(found)

    return frame.select(ROW, "_time", "_level", "_event", *(value(k).alias(c) for k, c in FIELDS.items()))


def _unescape(value: pl.Expr) -> pl.Expr:
    """Rust's ``str`` Debug escapes back to text (``\\u{…}`` is rare and left as written)."""
    hold = "\x00"
    out = value.str.replace_all(r"\\", hold, literal=True)
    for escaped, char in (('\\"', '"'), ("\\n", "\n"), ("\\t", "\t"), ("\\r", "\r"), ("\\'", "'")):
        out = out.str.replace_all(escaped, char, literal=True)
    return out.str.replace_all(hold, "\\", literal=True)


def _json_fields(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    keys = ["time", "timestamp", "level", "message", *FIELDS]
    names = ["_t1", "_t2", "_level", "_message", *FIELDS.values()]
    raw, bad = decode_keys(lines, keys, names)
    raw = raw.with_columns(
        pl.coalesce("_t1", "_t2").alias("_time"),
        pl.col("_message").str.extract(r"^connection (opened|complete|failed)$", 1).alias("_event"),
    ).drop("_t1", "_t2", "_message")
    return raw, bad


_DURATION = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|us|µs|ns)?\s*$"
_UNITS = {"ms": 1.0, "s": 1e3, "m": 6e4, "us": 1e-3, "µs": 1e-3, "ns": 1e-6}


def _count(column: str) -> pl.Expr:
    """ztunnel's byte counters are u64: digits only (a sign is no count)."""
    value = pl.col(column)
    return pl.when(value.str.contains(r"^\d+$")).then(value.cast(pl.Int64, strict=False))


def _typed(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Casts, and a reason for every value that does not fit (the line is then unparsed)."""
    number = pl.col("duration").str.extract(_DURATION, 1).cast(pl.Float64)
    unit = pl.col("duration").str.extract(_DURATION, 2).fill_null("ms").replace_strict(_UNITS, default=1.0)
    casts: dict[str, tuple[pl.Expr, str]] = {  # column → (typed value, what the raw text should be)
        "timestamp": (
            pl.col("_time").str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", strict=False, time_unit="us")
            .dt.replace_time_zone("UTC"),
            "a time",
        ),
        **{c: (_count(c), "an integer (bytes)") for c in INTEGERS},
        "duration": ((number * unit).floor().cast(pl.Int64), 'a duration ("13ms")'),  # ztunnel truncates to ms
    }  # fmt: skip
    source = {"timestamp": "_time"}
    typed = raw.with_columns(
        *(value.alias(f"_typed_{c}") for c, (value, _) in casts.items()),
        pl.col("_level").str.to_lowercase().replace("warning", "warn").alias("level"),
        pl.col("_event").alias("event"),
    )
    failed = [
        typed.filter(pl.col(source.get(c, c)).is_not_null() & pl.col(f"_typed_{c}").is_null()).select(
            ROW, pl.format(f'field {c}: expected {expected}, got "{{}}"', pl.col(source.get(c, c))).alias("reason")
        )
        for c, (_, expected) in casts.items()
    ]
    bad = pl.concat(failed).unique(ROW, keep="first", maintain_order=True)
    typed = typed.with_columns(pl.col(f"_typed_{c}").alias(c) for c in casts)
    good = typed.join(bad, on=ROW, how="anti").select(ROW, *CONNECTION_SCHEMA)
    return good.cast(CONNECTION_SCHEMA), bad  # type: ignore[arg-type]
