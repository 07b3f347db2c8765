"""A ztunnel and a waypoint in one `kubectl logs --prefix --timestamps` file (ambient-mixed.kubectl.log):
split by kind, each line counted once, the waypoint's clusters, the kubectl metadata per line; the
report's output forms; and ``--where`` on one kind of record or on both."""

from __future__ import annotations

import re
from typing import Any

import polars as pl
import pytest

from meshlog.parse import AccessLog
from meshlog.ztunnel_errors import BY_KEY
from tests.ambient.expect import (
    MIXED,
    MIXED_LINES,
    RECORD_COLUMNS,
    SIDECAR,
    TEXT,
    WAYPOINT,
    ZTUNNEL,
    ended,
    errors_by_kind,
    event,
    expected_row,
    field,
    group,
    parse_file,
    short_service,
    summarize,
    summary,
    utc,
)

LINE_NOS = {
    kind: [n for n, m in enumerate(MIXED_LINES, start=1) if m["kind"] == kind]
    for kind in ("ztunnel", "ztunnel-other", "waypoint", "waypoint-other")
}
MIXED_ZTUNNEL = [ZTUNNEL[m["index"]] for m in MIXED_LINES if m["kind"] == "ztunnel"]
MIXED_WAYPOINT = [WAYPOINT[m["index"]] for m in MIXED_LINES if m["kind"] == "waypoint"]


@pytest.fixture(scope="module")
def mixed() -> AccessLog:
    return parse_file(MIXED)


# -- 6. mixed input ------------------------------------------------------------------------------------------


def test_the_readme_counts_of_the_mixed_file() -> None:
    """README: 14 ztunnel access lines and the RBAC line, 11 waypoint lines and one pilot-agent line."""
    assert {k: len(v) for k, v in LINE_NOS.items()} == {
        "ztunnel": 14, "ztunnel-other": 1, "waypoint": 11, "waypoint-other": 1,
    }  # fmt: skip
    assert len(MIXED.read_text().splitlines()) == len(MIXED_LINES) == 27


def test_each_line_is_counted_once_as_its_kind(mixed: AccessLog) -> None:
    c = mixed.counts
    others = len(LINE_NOS["ztunnel-other"]) + len(LINE_NOS["waypoint-other"])
    assert (c.total, c.access, c.unparsed, c.other) == (len(MIXED_LINES), 14 + 11, 0, others)
    assert mixed.requests["line_no"].to_list() == LINE_NOS["waypoint"]
    assert mixed.connections["line_no"].to_list() == LINE_NOS["ztunnel"]
    assert sorted(mixed.other["line_no"]) == sorted(LINE_NOS["ztunnel-other"] + LINE_NOS["waypoint-other"])
    assert mixed.format is not None and mixed.format.name == "istio"  # the waypoint's lines found it


def test_the_mixed_summary_reports_both_kinds() -> None:
    out = summary(MIXED, "--top", "100")
    others = len(LINE_NOS["ztunnel-other"]) + len(LINE_NOS["waypoint-other"])
    assert out["lines"] == {"total": len(MIXED_LINES), "access": 25, "unparsed": 0, "other": others}
    assert out["requests"] == len(MIXED_WAYPOINT)
    connections = out["connections"]
    assert connections["total"] == len(ended(MIXED_ZTUNNEL))
    assert connections["opened"] == sum(event(r) == "opened" for r in MIXED_ZTUNNEL)
    assert connections["errors"] == sum(field(r, "error") is not None for r in ended(MIXED_ZTUNNEL))
    codes = {(c["code"], c["count"]) for c in out["response_codes"]}
    want: dict[int, int] = {}
    for w in MIXED_WAYPOINT:
        want[w["response_code"]] = want.get(w["response_code"], 0) + 1
    assert codes == set(want.items())


def test_the_ztunnel_rows_of_the_mixed_file(mixed: AccessLog) -> None:
    rows = mixed.connections.select(RECORD_COLUMNS).to_dicts()
    assert rows == [expected_row(r) for r in MIXED_ZTUNNEL]


def _by_line(frame: pl.DataFrame) -> dict[int, dict[str, Any]]:
    return {r["line_no"]: r for r in frame.iter_rows(named=True)}


def test_the_kubectl_prefix_of_every_line(mixed: AccessLog) -> None:
    """pod and container from `[pod/NAME/CONTAINER]`, captured_at from --timestamps (to the µs)."""
    rows = {**_by_line(mixed.requests), **_by_line(mixed.connections)}
    for n, entry in enumerate(MIXED_LINES, start=1):
        if entry["kind"] not in ("ztunnel", "waypoint"):
            continue
        row = rows[n]
        assert (row["pod"], row["container"]) == (entry["pod"], entry["container"]), n
        assert row["captured_at"] == utc(entry["captured"]), n


def _envoy_value(key: str, value: Any) -> Any:
    """records.json's Istio JSON value as meshlog's column holds it."""
    if value is None:
        return None
    if key == "start_time":
        return utc(value)
    if key == "upstream_service_time":  # a string in Istio's JSON, whole milliseconds
        return int(value)
    return value


def test_the_waypoint_rows_are_the_records(mixed: AccessLog) -> None:
    rows = mixed.requests.to_dicts()
    assert len(rows) == len(MIXED_WAYPOINT)
    for got, entry in zip(rows, MIXED_WAYPOINT, strict=True):
        want = {k: _envoy_value(k, v) for k, v in entry.items()}
        assert {k: got[k] for k in want} == want, entry["request_id"]


def _cluster_parts(cluster: str | None) -> dict[str, Any]:
    """The note's §6.2/§6.3: `direction|port|subset|hostname`; a waypoint's inbound-vip subset part is the
    protocol (`http`, `tcp`), or `http/<subset>`. Any other name (connect_originate, encap,
    main_internal, `-`) names no service and no port."""
    if cluster is None or cluster.count("|") != 3:
        return {"cluster_port": None, "cluster_service": None, "cluster_subset": None, "cluster_protocol": None}
    direction, port, subset, host = cluster.split("|")
    protocol, _, named = subset.partition("/")
    return {
        "cluster_direction": direction,
        "cluster_port": int(port),
        "cluster_service": host,
        "cluster_protocol": protocol,
        "cluster_subset": named or None,
    }


def test_the_waypoint_clusters(mixed: AccessLog) -> None:
    rows = mixed.requests.to_dicts()
    inbound_vip = 0
    for got, entry in zip(rows, MIXED_WAYPOINT, strict=True):
        assert got["upstream_cluster"] == entry["upstream_cluster"]
        assert got["upstream_host"] == entry["upstream_host"]
        want = _cluster_parts(entry["upstream_cluster"])
        assert {k: got[k] for k in want} == want, entry["upstream_cluster"]
        if want.get("cluster_direction") == "inbound-vip":
            inbound_vip += 1
            assert got["cluster_direction"] == "inbound-vip"
            assert str(entry["upstream_host"]).startswith("envoy://connect_originate/")
    assert inbound_vip == 7  # README: the reviews and ratings services use the waypoint
    subsets = {(r["cluster_service"], r["cluster_protocol"], r["cluster_subset"]) for r in rows if r["cluster_port"]}
    assert subsets == {
        ("reviews.bookinfo.svc.cluster.local", "http", None),
        ("reviews.bookinfo.svc.cluster.local", "http", "v2"),
        ("ratings.bookinfo.svc.cluster.local", "tcp", None),
    }


# -- 8. output forms -----------------------------------------------------------------------------------------


def test_markdown_has_the_l4_section_and_the_hint_titles() -> None:
    code, out, err = summarize(TEXT, "-o", "markdown")
    assert code == 0, err
    assert "## L4 connections (ztunnel)" in out.splitlines()
    for kind in errors_by_kind():
        assert f"**{BY_KEY[kind].title}**" in out, kind


def _top_failing_service() -> str:
    errors = {
        service: sum(field(r, "error") is not None for r in rows)
        for (service,), rows in group(ended(), lambda r: (field(r, "dst.service"),)).items()
        if service is not None
    }
    top = max(errors.values())
    leaders = [s for s, n in errors.items() if n == top]
    assert len(leaders) == 1, errors
    return leaders[0]


def test_text_names_the_top_failing_destination_service() -> None:
    service = _top_failing_service()
    assert service == "details.bookinfo.svc.cluster.local"  # 4 errors (NetworkPolicy, 503, broken pipe, identity)
    code, out, err = summarize(TEXT, env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert code == 0, err
    assert "L4 connections (ztunnel)" in out
    section = out.split("by source → destination", 1)[1]
    named = re.findall(r"\(([a-z0-9-]+\.[a-z0-9-]+)\)", section)
    assert named and named[0] == short_service(service), named[:3]


def test_a_sidecar_log_has_no_connections() -> None:
    out = summary(SIDECAR)
    assert "connections" in out and out["connections"] is None
    assert out["requests"] > 0


# -- 9. --where on connections and on requests ------------------------------------------------------------


def test_where_on_a_connection_column_keeps_no_request() -> None:
    out = summary(MIXED, "--where", "dst_service~reviews")
    assert out["requests"] == 0
    to_reviews = [r for r in MIXED_ZTUNNEL if "reviews" in str(field(r, "dst.service"))]
    assert len(ended(to_reviews)) == 5
    assert out["connections"]["total"] == len(ended(to_reviews))
    assert out["connections"]["opened"] == sum(event(r) == "opened" for r in to_reviews)
    assert {r["dst_service"] for r in out["connections"]["by_service"]} == {"reviews.bookinfo.svc.cluster.local"}
    assert out["lines"]["access"] == 25  # the accounting is of the input, not of the filter


def test_where_on_a_request_column_keeps_no_connection() -> None:
    out = summary(MIXED, "--where", "response_code>=500")
    assert out["connections"] is None or out["connections"]["total"] == 0
    assert out["requests"] == sum(w["response_code"] >= 500 for w in MIXED_WAYPOINT) == 2


def test_where_on_a_column_both_kinds_have_filters_both() -> None:
    out = summary(MIXED, "--where", "bytes_sent>300")
    assert out["requests"] == sum(w["bytes_sent"] > 300 for w in MIXED_WAYPOINT)
    assert out["connections"]["total"] == sum((field(r, "bytes_sent") or 0) > 300 for r in ended(MIXED_ZTUNNEL))
    ztunnel_pod = summary(MIXED, "--where", "pod=ztunnel-abcde")  # a kubectl column: both kinds have it
    assert ztunnel_pod["requests"] == 0
    assert ztunnel_pod["connections"]["total"] == len(ended(MIXED_ZTUNNEL))
