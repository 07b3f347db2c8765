"""Real lines from other projects' test suites (../shared/peer-data), checked against *their* expected values."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from meshlog.parse import AccessLog
from meshlog.pipeline import Run, parse_paths
from tests.conftest import PEER_DATA
from tests.roads import on_both_roads

ISTIO = PEER_DATA / "elastic-integrations" / "istio-access_logs"


def parse_file(path: Path) -> AccessLog:
    def parse() -> AccessLog:
        run = Run(None)
        logs = list(parse_paths([str(path)], run))
        assert run.format is not None and not run.errors
        return AccessLog.concat(logs, run.format)

    return on_both_roads(parse)


# file → (lines, access lines) as counted in MANIFEST.md; every other line is "other", none unparsed
COUNTS = {
    "elastic-beats/envoy.log": (4, 4),
    "elastic-beats/envoy.log.variant-6dd025a.log": (2, 2),
    "elastic-integrations/istio-access_logs/test-access-logs.log": (8, 8),
    "elastic-integrations/istio-access_logs/test-access-failed.log": (8, 8),
    "elastic-integrations/istio-access_logs/test-access-json-logs.log": (3, 3),
    "elastic-integrations/istio-access_logs/test-access_container_logs.log": (15, 15),
    "elastic-integrations/istio-access_logs/test-access_failed_logs.log": (2, 2),
    "elastic-integrations/istio-access_logs/test-access_logs.log": (3, 3),
    "elastic-integrations/istio-access_logs/test-access_invalid_logs.log": (1, 1),
    "elastic-integrations/istio-access_logs/test-access-other-logs.log": (1, 1),
    "elastic-integrations/istio-access_logs/test-ingest-raw.log": (2, 2),
    "istio-istio/istio-issue29109-kubectl-ts.log": (3, 3),
    "istio-istio/istio-pr27903-examples.log": (4, 4),
    "kiali/waypoint.log": (16, 16),
    # docker-json and Ambassador "ACCESS "-prefixed lines, unwrapped
    "elastic-integrations/envoyproxy-log/test-log.log": (7, 7),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_every_peer_line_is_accounted_for(name: str) -> None:
    log = parse_file(PEER_DATA / name)
    total, access = COUNTS[name]
    c = log.counts
    assert (c.total, c.access, c.unparsed) == (total, access, 0)


def _dig(record: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


# Elastic's istio pipeline field → meshlog column. (Its http.*.body.bytes swap Envoy's meaning: not used.)
ISTIO_FIELDS = {
    "http.response.status_code": "response_code",
    "http.request.method": "method",
    "http.request.id": "request_id",
    "url.original": "path",
    "user_agent.original": "user_agent",
    "istio.access.authority": "authority",
    "istio.access.bytes.received": "bytes_received",
    "istio.access.bytes.sent": "bytes_sent",
    "istio.access.duration": "duration",
    "istio.access.response.flags": "response_flags",
    "istio.access.response.code_details": "response_code_details",
    "istio.access.route_name": "route_name",
    "istio.access.upstream.cluster": "upstream_cluster",
    "istio.access.downstream.local_address": "downstream_local_address",
    "istio.access.downstream.remote_address": "downstream_remote_address",
}


@pytest.mark.parametrize("name", ["test-access-failed.log", "test-access-json-logs.log"])
def test_istio_values_match_elastic(name: str) -> None:
    expected = json.loads((ISTIO / f"{name}-expected.json").read_text())["expected"]
    rows = parse_file(ISTIO / name).requests.to_dicts()
    assert len(rows) == len(expected)
    checked = 0
    for ours, theirs in zip(rows, expected, strict=True):
        stamp = dt.datetime.fromisoformat(theirs["@timestamp"])
        assert ours["start_time"] == stamp
        for path, column in ISTIO_FIELDS.items():
            value = _dig(theirs, path)
            if value is None or value == "-":  # Elastic drops unset fields; we hold null
                continue
            assert ours[column] == value, (path, column)
            checked += 1
    assert checked >= 12 * len(rows)


def test_envoy_default_values_match_filebeat() -> None:
    expected = json.loads((PEER_DATA / "elastic-beats" / "envoy.log-expected.json").read_text())
    rows = parse_file(PEER_DATA / "elastic-beats" / "envoy.log").requests.to_dicts()
    for ours, theirs in zip(rows, expected, strict=True):
        assert ours["start_time"] == dt.datetime.fromisoformat(theirs["@timestamp"])
        assert ours["duration"] * 1_000_000 == theirs["event.duration"]
        if "destination.bytes" in theirs:  # TCP: destination.bytes is what Envoy received
            assert ours["bytes_received"] == theirs["destination.bytes"]
        if "http.request.body.bytes" in theirs:  # MANIFEST: Filebeat swaps sent/received for HTTP
            assert ours["bytes_sent"] == theirs["http.request.body.bytes"]
        if "http.response.status_code" in theirs:
            assert ours["response_code"] == theirs["http.response.status_code"]


def test_kubectl_timestamps_kept_as_captured_at() -> None:
    log = parse_file(PEER_DATA / "istio-istio" / "istio-issue29109-kubectl-ts.log")
    first = log.requests.row(0, named=True)
    assert first["captured_at"] == dt.datetime(2020, 11, 22, 20, 4, 54, 223002, tzinfo=dt.UTC)
    assert (first["response_code"], first["duration"], first["upstream_service_time"]) == (500, 11939, 11933)
    assert first["dynamic_metadata_istio_mixer_status"] is None
    assert log.format is not None and log.format.name == "istio-1.5"
