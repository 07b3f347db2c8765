"""The ``connections`` report of ``summarize -o json`` on ztunnel.log, figure by figure against
records.json (counts, sums and numpy-style percentiles computed here), its hints, and the merge of
chunk states (any split, any order) giving the whole input's report."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections import Counter
from typing import Any

import pytest

from meshlog.parse import AccessLog, lines_frame, parse_lines
from meshlog.reports.connections import connection_state, connections_report, merge_all
from meshlog.reports.state import merge_all as merge_states
from meshlog.reports.state import state_of
from meshlog.ztunnel_errors import BY_KEY
from tests.ambient.expect import (
    JSON,
    PAIR,
    TEXT,
    ZTUNNEL,
    ended,
    errors_by_kind,
    field,
    group,
    kind_of,
    spread,
    summary,
    utc,
)

TOP = "100"  # more rows than any table has: every row is compared
CONNECTIONS = ended()
FAILED = [r for r in CONNECTIONS if field(r, "error") is not None]


def close(got: Any, want: Any) -> bool:
    """Equal, but for the 3 decimals meshlog rounds percentiles to (None only equals None)."""
    if got is None or want is None:
        return got is want
    return abs(float(got) - float(want)) <= 1e-3


def same_spread(got: dict[str, Any], want: dict[str, Any]) -> bool:
    return set(got) >= set(want) and all(close(got[k], want[k]) for k in want)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    connections: dict[str, Any] = summary(TEXT, "--top", TOP)["connections"]
    assert connections is not None
    return connections


# -- 5. figures -----------------------------------------------------------------------------------------------


def test_totals(report: dict[str, Any]) -> None:
    assert len(CONNECTIONS) == 40 and len(FAILED) == 26  # README: 14 ok + 17 complete at error + 9 failed
    assert report["total"] == len(CONNECTIONS)
    assert report["opened"] == sum(r["message"] == "connection opened" for r in ZTUNNEL)
    assert report["failed_early"] == sum(r["message"] == "connection failed" for r in ZTUNNEL)
    assert report["errors"] == len(FAILED)
    assert report["error_ratio"] == pytest.approx(len(FAILED) / len(CONNECTIONS))


def test_time_range(report: dict[str, Any]) -> None:
    times = sorted(r["time"] for r in ZTUNNEL)  # ztunnel writes RFC 3339 UTC with 6 digits, as ISO
    assert report["time_range"] == {"start": times[0], "end": times[-1]}


def test_duration_percentiles(report: dict[str, Any]) -> None:
    durations = [field(r, "duration_ms") for r in CONNECTIONS if field(r, "duration_ms") is not None]
    assert len(durations) == 31  # every `connection complete`; a `connection failed` has none
    want = spread(durations)
    assert same_spread(report["duration"], want), (report["duration"], want)
    assert report["duration"]["max"] == 1546750  # the broken pipe after 25 minutes (README)


@pytest.mark.parametrize("which", ["sent", "recv"])
def test_bytes(which: str, report: dict[str, Any]) -> None:
    values = [field(r, f"bytes_{which}") for r in CONNECTIONS if field(r, f"bytes_{which}") is not None]
    got = report[f"bytes_{which}"]
    assert got["total"] == sum(values)
    assert same_spread(got, spread(values)), (got, spread(values))


def _table(keys: tuple[str, ...], *, with_bytes: bool = True) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Connections, errors (bytes, duration percentiles) per combination of ztunnel ``keys``."""
    out = {}
    for key, rows in group(CONNECTIONS, lambda r: tuple(field(r, k) for k in keys)).items():
        entry: dict[str, Any] = {"connections": len(rows), "errors": sum(field(r, "error") is not None for r in rows)}
        if with_bytes:
            entry["bytes_sent"] = sum(field(r, "bytes_sent") or 0 for r in rows)
            entry["bytes_recv"] = sum(field(r, "bytes_recv") or 0 for r in rows)
            durations = [field(r, "duration_ms") for r in rows if field(r, "duration_ms") is not None]
            entry.update({k: v for k, v in spread(durations).items() if k != "max"})
        out[key] = entry
    return out


def _rows(report_rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    columns = [k.replace(".", "_") for k in keys]
    return {tuple(r[c] for c in columns): r for r in report_rows}


@pytest.mark.parametrize(
    ("name", "keys", "with_bytes"),
    [
        ("by_workload", PAIR, True),
        ("by_service", ("dst.service",), True),
        ("by_identity", ("src.identity", "dst.identity"), False),
        ("by_direction", ("direction",), False),
    ],
)
def test_tables(name: str, keys: tuple[str, ...], with_bytes: bool, report: dict[str, Any]) -> None:
    want = _table(keys, with_bytes=with_bytes)
    got = _rows(report[name], keys)
    assert set(got) == set(want)
    for key, entry in want.items():
        row = got[key]
        assert all(close(row[k], v) for k, v in entry.items()), (key, row, entry)
    order = [(r["errors"], r["connections"]) for r in report[name]]
    assert order == sorted(order, reverse=True)  # the most failing first
    assert sum(r["connections"] for r in report[name]) == len(CONNECTIONS)


def test_timeline(report: dict[str, Any]) -> None:
    timeline = report["timeline"]
    step = timeline["bucket_seconds"]
    buckets = timeline["buckets"]
    assert step > 0 and buckets
    assert sum(b["connections"] for b in buckets) == len(CONNECTIONS)
    assert sum(b["errors"] for b in buckets) == len(FAILED)
    starts = [utc(b["start"]) for b in buckets]
    assert all((b - a).total_seconds() == step for a, b in itertools.pairwise(starts))  # no gap left out
    cell = {utc(b["start"]): (b["connections"], b["errors"]) for b in buckets}
    want: Counter[tuple[int, str]] = Counter()
    for r in CONNECTIONS:
        epoch = int(utc(r["time"]).timestamp()) // step * step
        want[(epoch, "connections")] += 1
        want[(epoch, "errors")] += field(r, "error") is not None
    for start, (n, errors) in cell.items():
        epoch = int(start.timestamp())
        assert (n, errors) == (want[(epoch, "connections")], want[(epoch, "errors")]), start
    first, last = min(utc(r["time"]) for r in CONNECTIONS), max(utc(r["time"]) for r in CONNECTIONS)
    assert starts[0] <= first < starts[0] + dt.timedelta(seconds=step)  # from the first connection's bucket
    assert starts[-1] <= last < starts[-1] + dt.timedelta(seconds=step)  # to the last one's


# -- 5. hints ---------------------------------------------------------------------------------------------------

KINDS_SEEN = sorted(errors_by_kind())


def test_one_hint_per_kind_present(report: dict[str, Any]) -> None:
    want = errors_by_kind()
    hints = report["hints"]
    assert sorted(h["rule"] for h in hints) == sorted(f"l4-{k}" for k in want)
    for hint in hints:
        key = hint["rule"].removeprefix("l4-")
        kind = BY_KEY[key]
        assert (hint["title"], hint["severity"]) == (kind.title, kind.severity)
        assert hint["look_at"] and hint["look_at"] == kind.check
        assert hint["count"] == want[key], (key, hint["count"], want[key])
        assert hint["share"] == pytest.approx(want[key] / len(CONNECTIONS))
        assert hint["filter"]


def test_hints_say_where(report: dict[str, Any]) -> None:
    """Each hint's places count that kind's connections (per destination service, workload, direction)."""
    for hint in report["hints"]:
        key = hint["rule"].removeprefix("l4-")
        mine = [r for r in FAILED if kind_of(r) == key]
        for column, dotted in (("dst_service", "dst.service"), ("dst_workload", "dst.workload"),
                               ("src_workload", "src.workload"), ("direction", "direction")):  # fmt: skip
            counts = Counter(field(r, dotted) for r in mine)
            places = hint["where"][column]
            assert places and all(counts[p["value"]] == p["count"] for p in places), (key, column, places)
            assert places[0]["count"] == max(counts.values()), (key, column, places)  # the commonest first


@pytest.fixture(scope="module")
def hint_by_kind(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["rule"].removeprefix("l4-"): h for h in report["hints"]}


@pytest.mark.parametrize("kind", KINDS_SEEN)
def test_a_hint_filter_gives_its_connections(kind: str, hint_by_kind: dict[str, dict[str, Any]]) -> None:
    """The hint's ``filter`` passed back as ``--where`` selects exactly the connections the hint counts."""
    hint = hint_by_kind[kind]
    out = summary(TEXT, "--where", hint["filter"], "--top", TOP)
    assert out["requests"] == 0
    picked = out["connections"]
    assert picked is not None
    assert (picked["total"], picked["errors"]) == (hint["count"], hint["count"]), (kind, hint["filter"])
    assert [(e["kind"], e["count"]) for e in picked["errors_by_kind"]] == [(kind, hint["count"])]


# -- 7. merging chunk states ------------------------------------------------------------------------------------


def _whole(lines: list[str]) -> AccessLog:
    return parse_lines(lines_frame(lines, source="whole"), None)


def _chunks(lines: list[str], seed: int) -> list[list[str]]:
    """The lines shuffled and cut at 5 random places, after a first chunk that holds one access record
    alone (a state whose time span is 0, so its own time step)."""
    rng = random.Random(seed)
    shuffled = lines[:]
    rng.shuffle(shuffled)
    first = next(i for i, line in enumerate(shuffled) if "\taccess\t" in line or '"scope":"access"' in line)
    single = [shuffled.pop(first)]
    cuts = sorted(rng.sample(range(1, len(shuffled)), 5))
    return [single, *(shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True))]


def _mixed_forms(seed: int) -> list[str]:
    """Each record as its text or its JSON line (chosen at random), with every other line of both files."""
    rng = random.Random(seed)
    text, js = TEXT.read_text().splitlines(), JSON.read_text().splitlines()
    text_of = {r["time"]: next(line for line in text if line.startswith(r["time"] + "\t")) for r in ZTUNNEL}
    json_of = {r["time"]: next(line for line in js if f'"time":"{r["time"]}",' in line) for r in ZTUNNEL}
    records = [(text_of if rng.random() < 0.5 else json_of)[r["time"]] for r in ZTUNNEL]
    others = [line for line in text if line not in text_of.values()]
    others += [line for line in js if line not in json_of.values()]
    return records + others


@pytest.fixture(scope="module")
def whole_report() -> dict[str, Any]:
    report = connections_report(connection_state(_whole(TEXT.read_text().splitlines()).connections), top=int(TOP))
    assert report is not None
    return report


def comparable(report: dict[str, Any] | None) -> dict[str, Any]:
    """The report without ``errors_by_kind[].direction``: where two places of a kind tie, the one it
    names changes from run to run (test_the_report_is_the_same_every_time shows it)."""
    assert report is not None
    kinds = [{k: v for k, v in e.items() if k != "direction"} for e in report["errors_by_kind"]]
    return {**report, "errors_by_kind": kinds}


def test_the_whole_input_in_memory_is_the_cli_report(whole_report: dict[str, Any], report: dict[str, Any]) -> None:
    assert comparable(whole_report) == comparable(report)


def test_the_report_is_the_same_every_time(whole_report: dict[str, Any]) -> None:
    """The same records, read in any order or in chunks, give the same report, every field of it.
    (Two `connection failed` records with no destination service or workload, one inbound and one
    outbound, are the two places of one kind, one connection each.)"""
    lines = TEXT.read_text().splitlines()
    for seed in range(10):
        shuffled = lines[:]
        random.Random(seed).shuffle(shuffled)
        assert connections_report(connection_state(_whole(shuffled).connections), top=int(TOP)) == whole_report
        states = [connection_state(parse_lines(lines_frame(c, source="chunk"), None).connections)
                  for c in _chunks(lines, seed)]  # fmt: skip
        assert connections_report(merge_all(states), top=int(TOP)) == whole_report


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("source", ["text", "text+json"])
def test_merged_chunk_states_give_the_whole_report(seed: int, source: str, whole_report: dict[str, Any]) -> None:
    lines = TEXT.read_text().splitlines() if source == "text" else _mixed_forms(seed)
    chunks = _chunks(lines, seed)
    logs = [parse_lines(lines_frame(chunk, source="chunk"), None) for chunk in chunks]
    assert sum(log.connections.height for log in logs) == len(ZTUNNEL)
    states = [connection_state(log.connections) for log in logs]
    random.Random(seed + 100).shuffle(states)
    assert comparable(connections_report(merge_all(states), top=int(TOP))) == comparable(whole_report)
    # merged in two rounds (associative), halves in either order
    half = len(states) // 2
    nested = merge_all([merge_all(states[half:]), merge_all(states[:half])])
    assert comparable(connections_report(nested, top=int(TOP))) == comparable(whole_report)


@pytest.mark.parametrize("seed", range(2))
def test_summary_states_merge_their_connections(seed: int, whole_report: dict[str, Any]) -> None:
    """The summary state (requests and connections) of each chunk, merged as summarize merges them."""
    chunks = _chunks(TEXT.read_text().splitlines(), seed)
    logs = [parse_lines(lines_frame(chunk, source="chunk"), None) for chunk in chunks]
    states = [state_of(log.requests).with_connections(log.connections) for log in logs]
    random.Random(seed).shuffle(states)
    merged = merge_states(states)
    assert merged.l4.records == len(ZTUNNEL)
    assert comparable(connections_report(merged.l4, top=int(TOP))) == comparable(whole_report)


def test_the_json_file_gives_the_same_report(whole_report: dict[str, Any]) -> None:
    log = _whole(JSON.read_text().splitlines())
    report = connections_report(connection_state(log.connections), top=int(TOP))
    assert comparable(report) == comparable(whole_report)
