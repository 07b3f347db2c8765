"""Logs written by a real Envoy 1.40 (fixtures/envoy, made by fixtures/regenerate.py).

Expected values are what the traffic generator sent and configured, never meshlog's output.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from meshlog.formats.compiler import compile_format
from meshlog.parse import AccessLog, parse_lines
from meshlog.sources import read_lines
from tests.conftest import FIXTURES
from tests.roads import on_both_roads

ENVOY = FIXTURES / "envoy"
NAMES = sorted(p.name for p in ENVOY.iterdir() if (p / "access.log").exists())

# expected.jsonl key → column
COLUMNS = {
    "method": "method",
    "path": "path",
    "protocol": "protocol",
    "authority": "authority",
    "user_agent": "user_agent",
    "request_id": "request_id",
    "x_forwarded_for": "x_forwarded_for",
    "x_b3_traceid": "req_x_b3_traceid",
    "response_code": "response_code",
    "response_code_details": "response_code_details",
    "route_name": "route_name",
    "upstream_cluster": "upstream_cluster",
    "upstream_request_attempt_count": "upstream_request_attempt_count",
}


def load(name: str) -> tuple[AccessLog, list[dict[str, Any]]]:
    folder = ENVOY / name
    fmt = compile_format((folder / "format.txt").read_text(encoding="utf-8"), name=name)
    frames = list(read_lines(str(folder / "access.log")))
    log = on_both_roads(lambda: AccessLog.concat([parse_lines(f, fmt) for f in frames], fmt))
    expected = [json.loads(line) for line in (folder / "expected.jsonl").read_text().splitlines()]
    return log, expected


def test_all_four_fixtures_exist() -> None:
    assert NAMES == ["custom", "envoy", "istio", "istio-json"]


@pytest.mark.parametrize("name", NAMES)
def test_every_line_parses(name: str) -> None:
    log, expected = load(name)
    assert (log.counts.access, log.counts.unparsed, log.counts.other) == (len(expected), 0, 0)


@pytest.mark.parametrize("name", NAMES)
def test_values_are_what_was_sent(name: str) -> None:
    log, expected = load(name)
    checked = 0
    for got, want in zip(log.requests.to_dicts(), expected, strict=True):
        flags = sorted(got["response_flags"].split(",")) if got["response_flags"] else []
        assert flags == want["response_flags"], want["case"]
        for key, column in COLUMNS.items():
            if column not in got or key not in want:
                continue
            value = want[key]
            if column == "user_agent" and name == "custom" and value is not None:
                value = value[:10]  # %REQ(USER-AGENT):10%
            assert got[column] == value, (want["case"], column)
            checked += 1
        if want.get("tcp"):
            assert (got["response_code"], got.get("method")) == (0, None)
    assert checked >= 5 * len(expected)


def test_ipv6_clients_keep_their_brackets() -> None:
    log, expected = load("istio")
    ipv6 = [r for r, w in zip(log.requests.to_dicts(), expected, strict=True) if w["ipv6_client"]]
    assert ipv6 and all(r["downstream_local_address"].startswith("[::1]:") for r in ipv6)


def test_text_and_json_twins_give_the_same_frame() -> None:
    """One Envoy wrote the same requests through both loggers: the frames must agree column for column."""
    text, _ = load("istio")
    js, _ = load("istio-json")
    text_frame = text.requests.drop("source")
    assert_frame_equal(text_frame, js.requests.drop("source").select(text_frame.columns))
