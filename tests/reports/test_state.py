"""The summary state gives, key by key, the reports the row-level code gave (``oracle``), on every
fixture and stream sample; and it merges: chunk states merged in any order give the whole's report.

The inputs are Envoy's own logs (fixtures written by a real Envoy, the peer data's samples); the
reference is the row-level computation over their parsed rows (polars' quantile over the raw
durations, lengths of row groups), not a state.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from meshlog.formats.presets import resolve
from meshlog.parse import AccessLog
from meshlog.pipeline import Run, parse_paths
from meshlog.reports.state import STATE_COLUMNS, merge, merge_all, state_of
from meshlog.reports.summary import by_table, summary_dict
from tests.conftest import ROOT, SHARED
from tests.reports import oracle

INPUTS = sorted(
    [p for p in (ROOT / "fixtures").rglob("*.log") if "ambient" not in p.parts]  # ambient: tests/ambient
    + [p for p in (SHARED / "samples" / "streams").glob("*.log")],
    key=str,
)
DIMENSIONS = ("upstream_cluster", "route_name", "authority", "pod", "path", "response_code")


def _read(path: Path) -> tuple[AccessLog, Run]:
    """Parsed as the CLI parses it: the format detected, or the fixture's own ``format.txt``."""
    given = path.parent / "format.txt"
    run = Run(resolve(given.read_text()) if given.exists() else None)
    logs = list(parse_paths([str(path)], run))
    return AccessLog.concat(logs, run.format), run


def _plain(value: Any) -> Any:
    """JSON as the CLI writes it (times as text), so the two sides compare as users see them."""
    return json.loads(json.dumps(value, default=str))


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT if ROOT in path.parents else SHARED))


@pytest.fixture(scope="module", params=INPUTS, ids=_name)
def parsed(request: pytest.FixtureRequest) -> tuple[AccessLog, Run]:
    return _read(request.param)


# every --by dimension on the richest inputs; on the others the default and the one kept as an extra key
EVERY_DIMENSION = ("envoy/istio/access.log", "envoy/custom/access.log", "sample/istio-proxy.log")


def test_state_gives_the_row_level_reports(parsed: tuple[AccessLog, Run]) -> None:
    log, run = parsed
    assert len(INPUTS) >= 30 and log.requests.height > 0
    tally = run.tally
    every = any(log.requests["source"][0].endswith(name) for name in EVERY_DIMENSION)
    for by in DIMENSIONS if every else ("upstream_cluster", "path"):
        if by not in log.requests.columns:
            continue
        want = oracle.summary_dict(log, by=by, lines=tally.counts, other_kinds=dict(tally.other_kinds))
        examples = tally.examples.head(10).select("source", "line_no", "reason")
        want["unparsed_lines"] = oracle._rows(examples)  # type: ignore[typeddict-item]
        got = summary_dict(state_of(log.requests, by=by).with_tally(tally), log.format, by=by)
        want_j, got_j = _plain(want), _plain(got)
        assert set(got_j) == set(want_j) | {"connections"}  # added after 0.2.0: ztunnel's L4 records
        assert got_j.pop("connections") is None  # these inputs hold Envoy lines only
        for key in want_j:
            assert got_j[key] == want_j[key], (by, key)


def test_csv_table_is_the_row_level_one(parsed: tuple[AccessLog, Run]) -> None:
    log, _ = parsed
    for by in DIMENSIONS:
        if by not in log.requests.columns:
            continue
        want = oracle.by_table(log.requests, by, top=100)
        got = by_table(state_of(log.requests, by=by), by, top=100)
        assert got.columns == want.columns
        assert got.to_dicts() == want.to_dicts(), by


def _split(frame: pl.DataFrame, parts: int, seed: int) -> list[pl.DataFrame]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, frame.height), min(parts, frame.height) - 1)) if frame.height > 1 else []
    bounds = [0, *cuts, frame.height]
    return [frame.slice(a, b - a) for a, b in itertools.pairwise(bounds)]


def test_chunk_states_merge_in_any_order(parsed: tuple[AccessLog, Run]) -> None:
    log, run = parsed
    seed = log.requests.height  # a different cut for each input, the same on every run
    requests = log.requests.select(c for c in log.requests.columns if c in STATE_COLUMNS)
    whole = summary_dict(state_of(requests).with_tally(run.tally), log.format)
    pieces = [state_of(p) for p in _split(requests, 7, seed)]
    random.Random(seed).shuffle(pieces)
    pairwise = pieces[0]
    for p in pieces[1:]:  # associativity, pair by pair, and commutativity (shuffled)
        pairwise = merge(p, pairwise)
    for merged in (merge_all(pieces), pairwise):
        assert _plain(summary_dict(merged.with_tally(run.tally), log.format)) == _plain(whole)


def test_state_is_small_and_keeps_whole_milliseconds() -> None:
    log, _ = _read(ROOT / "fixtures" / "envoy" / "istio" / "access.log")
    state = state_of(log.requests)
    assert state.total == log.requests.height
    # one row per distinct (cluster, duration): never more than the requests
    assert state.durations.height <= log.requests.height
    assert state.durations["n"].sum() == log.requests["duration"].is_not_null().sum()
    assert state.nbytes() > 0
