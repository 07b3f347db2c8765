"""ztunnel records reach meshlog through collectors too: a fluent-bit record or a docker json-file
line around each, unwrapped as Envoy lines are, with the pod the collector named."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.ambient.expect import TEXT, ZTUNNEL, parse_file

ACCESS = [line for line in TEXT.read_text(encoding="utf-8").splitlines() if "\taccess\t" in line]


def _fluentbit(line: str, i: int) -> str:
    """fluent-bit's json_lines output with the kubernetes filter (input-streams.md §4)."""
    record = {"date": 1719556809.5 + i, "time": "2024-06-28T06:40:09.5Z", "stream": "stdout", "_p": "F",
              "log": line, "kubernetes": {"pod_name": "ztunnel-x7k2p", "namespace_name": "istio-system",
                                          "container_name": "istio-proxy"}}  # fmt: skip
    return json.dumps(record)


def _docker(line: str, i: int) -> str:
    """docker json-file: the line with its newline under ``log``."""
    return json.dumps({"log": line + "\n", "stream": "stdout", "time": f"2024-06-28T06:40:{i:02d}.5Z"})


@pytest.mark.parametrize("wrap", [_fluentbit, _docker], ids=["fluentbit", "docker"])
def test_wrapped_ztunnel_records_are_connections(tmp_path: Path, wrap: Callable[[str, int], str]) -> None:
    path = tmp_path / "ztunnel.log"
    path.write_text("".join(wrap(line, i) + "\n" for i, line in enumerate(ACCESS)), encoding="utf-8")
    log = parse_file(path)
    c = log.counts
    assert (c.total, c.access, c.unparsed, c.other) == (len(ACCESS), len(ZTUNNEL), 0, 0)
    assert log.connections["src_addr"].to_list() == [r["fields"]["src.addr"] for r in ZTUNNEL]
    assert log.connections["error"].to_list() == [r["fields"].get("error") for r in ZTUNNEL]
    if wrap is _fluentbit:
        assert set(log.connections["pod"]) == {"ztunnel-x7k2p"}
        assert set(log.connections["namespace"]) == {"istio-system"}
