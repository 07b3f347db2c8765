"""Lines as Spark reads them, unwrapped as ``envelopes`` unwraps them here, in Spark SQL.

Spark expresses the per-line wrappers exactly: kubectl's ``--prefix`` (``[pod/NAME/CONTAINER] ``),
then one runtime wrapper — a CRI file line (containerd, CRI-O: time, stream, ``P``/``F``), kubectl
``--timestamps``, or a docker json-file line — with the same head patterns (``envelopes.PREFIX``,
``CRI``, ``TIMESTAMPS``) turned into Java regexes. Kubernetes node paths name the pod
(``kubernetes.POD_DIR``, ``CONTAINER_LINK``), and a path's value wins over a prefix's, as here.
Chunks of one long line (CRI ``P``, docker's ``log`` without its ``\\n``) are joined back with a
window over the file, which costs a sort, so it runs only when some chunk was seen.

Not expressed here, so the local engine is needed: collector records (fluentd, Fluent Bit, Loki),
clients' prefixes other than kubectl's (stern, compose, kail), pretty-printed JSON, and the
timestamps kubelet writes inside a line over 16 KiB under ``--timestamps`` (kubernetes#77603).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from meshlog.envelopes import CRI, OWN_TIMESTAMP, PREFIX, TIMESTAMPS
from meshlog.kubernetes import CONTAINER_LINK, POD_DIR

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

META = ("pod", "namespace", "container", "stream", "captured_at")


def java(pattern: str) -> str:
    """A Python regex as Java's: named groups unnamed (their order is their number)."""
    return re.sub(r"\(\?P<\w+>", "(", pattern)


def _head(line: Column, pattern: str) -> Column:
    """The text of ``pattern``'s match at the start of ``line`` ("" when none)."""
    from pyspark.sql import functions as F

    return F.regexp_extract(line, "^(" + java(pattern).removeprefix("^") + ")", 1)


def _time(text: Column) -> Column:
    """RFC 3339 with any fraction and zone (what kubelet and the runtimes write) as a UTC timestamp."""
    from pyspark.sql import functions as F

    return F.when(text != "", text).try_cast("timestamp")


SAMPLE = 1000  # first lines that tell whether the input is wrapped at all (as the local engine decides)


def unwrapped(lines: DataFrame) -> DataFrame:
    """``lines`` (``line, _file, _block, _idx``) with the wrappers taken off and ``META`` beside; an
    input whose first lines show no wrapper keeps its lines as they are (no work per line)."""
    from pyspark.sql import functions as F

    line = F.col("line")
    path = F.col("_file")
    pod_dir, link = java(POD_DIR.pattern), java(CONTAINER_LINK.pattern)

    def from_path(pod_dir_group: int, link_group: int) -> Column:
        a, b = F.regexp_extract(path, pod_dir, pod_dir_group), F.regexp_extract(path, link, link_group)
        return F.when(a != "", a).when(b != "", b)

    # 1. kubectl --prefix
    prefix = _head(line, PREFIX)
    df = lines.select(
        "*",
        F.when(prefix != "", F.regexp_extract(prefix, java(PREFIX), 1)).alias("_ppod"),
        F.when(prefix != "", F.regexp_extract(prefix, java(PREFIX), 2)).alias("_pcont"),
        F.substring(line, F.length(prefix) + 1, 1 << 30).alias("_l1"),
    )
    # 2. one runtime wrapper: CRI, else kubectl --timestamps, else docker json-file
    l1 = F.col("_l1")
    cri = _head(l1, CRI)
    stamp = F.when(~l1.rlike(java(OWN_TIMESTAMP)), _head(l1, TIMESTAMPS)).otherwise(F.lit(""))
    docker = l1.startswith('{"log":"') & l1.endswith('"}') & l1.contains('","stream":"') & l1.contains('","time":"')
    log = F.get_json_object(l1, "$.log")
    docker &= log.isNotNull()
    cri_groups = java(CRI)
    df = df.select(
        "*",
        F.when(cri != "", F.lit("cri")).when(stamp != "", F.lit("kubectl")).when(docker, F.lit("docker")).alias("_via"),
    )
    via = F.col("_via")
    body = (
        F.when(via == "cri", F.substring(l1, F.length(cri) + 1, 1 << 30))
        .when(via == "kubectl", F.substring(l1, F.length(stamp) + 1, 1 << 30))
        .when(via == "docker", log)
        .otherwise(l1)
    )
    captured = (
        F.when(via == "cri", _time(F.regexp_extract(l1, cri_groups, 1)))
        .when(via == "kubectl", _time(F.regexp_extract(l1, java(TIMESTAMPS), 1)))
        .when(via == "docker", _time(F.get_json_object(l1, "$.time")))
    )
    stream = F.when(via == "cri", F.regexp_extract(l1, cri_groups, 2)).when(
        via == "docker", F.get_json_object(l1, "$.stream")
    )
    partial = F.when(via == "cri", F.regexp_extract(l1, cri_groups, 3) == "P").when(
        via == "docker", ~log.endswith("\n")
    )
    df = df.select(
        "_file", "_block", "_idx", "_via",
        body.alias("line"),
        F.coalesce(from_path(2, 1), F.col("_ppod")).alias("pod"),
        from_path(1, 2).alias("namespace"),
        F.coalesce(from_path(3, 3), F.col("_pcont")).alias("container"),
        stream.alias("stream"),
        captured.alias("captured_at"),
        F.coalesce(partial, F.lit(False)).alias("_partial"),
        F.col("_ppod").isNotNull().alias("_prefixed"),
    )  # fmt: skip
    wrapped = F.col("_via").isNotNull() | F.col("_prefixed")
    if not df.limit(SAMPLE).filter(wrapped).limit(1).count():
        return lines.select("*", *(F.lit(None).cast("string").alias(c) for c in META[:-1]),
                            F.lit(None).cast("timestamp").alias("captured_at"))  # fmt: skip
    if df.filter(F.col("_partial")).limit(1).count():  # a scan; the join's sort only when it is needed
        df = _joined(df)
    newline = F.when(F.col("_via") == "docker", F.regexp_replace("line", "\n$", "")).otherwise(F.col("line"))
    return df.withColumn("line", newline).drop("_via", "_partial", "_prefixed")


def _joined(df: DataFrame) -> DataFrame:
    """Each run of chunks with the line that ends it, as one line where its first chunk is. A sort
    per file and stream: only inputs that hold a chunk come here."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = ["_file", "pod", "container", "stream", "_via"]
    order = Window.partitionBy(*key).orderBy("_block", "_idx")
    starts = F.coalesce(~F.lag("_partial").over(order), F.lit(True)).cast("int")
    grouped = df.withColumn("_g", F.sum(starts).over(order.rowsBetween(Window.unboundedPreceding, 0)))
    parts = F.array_sort(F.collect_list(F.struct("_block", "_idx", "line")))
    return grouped.groupBy(*key, "_g").agg(
        F.min(F.struct("_block", "_idx", "namespace", "captured_at", "_prefixed")).alias("_first"),
        F.concat_ws("", F.transform(parts, lambda p: p["line"])).alias("line"),
        F.max("_partial").alias("_partial"),
    ).select(
        "_file", "_first._block", "_first._idx", "_via", "line", "pod", "_first.namespace", "container", "stream",
        "_first.captured_at", F.lit(False).alias("_partial"), "_first._prefixed",
    )  # fmt: skip
