"""Choose a format for unknown input by trying the presets on its first lines.

Several Istio formats can match the same line when a quoted field swallows a separator
(``"-" "-"`` read as one field). Ties go to the preset whose split plan cuts the most
lines cleanly, i.e. without any field holding a separator.

JSON records go to the JSON preset that names most of their keys (Istio's or Envoy
Gateway's). Envoy Gateway's old text default prints JSON-shaped lines: a text preset that
reads at least as many lines as decode as JSON records wins over the JSON presets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import polars as pl

from meshlog.errors import DetectionError
from meshlog.formats.compiler import CompiledFormat
from meshlog.formats.presets import JSON_PRESETS, PRESETS, compile_json_preset, resolve
from meshlog.parse.text import match_counts

SAMPLE_LINES = 200


def detect(lines: Sequence[str]) -> CompiledFormat:
    """The preset that matches most of ``lines``; JSON records get the JSON preset whose keys they
    share most (ties: Istio's), plus any extra keys seen.

    Raises ``DetectionError`` when nothing matches, so the user is asked for ``--format``.
    """
    sample = [line for line in lines[:SAMPLE_LINES] if line.strip()]
    records = [r for r in (_json_object(line) for line in sample) if r is not None]
    # Access records share a JSON preset's keys; app logs ({level, msg}) and collector records do not.
    records = [r for r in records if any(len(r.keys() & keys) >= 3 for keys in JSON_PRESETS.values())]
    best: tuple[tuple[int, int], str] | None = None
    frame = pl.DataFrame({"line": sample}, schema={"line": pl.String})
    for name in PRESETS:
        if name in JSON_PRESETS:
            continue
        score = match_counts(frame, resolve(name))
        if score[0] and (best is None or score > best[0]):
            best = (score, name)
    if records and (best is None or len(records) > best[0][0]):
        json_name = max(JSON_PRESETS, key=lambda n: sum(len(r.keys() & JSON_PRESETS[n].keys()) for r in records))
        return compile_json_preset(json_name, dict.fromkeys(k for r in records for k in r))
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
    return resolve(best[1])


def _json_object(line: str) -> dict[str, object] | None:
    if not line.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
