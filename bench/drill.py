"""Drill into the costly stages of ``meshlog parse`` on a log file: ``python bench/drill.py FILE``.

``run.py --profile`` says which library functions take the time; this says why, by timing
the steps inside them on the same 8 MiB chunks the CLI uses, and a few alternatives
(marked ``alt:``). The ``text.extract`` steps replay that function's own queries with
its own plan objects; everything else calls the library as it is.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from meshlog.formats.compiler import CompiledFormat
from meshlog.formats.presets import resolve
from meshlog.parse import parse_lines
from meshlog.parse.cast import _typed, cast_fields
from meshlog.parse.derive import cluster_columns
from meshlog.parse.text import ROW, _PlanExprs, extract
from meshlog.sources import read_lines

T = TypeVar("T")
TOTALS: dict[str, float] = {}
REFUSED = [0]  # lines the split plan refused (they take the regex path)


def timed(label: str, fn: Callable[[], T]) -> T:
    """Call ``fn``, adding its wall time to ``label``."""
    t = time.perf_counter()
    result = fn()
    TOTALS[label] = TOTALS.get(label, 0.0) + time.perf_counter() - t
    return result


def reading(path: str) -> None:
    """Where ``read_lines`` spends its time (cProfile's own time per function), and an alternative."""
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.runcall(lambda: sum(1 for _ in read_lines(path)))
    TOTALS["read_lines (all chunks)"] = total = time.perf_counter() - t
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    own = {f"{os.path.basename(k[0])}:{k[2]}": v[2] for k, v in stats.items()}
    in_python = own.get("sources.py:read_lines", 0.0)
    in_polars = sum(v for k, v in own.items() if "builtins.Py" in k)  # polars' Rust entry points
    TOTALS["  own time of read_lines (bytes +=, rfind, slicing)"] = in_python
    TOTALS["  inside polars (line splitting, frame building)"] = in_polars
    TOTALS["  other Python (decode, read1, wrappers)"] = total - in_python - in_polars
    with open(path, "rb") as f:
        data = f.read()
    timed(
        "alt: pl.read_csv(whole file, one column, no quoting)",
        lambda: pl.read_csv(
            io.BytesIO(data), has_header=False, separator="\x1f", quote_char=None, schema={"line": pl.String}
        ),
    )


def parsing(path: str) -> None:
    """The steps inside ``parse_lines``, chunk by chunk."""
    fmt = resolve("istio")
    for chunk in read_lines(path):
        _parse_chunk(chunk, fmt)


def _parse_chunk(chunk: pl.DataFrame, fmt: CompiledFormat) -> None:
    n = len(fmt.fields)
    raw_names = [f"f{i}" for i in range(n)]
    lines = chunk.with_row_index(ROW)
    timed("parse_lines (library)", lambda: parse_lines(chunk, fmt))
    timed("text.extract (library)", lambda: extract(lines, fmt))
    plan = timed("  compiled.plan (rebuilt on every call)", lambda: fmt.plan)
    assert plan is not None
    exprs = _PlanExprs(fmt)
    exprs.walk(plan, pl.col("line"), 0)

    def split_query() -> pl.DataFrame:
        lf = lines.lazy().select(ROW, "line")
        for stage in exprs.stages:
            lf = lf.with_columns(stage)
        ok = pl.all_horizontal(exprs.checks).fill_null(False).alias("_ok")
        return lf.select(ROW, ok, *(exprs.values[i].alias(raw_names[i]) for i in range(n))).collect()

    fast = timed("  split-plan query (split_exact, counts, strips)", split_query)
    good = timed("  filter ok rows", lambda: fast.filter(pl.col("_ok")).drop("_ok"))
    refused = fast.filter(~pl.col("_ok")).select(ROW)
    rest = timed("  semi-join: lines the plan refused", lambda: lines.join(refused, on=ROW, how="semi"))
    REFUSED[0] += rest.height
    groups = pl.col("line").str.extract_groups(fmt.regex).alias("_g")
    slow = timed("  strict regex on refused lines", lambda: rest.select(ROW, groups).unnest("_g"))
    raw = timed(
        "  concat + sort by _row (when any line was refused)",
        lambda: pl.concat([good, slow.cast({ROW: pl.UInt32})]).sort(ROW) if slow.height else good,
    )
    timed("cast.cast_fields (library)", lambda: cast_fields(raw, fmt))
    typed = [_typed(f, pl.col(f"f{i}")).alias(f.column) for i, f in enumerate(fmt.fields)]
    timed("  typed columns only (no reason strings)", lambda: raw.select(typed))
    timed("  start_time to_datetime alone", lambda: raw.select(typed[0]))
    req = cast_fields(raw, fmt)[0]
    timed("derive.cluster_columns (library)", lambda: cluster_columns(req))
    clusters = cluster_columns(req.select(pl.col("upstream_cluster").unique()))
    timed(
        "  alt: same on unique clusters + join back",
        lambda: req.join(clusters, on="upstream_cluster", how="left", nulls_equal=True, maintain_order="left"),
    )


def writing(path: str) -> None:
    """Parquet write of the final requests frame, by compression."""
    fmt = resolve("istio")
    requests = pl.concat([parse_lines(c, fmt).requests for c in read_lines(path)])
    with tempfile.TemporaryDirectory() as tmp:
        for comp in ("zstd", "lz4", "snappy", "uncompressed"):
            out = os.path.join(tmp, f"{comp}.parquet")
            t = time.perf_counter()
            requests.write_parquet(out, compression=comp)
            TOTALS[f"write_parquet {comp} (default: zstd)"] = time.perf_counter() - t
            TOTALS[f"  size MiB ({comp})"] = os.path.getsize(out) / 2**20


def main() -> None:
    path = sys.argv[1]
    for part in (reading, parsing, writing):
        part(path)
    for label, value in TOTALS.items():
        unit = "" if "MiB" in label else " s"
        print(f"{label:58} {value:8.2f}{unit}")
    print(f"lines the split plan refused (regex path): {REFUSED[0]}")


if __name__ == "__main__":
    main()
