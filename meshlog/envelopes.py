"""Unwrap what carries the access lines: ``kubectl logs --prefix`` / ``--timestamps`` and CRI files.

The wrapper is detected once from the first lines (the rule most lines match), then
stripped from every line that carries it, vectorised; a line without it is kept as it
is (streams mix wrapped and bare lines). What the wrapper said is kept as columns:
``captured_at``, ``stream``, ``pod``, ``container``. Byte formats:
``../shared/reference/input-streams.md`` §1–2, §7. (Docker json-file, fluentd and
fluent-bit records and CRI partial-line joining come with the streams issue.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from meshlog.parse.cast import DATETIME

_TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)"


@dataclass(frozen=True)
class Envelope:
    name: str
    regex: str  # named groups: whatever it carries, and ``line`` (the payload)


PREFIX = Envelope("kubectl-prefix", r"^\[pod/(?P<pod>[^/\]]+)/(?P<container>[^\]]+)\] (?P<line>.*)$")
TIMESTAMPS = Envelope("kubectl-timestamps", rf"^(?P<captured_at>{_TS}) (?P<line>.*)$")
CRI = Envelope("cri", rf"^(?P<captured_at>{_TS}) (?P<stream>stdout|stderr) (?P<tag>[FP])(?::\S*)? (?P<line>.*)$")
ENVELOPES = (PREFIX, CRI, TIMESTAMPS)  # CRI before timestamps: it is the more specific


def detect(lines: pl.Series) -> list[Envelope]:
    """The wrappers (outermost first) that at least half of the non-blank lines carry."""
    found: list[Envelope] = []
    sample = lines.filter(lines.str.strip_chars() != "").head(200)
    for env in ENVELOPES:
        if sample.len() and sample.str.contains(env.regex).mean() >= 0.5:  # type: ignore[operator]
            found.append(env)
            sample = sample.str.extract(env.regex, group_index=_line_group(env))
            if env in (CRI, TIMESTAMPS):
                break
    return found


def _line_group(env: Envelope) -> int:
    return re.compile(env.regex).groupindex["line"]


def unwrap(frame: pl.DataFrame, envelopes: list[Envelope]) -> pl.DataFrame:
    """Strip each wrapper from the lines that carry it and keep what it said as columns."""
    for env in envelopes:
        groups = pl.col("line").str.extract_groups(env.regex)
        names = [n for n in _names(env) if n != "line"]
        frame = (
            frame.with_columns(groups.alias("_env"))
            .with_columns(
                pl.coalesce(pl.col("_env").struct.field("line"), pl.col("line")).alias("line"),
                *(pl.col("_env").struct.field(n).alias(n) for n in names if n != "tag"),
            )
            .drop("_env")
        )
        if "captured_at" in names:
            frame = frame.with_columns(
                pl.col("captured_at").str.to_datetime(time_unit="us", time_zone="UTC", strict=False).cast(DATETIME)
            )
    return frame


def _names(env: Envelope) -> list[str]:
    return list(re.compile(env.regex).groupindex)
