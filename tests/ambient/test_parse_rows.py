"""``meshlog parse --records connections``: ztunnel's records as rows, the columns of the contract."""

from __future__ import annotations

import json

from meshlog.cli import app
from tests.ambient.expect import MIXED, MIXED_LINES, TEXT, ZTUNNEL, field, runner, utc


def _rows(*args: str) -> list[dict[str, object]]:
    result = runner.invoke(app, ["parse", "--records", "connections", "-o", "ndjson", *args])
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_record_is_a_row_in_order() -> None:
    rows = _rows(str(TEXT))
    assert [r["src_addr"] for r in rows] == [field(r, "src.addr") for r in ZTUNNEL]
    assert [r["bytes_sent"] for r in rows] == [field(r, "bytes_sent") for r in ZTUNNEL]
    assert [r["timestamp"] for r in rows] == [utc(r["time"]).isoformat().replace("+00:00", "Z") for r in ZTUNNEL]
    assert list(rows[0])[:7] == ["source", "line_no", "captured_at", "pod", "namespace", "container", "stream"]


def test_where_and_since_choose_connections() -> None:
    reviews = [r for r in ZTUNNEL if "reviews" in (field(r, "dst.service") or "")]
    assert len(reviews) > 1
    rows = _rows(str(TEXT), "--where", "dst_service~reviews")
    assert [r["src_addr"] for r in rows] == [field(r, "src.addr") for r in reviews]
    last = max(utc(r["time"]) for r in ZTUNNEL)
    recent = [r for r in ZTUNNEL if (last - utc(r["time"])).total_seconds() < 120]
    assert 0 < len(recent) < len(ZTUNNEL)
    assert len(_rows(str(TEXT), "--since", "2m")) == len(recent)


def test_a_mixed_stream_gives_only_its_connections() -> None:
    ztunnel = [m for m in MIXED_LINES if m["kind"] == "ztunnel"]
    rows = _rows(str(MIXED))
    assert [r["line_no"] for r in rows] == [i + 1 for i, m in enumerate(MIXED_LINES) if m["kind"] == "ztunnel"]
    assert [r["pod"] for r in rows] == [m["pod"] for m in ztunnel]


def test_a_mistyped_connection_column_is_said_with_its_near_miss() -> None:
    for command in (["parse", "--records", "connections"], ["summarize", "-o", "json"]):
        result = runner.invoke(app, [*command, str(TEXT), "--where", "dst_servce~reviews"])
        assert result.exit_code == 2, command
        assert "no column 'dst_servce'; did you mean 'dst_service'?" in result.stderr.splitlines()[0]
