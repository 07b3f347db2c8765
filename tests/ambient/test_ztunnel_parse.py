"""ztunnel's access records parsed from every form the fixtures hold (text, JSON, a CRI file, the kiali
peer log): detection without --format, the line accounting, every column of every row against
records.json, the escapes, the Kubernetes metadata of the wrappers, and broken records."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from meshlog.parse import AccessLog, lines_frame, parse_lines
from tests.ambient.expect import (
    CRI,
    JSON,
    KIALI_ZTUNNEL,
    RECORD_COLUMNS,
    RECORDS,
    TEXT,
    ZTUNNEL,
    expected_row,
    field,
    other_ztunnel_lines,
    parse_file,
    summarize,
    summary,
    utc,
)

# -- 1. detection and accounting ----------------------------------------------------------------------------

# kiali's ztunnel.log, read by eye: 28 lines (the last without a newline), every one a `connection complete`
# record at info (ztunnel 1.22's bare names on the first 11, quoted ones after)
KIALI_LINES = 28

ACCOUNTING = {
    # file → (total, access, other): access = the records of records.json["ztunnel"], other = the rest
    "ztunnel.log": (len(ZTUNNEL) + other_ztunnel_lines(), len(ZTUNNEL), other_ztunnel_lines()),
    "ztunnel.json.log": (
        len(ZTUNNEL) + len(RECORDS["ztunnel_other_json"]), len(ZTUNNEL), len(RECORDS["ztunnel_other_json"]),
    ),
    "ztunnel.cri.log": (len(ZTUNNEL) + other_ztunnel_lines(), len(ZTUNNEL), other_ztunnel_lines()),
    "kiali": (KIALI_LINES, KIALI_LINES, 0),
}  # fmt: skip
PATHS = {"ztunnel.log": TEXT, "ztunnel.json.log": JSON, "ztunnel.cri.log": CRI, "kiali": KIALI_ZTUNNEL}


def test_the_fixture_counts_are_what_the_readme_says() -> None:
    """records.json itself: 45 records (5 opened, 14 ok, 17 complete with an error, 9 failed), ztunnel.log
    64 lines, ztunnel.json.log 47 (fixtures/ambient/README.md)."""
    assert len(ZTUNNEL) == 45
    assert sum(r["message"] == "connection opened" for r in ZTUNNEL) == 5
    assert sum(r["message"] == "connection complete" and r["level"] == "info" for r in ZTUNNEL) == 14
    assert sum(r["message"] == "connection complete" and r["level"] == "error" for r in ZTUNNEL) == 17
    assert sum(r["message"] == "connection failed" for r in ZTUNNEL) == 9
    assert len(TEXT.read_text().splitlines()) == ACCOUNTING["ztunnel.log"][0] == 64
    assert len(JSON.read_text().splitlines()) == ACCOUNTING["ztunnel.json.log"][0] == 47
    assert len(KIALI_ZTUNNEL.read_text().splitlines()) == KIALI_LINES


@pytest.mark.parametrize("name", list(ACCOUNTING))
def test_summarize_detects_ztunnel_without_a_format(name: str) -> None:
    code, out, err = summarize(PATHS[name], "-o", "json")
    assert code == 0, err
    lines = json.loads(out)["lines"]
    total, access, other = ACCOUNTING[name]
    assert lines == {"total": total, "access": access, "unparsed": 0, "other": other}
    assert lines["total"] == lines["access"] + lines["unparsed"] + lines["other"]
    assert f"lines: {total} total, {access} access, 0 unparsed, {other} other" in err


# -- 2. every column ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_log() -> AccessLog:
    return parse_file(TEXT)


@pytest.fixture(scope="module")
def json_log() -> AccessLog:
    return parse_file(JSON)


def _ztunnel_line_numbers(lines: list[str], pattern: str) -> list[int]:
    return [n for n, line in enumerate(lines, start=1) if re.search(pattern, line)]


@pytest.mark.parametrize("which", ["text", "json"])
def test_every_column_of_every_row_is_the_record(which: str, text_log: AccessLog, json_log: AccessLog) -> None:
    log = text_log if which == "text" else json_log
    assert log.requests.height == 0
    rows = log.connections.select(RECORD_COLUMNS).to_dicts()
    assert len(rows) == len(ZTUNNEL)
    for n, (got, record) in enumerate(zip(rows, ZTUNNEL, strict=True)):
        assert got == expected_row(record), f"record {n} ({record['time']})"


@pytest.mark.parametrize("which", ["text", "json"])
def test_rows_point_at_their_lines(which: str, text_log: AccessLog, json_log: AccessLog) -> None:
    """line_no is the physical line of each record (the file read here, not meshlog)."""
    path, log = (TEXT, text_log) if which == "text" else (JSON, json_log)
    lines = path.read_text().splitlines()
    pattern = r"\taccess\tconnection " if which == "text" else r'"scope":"access"'
    assert log.connections["line_no"].to_list() == _ztunnel_line_numbers(lines, pattern)
    assert set(log.connections["source"]) == {str(path)}
    for line_no, record in zip(log.connections["line_no"], ZTUNNEL, strict=True):
        assert record["time"] in lines[line_no - 1]


def test_the_schema_types_bytes_and_duration_as_integers(text_log: AccessLog) -> None:
    schema = text_log.connections.schema
    assert schema["timestamp"] == pl.Datetime("us", "UTC")
    assert (schema["bytes_sent"], schema["bytes_recv"], schema["duration"]) == (pl.Int64, pl.Int64, pl.Int64)


def test_text_and_json_give_the_same_frame(text_log: AccessLog, json_log: AccessLog) -> None:
    assert_frame_equal(text_log.connections.drop("source", "line_no"), json_log.connections.drop("source", "line_no"))


def _rust_debug(value: str) -> str:
    """Rust's ``str`` Debug for the two escapes checked here (reference note §2: ``\\"`` and ``\\\\``)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


ESCAPED = [n for n, r in enumerate(ZTUNNEL) if any(c in str(field(r, "error")) for c in '"\\')]


def test_the_escaped_records_are_the_readme_ones() -> None:
    """README: `\\"` in the GatewayAddress and `tls handshake eof` errors, `\\\\` in the h2 GOAWAY one."""
    errors = [field(ZTUNNEL[n], "error") for n in ESCAPED]
    assert len(errors) == 3
    assert any("GatewayAddress" in e for e in errors) and any("tls handshake eof" in e for e in errors)
    assert any("\\" in e and 'b"shutdown' in e for e in errors)


@pytest.mark.parametrize("n", ESCAPED)
def test_quotes_and_backslashes_are_unescaped(n: int, text_log: AccessLog, json_log: AccessLog) -> None:
    error = field(ZTUNNEL[n], "error")
    text_line = TEXT.read_text().splitlines()[text_log.connections["line_no"][n] - 1]
    assert f"error={_rust_debug(error)}" in text_line  # the escape is really in the file
    json_line = JSON.read_text().splitlines()[json_log.connections["line_no"][n] - 1]
    assert json.loads(json_line)["error"] == error
    assert text_log.connections["error"][n] == error
    assert json_log.connections["error"][n] == error


def _pod_dir(root: Path) -> Path:
    folder = root / "var/log/pods/istio-system_ztunnel-abcde_7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f/istio-proxy"
    folder.mkdir(parents=True)
    return folder


def test_a_cri_file_keeps_its_kubernetes_metadata(tmp_path: Path, text_log: AccessLog) -> None:
    """A kubelet node file (its path names namespace, pod and container): the rows carry them, the
    CRI stream and capture time, and are otherwise the text file's rows."""
    node_file = _pod_dir(tmp_path) / "0.log"
    node_file.write_bytes(CRI.read_bytes())
    log = parse_file(node_file)
    c = log.connections
    assert log.counts.access == len(ZTUNNEL)
    assert {(r["pod"], r["namespace"], r["container"], r["stream"]) for r in c.iter_rows(named=True)} == {
        ("ztunnel-abcde", "istio-system", "istio-proxy", "stdout")
    }
    cri_lines = CRI.read_text().splitlines()
    assert c["captured_at"].to_list() == [utc(cri_lines[n - 1].split(" ", 1)[0]) for n in c["line_no"]]
    for got, record in zip(c.select(RECORD_COLUMNS).to_dicts(), ZTUNNEL, strict=True):
        assert got == expected_row(record)
    assert c["line_no"].to_list() == text_log.connections["line_no"].to_list()  # one CRI line per text line


def test_the_cri_fixture_read_as_it_is(text_log: AccessLog) -> None:
    """The fixture itself (a path with no pod in it): unwrapped, the same records, capture times kept."""
    log = parse_file(CRI)
    assert_frame_equal(log.connections.select(RECORD_COLUMNS), text_log.connections.select(RECORD_COLUMNS))
    assert log.connections["stream"].unique().to_list() == ["stdout"]
    assert log.connections["captured_at"].null_count() == 0


def test_the_kiali_ztunnel_log_by_eye() -> None:
    """Values read off ../shared/peer-data/kiali/ztunnel.log."""
    log = parse_file(KIALI_ZTUNNEL)
    c = log.connections
    assert c.height == KIALI_LINES and log.requests.height == 0
    assert set(c["event"]) == {"complete"} and set(c["level"]) == {"info"}
    assert c["error"].null_count() == KIALI_LINES
    first = c.row(0, named=True)  # line 1: ztunnel 1.22, names bare, no dst.hbone_addr
    assert first["timestamp"] == utc("2024-04-12T10:17:44.080629Z")
    assert (first["src_addr"], first["src_workload"], first["src_namespace"]) == (
        "10.244.0.16:52008", "productpage-v1-87d54dd59-fzflt", "bookinfo",
    )  # fmt: skip
    assert first["src_identity"] == "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage"
    assert (first["dst_addr"], first["dst_hbone_addr"], first["dst_service"]) == (
        "10.244.0.14:15008", None, "reviews.bookinfo.svc.cluster.local",
    )  # fmt: skip
    assert (first["dst_workload"], first["direction"]) == ("reviews-v2-6f9b55c5db-vnpzr", "outbound")
    assert (first["bytes_sent"], first["bytes_recv"], first["duration"]) == (200, 603, 2)
    assert (first["src_cluster"], first["dst_cluster"]) == (None, None)  # 1.31's fields, not in 1.22
    second = c.row(1, named=True)  # line 2: a quoted dst.hbone_addr among bare names
    assert (second["dst_hbone_addr"], second["dst_namespace"], second["duration"]) == (
        "10.244.0.16:9080", "productpage", 8,
    )  # fmt: skip
    sixth = c.row(5, named=True)  # line 6: dst.namespace="productpage", quoted
    assert (sixth["dst_namespace"], sixth["bytes_sent"], sixth["duration"]) == ("productpage", 5479, 12)
    prometheus = c.row(21, named=True)  # line 22: prometheus scrapes in plaintext: no identities
    assert prometheus["src_workload"] == "prometheus-66f897d897-8prjb"
    assert (prometheus["src_identity"], prometheus["dst_identity"], prometheus["dst_hbone_addr"]) == (None, None, None)
    assert (prometheus["bytes_sent"], prometheus["bytes_recv"], prometheus["duration"]) == (2913, 293, 2)
    last = c.row(KIALI_LINES - 1, named=True)  # line 28, no newline after it
    assert (last["timestamp"], last["bytes_sent"], last["duration"]) == (utc("2024-07-02T13:41:05.674467Z"), 5479, 10)


# -- 3. bad input -------------------------------------------------------------------------------------------


def _line_of(path: Path, record: dict[str, Any]) -> str:
    """The line of ``path`` that holds ``record`` (its time is unique)."""
    return next(line for line in path.read_text().splitlines() if record["time"] in line and "access" in line)


GOOD = ZTUNNEL[2]  # a `connection complete` at info: bytes_sent=5293, duration="26ms"


def _crafted() -> list[tuple[str, str]]:
    """(line, what its reason must name), the first one a good record."""
    assert (field(GOOD, "bytes_sent"), field(GOOD, "duration_ms")) == (5293, 26)
    text, js = _line_of(TEXT, GOOD), _line_of(JSON, GOOD)
    cut = js.index('"dst.service"')  # a JSON record cut after its message and addresses
    return [
        (text, ""),
        (text.replace("bytes_sent=5293", "bytes_sent=abc"), "bytes_sent"),
        (text.replace('duration="26ms"', 'duration="soon"'), "duration"),
        (js[:cut], "JSON"),
        (js.replace('"duration":"26ms"', '"duration":"26 parsecs"'), "duration"),
        (js.replace('"bytes_sent":5293', '"bytes_sent":"abc"'), "bytes_sent"),
    ]


def test_crafted_lines_are_really_changed() -> None:
    lines = [line for line, _ in _crafted()]
    assert len(set(lines)) == len(lines)


def test_broken_records_are_unparsed_with_a_reason_naming_the_field() -> None:
    crafted = _crafted()
    log = parse_lines(lines_frame([line for line, _ in crafted], source="crafted"), None)
    c = log.counts
    assert (c.total, c.access, c.unparsed, c.other) == (len(crafted), 1, len(crafted) - 1, 0)
    assert log.connections["line_no"].to_list() == [1]
    assert log.unparsed["line_no"].to_list() == list(range(2, len(crafted) + 1))
    for (line, names), reason, kept in zip(crafted[1:], log.unparsed["reason"], log.unparsed["line"], strict=True):
        assert names in reason, reason
        assert kept == line  # the line itself is kept, as it was
    assert '"abc"' in log.unparsed["reason"][0] and '"soon"' in log.unparsed["reason"][1]


def test_summarize_lists_the_unparsed_lines_and_strict_fails(tmp_path: Path) -> None:
    crafted = _crafted()
    bad = tmp_path / "bad.log"
    bad.write_text("".join(f"{line}\n" for line, _ in crafted))
    out = summary(bad)
    assert out["lines"] == {"total": len(crafted), "access": 1, "unparsed": len(crafted) - 1, "other": 0}
    listed = out["unparsed_lines"]
    assert [(u["source"], u["line_no"]) for u in listed] == [(str(bad), n) for n in range(2, len(crafted) + 1)]
    assert all(names in u["reason"] for u, (_, names) in zip(listed, crafted[1:], strict=True))
    assert out["connections"]["total"] == 1

    code, _, err = summarize(bad, "-o", "json", "--strict")
    assert code == 4
    said = [line for line in err.splitlines() if line.startswith("meshlog: error:")]
    assert len(said) == 1 and err.splitlines()[-1] == said[0]
    assert said[0].startswith(f"meshlog: error: {len(crafted) - 1} lines did not parse; first at {bad}:2: ")
    assert "bytes_sent" in said[0] and '"abc"' in said[0]
