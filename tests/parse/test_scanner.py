"""The compiled scanner against the polars road, and against values known outside meshlog.

Every fixture and stream sample goes down both roads (``tests/roads.py``); so do lines built to
sit on each edge the scanner decides itself or leaves to polars: numbers polars reads but the
scanner does not ("+5"), times of other shapes, separators inside values, tiny and non-ASCII
lines, and Arrow columns in several chunks, sliced or with nulls.
"""

from __future__ import annotations

import datetime as dt
import gc
import threading
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from meshlog.formats.compiler import compile_format
from meshlog.formats.presets import resolve
from meshlog.parse import AccessLog, lines_frame, parse_lines, scanner
from meshlog.pipeline import Run, parse_paths
from tests.conftest import FIXTURES
from tests.roads import assert_same_log, on_both_roads, road

ISTIO = resolve("istio")

LOGS = sorted(p for p in FIXTURES.rglob("*.log") if p.stat().st_size)


def istio_line(
    *,
    start: str = "2026-11-25T21:00:00.204Z",
    code: str = "200",
    flags: str = "-",
    duration: str = "8",
    upstream_time: str = "7",
    agent: str = "curl/8.5.0",
    path: str = "/productpage",
    cluster: str = "outbound|9080||productpage.default.svc.cluster.local",
) -> str:
    """An Istio default-format line (the field order of Istio's documented default)."""
    return (
        f'[{start}] "GET {path} HTTP/1.1" {code} {flags} via_upstream - "-" 0 1882 {duration} {upstream_time} '
        f'"-" "{agent}" "8af794bb-60ff-4218-a433-f3c2d620e614" "ratings:9080" "10.244.6.177:9080" '
        f"{cluster} 10.244.6.87:58514 10.96.3.215:9080 10.244.6.87:35148 - default"
    )


def test_the_scanner_is_built_and_walks_istios_format() -> None:
    # scripts/test.sh installs a C compiler, so CI always has the extension to test
    assert scanner.built()
    with road(pure=False):
        found = scanner.cut(pl.Series([istio_line()]), ISTIO)
    assert found is not None
    assert found["_why"].to_list() == [scanner.VOUCHED]
    assert found["response_code"].to_list() == [200]
    assert found["start_time"].to_list() == [dt.datetime(2026, 11, 25, 21, 0, 0, 204000, tzinfo=dt.UTC)]


def test_pure_turns_the_scanner_off() -> None:
    with road(pure=True):
        assert not scanner.available()
        assert scanner.cut(pl.Series([istio_line()]), ISTIO) is None


@pytest.mark.parametrize("path", LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_fixture_log_reads_the_same_on_both_roads(path: Path) -> None:
    def parse() -> list[AccessLog]:
        run = Run(None)
        return list(parse_paths([str(path)], run))

    on_both_roads(parse)


# Values on each side of what the scanner decides itself; the expected column values come from
# Python's own int() and datetime, or are null where Envoy's "-" means unset.
CLUSTER = "outbound|9080||reviews.default.svc.cluster.local"
EDGES: list[tuple[dict[str, str], dict[str, object] | None]] = [
    ({"code": "007"}, {"response_code": 7}),
    ({"code": "-0"}, {"response_code": 0}),
    ({"code": "+5"}, {"response_code": int("+5")}),  # polars reads it; the scanner leaves it to polars
    ({"code": "-"}, {"response_code": None}),
    ({"code": "9" * 18}, {"response_code": int("9" * 18)}),
    ({"code": "9223372036854775807"}, {"response_code": 2**63 - 1}),
    ({"code": "4x4"}, None),  # unparsed: not an integer
    ({"code": "99999999999999999999"}, None),  # unparsed: past Int64
    ({"duration": ""}, {"duration": None}),  # empty: unset, as with omit_empty_values
    ({"start": "2024-02-29T23:59:59.999Z"}, {"start_time": dt.datetime(2024, 2, 29, 23, 59, 59, 999000, dt.UTC)}),
    ({"start": "2024-01-01T00:00:00.5Z"}, {"start_time": dt.datetime(2024, 1, 1, 0, 0, 0, 500000, dt.UTC)}),
    ({"start": "1969-12-31T23:59:59.999Z"}, {"start_time": dt.datetime(1969, 12, 31, 23, 59, 59, 999000, dt.UTC)}),
    ({"start": "2023-02-29T00:00:00.000Z"}, None),  # no such day
    ({"start": "2024-01-01T24:00:00.000Z"}, None),
    ({"start": "-"}, {"start_time": None}),
    ({"agent": 'Mozilla/5.0 (compatible; "Scanbot"/2.1)'}, {"user_agent": 'Mozilla/5.0 (compatible; "Scanbot"/2.1)'}),
    ({"agent": ""}, {"user_agent": ""}),  # an empty header is a value, not unset
    ({"agent": "-"}, {"user_agent": None}),
    ({"path": "/caf\u00e9/\u65e5\u672c/\U0001f600"}, {"path": "/caf\u00e9/\u65e5\u672c/\U0001f600"}),
    ({"path": "/a-path-longer-than-twelve-bytes?q=1"}, {"path": "/a-path-longer-than-twelve-bytes?q=1"}),
    ({"cluster": CLUSTER + ";"}, {"upstream_cluster": CLUSTER}),  # Istio ≥1.23's alt_stat_name
    ({"cluster": "-"}, {"upstream_cluster": None}),
    ({"flags": "UF,URX"}, {"response_flags": "UF,URX"}),
]  # fmt: skip


@pytest.mark.parametrize(("change", "want"), EDGES, ids=[str(c) for c, _ in EDGES])
def test_edge_values_read_as_outside_meshlog_says(change: dict[str, str], want: dict[str, object] | None) -> None:
    frame = lines_frame([istio_line(), istio_line(**change), istio_line()], source="t")
    log = on_both_roads(lambda: parse_lines(frame, ISTIO))
    if want is None:
        assert (log.counts.access, log.counts.unparsed) == (2, 1)
        assert log.unparsed["line_no"].to_list() == [2]
        return
    assert log.counts.access == 3
    got = log.requests.row(1, named=True)
    assert {k: got[k] for k in want} == want


def test_lines_of_every_shape_in_one_chunk() -> None:
    lines = [
        istio_line(),
        "",
        "short",
        "x" * 12,
        '[2026-11-25T21:00:00.204Z] "GET',
        istio_line(code="+5"),
        istio_line(agent='a "quoted" agent'),
        istio_line() + " trailing",
        "2026-11-25T21:00:00.204Z info envoy upstream  cds: added/updated 1 cluster(s)",
        istio_line(start="2026-11-25T21:00:00Z"),
    ]
    log = on_both_roads(lambda: parse_lines(lines_frame(lines, source="t"), ISTIO))
    assert log.counts.total == len(lines)


def _cut(series: pl.Series) -> pl.DataFrame:
    with road(pure=False):
        found = scanner.cut(series, ISTIO)
    assert found is not None
    return found


def test_a_column_in_several_chunks_sliced_and_with_nulls() -> None:
    a = pl.Series("line", [istio_line(code=str(200 + i)) for i in range(5)])
    b = pl.Series("line", [None, istio_line(code="503", flags="UF"), "short"])
    joined = pl.concat([a, b], rechunk=False)
    assert joined.n_chunks() == 2
    found = _cut(joined)
    assert found["response_code"].to_list() == [200, 201, 202, 203, 204, None, 503, None]
    assert found["_why"].to_list() == [0, 0, 0, 0, 0, 1, 0, 1]
    sliced = _cut(joined.slice(3, 4))
    assert sliced["response_code"].to_list() == [203, 204, None, 503]
    assert sliced["response_flags"].to_list() == [None, None, None, "UF"]  # "-": no flag


def test_columns_outlive_the_lines_they_point_into() -> None:
    path = "/reviews/" + "x" * 40  # longer than 12 bytes: a view into the line's buffer
    series = pl.Series("line", [istio_line(path=path + str(i)) for i in range(2000)])
    found = _cut(series)
    del series
    gc.collect()
    assert found["path"].to_list() == [path + str(i) for i in range(2000)]


def test_threads_scan_blocks_at_once() -> None:
    # The GIL is released while a block is cut: threads side by side give what one thread gives.
    blocks = [pl.Series("line", [istio_line(code=str(200 + (i * k) % 300)) for i in range(3000)]) for k in range(4)]
    alone = [_cut(b) for b in blocks]
    together: list[pl.DataFrame | None] = [None] * len(blocks)

    def work(k: int) -> None:
        together[k] = _cut(blocks[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(blocks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, y in zip(alone, together, strict=True):
        assert y is not None
        assert_frame_equal(x, y)


_VALUE = st.one_of(
    st.sampled_from(["-", "", "0", "007", "+5", "-0", "1e3", " 5", "9" * 19, ";", "-;", '"', " ", "\t", "\u00e9"]),
    st.text(alphabet=st.sampled_from('ab1-:." ;|\u00e9'), max_size=20),
    st.integers(-(2**63), 2**63 - 1).map(str),
)
_TIME = st.one_of(
    st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31)).map(
        lambda t: t.isoformat(timespec="milliseconds") + "Z"
    ),
    st.sampled_from(["-", "2024-13-01T00:00:00.000Z", "2024-01-01T00:00:60.000Z", "2024-01-01 00:00:00.000Z"]),
)  # fmt: skip


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"start": _TIME, "code": _VALUE, "flags": _VALUE, "duration": _VALUE, "agent": _VALUE, "cluster": _VALUE}
        ),
        min_size=1,
        max_size=8,
    )
)
def test_random_values_read_the_same_on_both_roads(rows: list[dict[str, str]]) -> None:
    frame = lines_frame([istio_line(**r) for r in rows], source="t")
    with road(pure=True):
        reference = parse_lines(frame, ISTIO)
    with road(pure=False):
        scanned = parse_lines(frame, ISTIO)
    assert_same_log(reference, scanned)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31)), st.integers(1, 6))
def test_times_match_pythons_calendar(when: dt.datetime, digits: int) -> None:
    text = f"{when.year:04d}-" + when.strftime("%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}"[:digits] + "Z"
    expected = dt.datetime.fromisoformat(text)
    found = _cut(pl.Series("line", [istio_line(start=text)]))
    assert found["_why"].to_list() == [0]
    assert found["start_time"].to_list() == [expected]


def test_a_custom_format_with_prefixes_suffixes_and_a_multibyte_separator() -> None:
    fmt = compile_format("%START_TIME% \u2192 code=%RESPONSE_CODE% \u2192 [%UPSTREAM_HOST%] %DURATION%ms\n")
    lines = [
        "2026-11-25T21:00:00.204Z \u2192 code=200 \u2192 [10.0.0.1:80] 12ms",
        "2026-11-25T21:00:00.204Z \u2192 code=503 \u2192 [-] 0ms",
        "2026-11-25T21:00:00.204Z \u2192 code=200 [10.0.0.1:80] 12ms",
        "2026-11-25T21:00:00.204Z \u2192 code=200 \u2192 \u2192 [10.0.0.1:80] 12ms",
    ]
    log = on_both_roads(lambda: parse_lines(lines_frame(lines, source="t"), fmt))
    assert log.requests["response_code"].to_list() == [200, 503]
    assert log.requests["upstream_host"].to_list() == ["10.0.0.1:80", None]
    assert log.requests["duration"].to_list() == [12, 0]
    assert log.unparsed["line_no"].to_list() == [3, 4]
