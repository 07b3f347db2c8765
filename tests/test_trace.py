"""``trace`` over a client and a server sidecar log written by two chained real Envoys (fixtures/chain)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from meshlog.cli import app
from meshlog.formats.presets import resolve
from meshlog.parse import AccessLog, parse_lines
from meshlog.reports.trace import trace
from meshlog.sources import read_lines
from tests.conftest import FIXTURES

CHAIN = FIXTURES / "chain"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CHAIN / "expected.json").read_text())


def load() -> AccessLog:
    fmt = resolve("istio")
    frames = [
        f for name in ("server.log", "client.log") for f in read_lines(str(CHAIN / name))
    ]  # server first on purpose
    return AccessLog.concat([parse_lines(f, fmt) for f in frames], fmt)


@pytest.mark.parametrize("request_id", sorted(EXPECTED))
def test_hops_are_the_client_line_then_each_server_attempt(request_id: str) -> None:
    want = EXPECTED[request_id]
    hops = trace(load().requests, request_id).to_dicts()
    assert len(hops) == want["client_lines"] + want["server_lines"]
    client, server = hops[0], hops[1:]
    assert client["source"].endswith("client.log")
    assert all(h["source"].endswith("server.log") for h in server)
    flags = sorted((client["response_flags"] or "").split(",") if client["response_flags"] else [])
    assert (client["response_code"], flags) == (want["client"]["response_code"], want["client"]["response_flags"])
    for got, exp in zip(server, want["server"], strict=True):
        flags = sorted(got["response_flags"].split(",")) if got["response_flags"] else []
        assert (got["response_code"], flags) == (exp["response_code"], exp["response_flags"])
        assert got["duration"] >= exp["min_duration_ms"]
    assert client["duration"] >= want["client"]["min_duration_ms"]
    assert client["duration"] >= sum(h["duration"] for h in server) - 1  # the caller's hop spans the callee's
    assert [h["offset_ms"] for h in hops] == sorted(h["offset_ms"] for h in hops)


def test_trace_json_contract() -> None:
    retry = next(k for k, v in EXPECTED.items() if v["case"] == "retry-503")
    result = CliRunner().invoke(
        app, ["trace", retry, str(CHAIN / "client.log"), str(CHAIN / "server.log"), "-f", "istio", "-o", "json"]
    )
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["request_id"] == retry
    keys = {
        "source",
        "line_no",
        "pod",
        "start_time",
        "duration",
        "response_code",
        "response_flags",
        "upstream_cluster",
        "upstream_host",
    }
    assert all(keys <= set(h) for h in out["hops"])
    assert [h["response_code"] for h in out["hops"]] == [503, 503, 503, 503]
    assert out["hops"][0]["response_flags"] == "URX"
    assert [h["upstream_cluster"] for h in out["hops"]][:2] == [
        EXPECTED[retry]["client"]["upstream_cluster"],
        "inbound|9080||",
    ]


def test_unknown_request_id_says_so() -> None:
    result = CliRunner().invoke(app, ["trace", "no-such-id", str(CHAIN / "client.log"), "-f", "istio"])
    assert result.exit_code == 1
    assert "no line carries request id no-such-id" in result.stderr and result.stdout == ""
