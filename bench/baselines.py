"""Plain-Python baselines, run as their own processes: ``python bench/baselines.py re|read FILE``.

Kept apart from ``run.py`` so that they import nothing heavy (no polars): their peak RSS is
what the loop itself needs. Each prints its line counts as one JSON object.
"""

from __future__ import annotations

import json
import re
import sys

# What a hand-written parser for Istio's default format would use: one anchored regex,
# quoted free-text fields non-greedy (so a user agent holding '"' still matches).
ISTIO_RE = re.compile(
    r'\[(\S+)\] "(\S+) (\S+) (\S+)" (\d+) (\S+) (\S+) (\S+) "(.*?)" (\d+|-) (\d+|-) (\d+|-) (\d+|-) '
    r'"(.*?)" "(.*?)" "(.*?)" "(.*?)" "(\S*)" (\S+) (\S+) (\S+) (\S+) (\S+) (\S+)$'
)


def re_loop(path: str) -> dict[str, int]:
    """Baseline A: ``re.match`` every line, appending each group to its own column list."""
    columns: list[list[str]] = [[] for _ in range(ISTIO_RE.groups)]
    appends = [col.append for col in columns]
    lines = unmatched = 0
    match = ISTIO_RE.match
    with open(path, encoding="utf-8") as f:
        for line in f:
            lines += 1
            m = match(line)
            if m is None:
                unmatched += 1
                continue
            for append, value in zip(appends, m.groups(), strict=True):  # a list per group
                append(value)
    return {"lines": lines, "access": len(columns[0]), "unparsed": unmatched}


def read_loop(path: str) -> dict[str, int]:
    """Baseline B: read the file line by line (decoded to str), nothing else."""
    n = 0
    with open(path, encoding="utf-8") as f:
        for _ in f:
            n += 1
    return {"lines": n}


if __name__ == "__main__":
    kind, path = sys.argv[1:3]
    print(json.dumps({"re": re_loop, "read": read_loop}[kind](path)))
