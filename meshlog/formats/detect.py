"""Choose a format for unknown input by trying the presets on its first lines."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from meshlog.errors import DetectionError
from meshlog.formats.compiler import CompiledFormat, compile_format, compile_json_format
from meshlog.formats.presets import ISTIO_JSON, PRESETS

SAMPLE_LINES = 200


def resolve(spec: str) -> CompiledFormat:
    """A preset name or a format string → compiled format."""
    if spec in PRESETS:
        return compile_format(PRESETS[spec][0], name=spec)
    return compile_format(spec)


def detect(lines: Sequence[str]) -> CompiledFormat:
    """The preset that matches most of ``lines``; JSON records get Istio's keys plus any extra keys seen.

    Raises ``DetectionError`` when nothing matches, so the user is asked for ``--format``.
    """
    sample = [line for line in lines[:SAMPLE_LINES] if line.strip()]
    records = [r for r in (_json_object(line) for line in sample) if r is not None]
    # Access records share Istio's keys; app logs ({level, msg}) and collector records do not.
    records = [r for r in records if len(r.keys() & ISTIO_JSON.keys()) >= 3]
    best: tuple[int, str] | None = None
    for name, (fmt, _) in PRESETS.items():
        if name == "istio-json":
            continue
        regex = re.compile(compile_format(fmt).regex)
        hits = sum(1 for line in sample if regex.match(line))
        if hits and (best is None or hits > best[0]):
            best = (hits, name)
    if records and (best is None or len(records) >= best[0]):
        extra = [k for r in records for k in r if k not in ISTIO_JSON]
        mapping = {**ISTIO_JSON, **{k: "" for k in dict.fromkeys(extra)}}
        return compile_json_format(mapping, name="istio-json")
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
