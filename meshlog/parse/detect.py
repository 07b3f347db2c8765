"""Choose a format for unknown input by trying the presets on its first lines.

Several Istio formats can match the same line when a quoted field swallows a separator
(``"-" "-"`` read as one field). Ties go to the preset whose split plan cuts the most
lines cleanly, i.e. without any field holding a separator.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import polars as pl

from meshlog.errors import DetectionError
from meshlog.formats.compiler import CompiledFormat, compile_format, compile_json_format
from meshlog.formats.presets import ISTIO_JSON, PRESETS
from meshlog.parse.text import match_counts

SAMPLE_LINES = 200


def detect(lines: Sequence[str]) -> CompiledFormat:
    """The preset that matches most of ``lines``; JSON records get Istio's keys plus any extra keys seen.

    Raises ``DetectionError`` when nothing matches, so the user is asked for ``--format``.
    """
    sample = [line for line in lines[:SAMPLE_LINES] if line.strip()]
    records = [r for r in (_json_object(line) for line in sample) if r is not None]
    # Access records share Istio's keys; app logs ({level, msg}) and collector records do not.
    records = [r for r in records if len(r.keys() & ISTIO_JSON.keys()) >= 3]
    best: tuple[tuple[int, int], str] | None = None
    frame = pl.DataFrame({"line": sample}, schema={"line": pl.String})
    for name, (fmt, _) in PRESETS.items():
        if name == "istio-json":
            continue
        score = match_counts(frame, compile_format(fmt))
        if score[0] and (best is None or score > best[0]):
            best = (score, name)
    if records and (best is None or len(records) >= best[0][0]):
        extra = [k for r in records for k in r if k not in ISTIO_JSON]
        mapping = {**ISTIO_JSON, **{k: "" for k in dict.fromkeys(extra)}}
        return compile_json_format(mapping, name="istio-json")
    if not sample:
        raise DetectionError(
            "only blank lines so far: no access line to tell the format from; pass --format (a preset or "
            "the proxy's accessLogFormat) or --mesh-config"
        )
    if best is None:
        raise DetectionError(
            f"no preset matches the first {len(sample)} non-blank lines; "
            "pass --format (a preset or the proxy's accessLogFormat) or --mesh-config"
        )
    return compile_format(PRESETS[best[1]][0], name=best[1])


def _json_object(line: str) -> dict[str, object] | None:
    if not line.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
