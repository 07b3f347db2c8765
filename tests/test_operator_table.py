"""Every operator in meshlog's table, in one format, through a real Envoy 1.40: accepted, typed, parsed.

Envoy rejects an unknown operator or a wrong argument shape at config load, so this also
proves the table lists only operators Envoy 1.40 knows, with argument shapes it accepts.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from meshlog.formats.compiler import compile_format, compile_json_format
from meshlog.formats.operators import OPERATORS, Args, Kind, column_name
from meshlog.parse import AccessLog, parse_lines
from meshlog.sources import read_lines
from tests.lab.envoy import RequestSpec, run_formats

LAB = True  # every test here runs a real Envoy (the `lab` marker, tests/conftest.py)

# An argument Envoy accepts for each operator that needs one.
ARGS = {
    "REQ": "X-MESHLOG", "REQUEST_HEADER": "X-MESHLOG", "STREAM_INFO_REQ": "X-MESHLOG",
    "RESP": "CONTENT-TYPE", "RESPONSE_HEADER": "CONTENT-TYPE",
    "TRAILER": "GRPC-STATUS", "RESPONSE_TRAILER": "GRPC-STATUS",
    "ENVIRONMENT": "MESHLOG_NOT_SET", "QUERY_PARAM": "q", "CEL": "request.path", "TYPED_CEL": "response.code",
    "COALESCE": '{"operators":["REQUESTED_SERVER_NAME",{"command":"REQ","param":":authority"}]}',
    "DYNAMIC_METADATA": "envoy.lb", "METADATA": "ROUTE:meshlog", "FILTER_STATE": "meshlog",
    "UPSTREAM_FILTER_STATE": "meshlog", "CLUSTER_METADATA": "meshlog:x", "UPSTREAM_METADATA": "meshlog:x",
    "COMMON_DURATION": "DS_RX_BEG:DS_TX_END:ms",
}  # fmt: skip
EXTENSIONS = {"REQ_WITHOUT_QUERY"}  # needs envoy.formatter.req_without_query, which Istio adds itself
NAMES = [n for n in OPERATORS if n not in EXTENSIONS]
DIFFER_PER_LOGGER = {"emit_time", "emit_time_local", "unique_id"}  # evaluated again by each logger


def command(name: str) -> str:
    needs_arg = OPERATORS[name].args in (Args.REQUIRED, Args.REQUIRED_LEN)
    return f"%{name}({ARGS[name]})%" if needs_arg else f"%{name}%"


def columns() -> list[str]:
    return [
        column_name(n, ARGS.get(n) if OPERATORS[n].args in (Args.REQUIRED, Args.REQUIRED_LEN) else None) for n in NAMES
    ]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, AccessLog]:
    text = "\x1f".join(command(n) for n in NAMES) + "\n"
    json_map = dict(zip(compile_format(text).columns, (command(n) for n in NAMES), strict=True))
    written = run_formats(
        {"text": text}, {"json": json_map}, [RequestSpec(path="/ok?q=1", headers=(("x-meshlog", "hello"),))]
    )
    out: dict[str, AccessLog] = {}
    for name, fmt in (("text", compile_format(text)), ("json", compile_json_format(json_map))):
        path: Path = tmp_path_factory.mktemp("ops") / f"{name}.log"
        path.write_bytes(written[name])
        out[name] = AccessLog.concat([parse_lines(f, fmt) for f in read_lines(str(path))], fmt)
    return out


@pytest.mark.parametrize("encoding", ["text", "json"])
def test_every_operator_parses_with_its_type(logs: dict[str, AccessLog], encoding: str) -> None:
    log = logs[encoding]
    assert (log.counts.access, log.counts.unparsed, log.counts.other) == (1, 0, 0), log.unparsed.to_dicts()
    assert len(NAMES) >= 160
    row: dict[str, Any] = log.requests.row(0, named=True)
    assert (row["response_code"], row["bytes_sent"], row["req_x_meshlog"], row["query_param_q"]) == (
        200,
        3,
        "hello",
        "1",
    )
    assert (row["path"], row["query_params"], row["resp_content_type"]) == ("/ok?q=1", "q=1", "text/plain")
    assert (row["response_flags"], row["upstream_cluster"], row["upstream_request_attempt_count"]) == (
        None, "outbound|8080||backend.default.svc.cluster.local", 1,
    )  # fmt: skip
    assert row["environment_meshlog_not_set"] is None
    now = dt.datetime.now(dt.UTC)
    assert abs((now - row["start_time"]).total_seconds()) < 120
    for name, col in zip(NAMES, columns(), strict=True):
        if OPERATORS[name].kind.numeric and row[col] is not None:
            assert isinstance(row[col], int), name
        if OPERATORS[name].kind is Kind.TIMESTAMP and row[col] is not None:
            assert isinstance(row[col], dt.datetime), name


def test_text_and_json_agree_on_every_operator(logs: dict[str, AccessLog]) -> None:
    keep = [c for c in logs["text"].requests.columns if c not in DIFFER_PER_LOGGER | {"source"}]
    assert_frame_equal(logs["text"].requests.select(keep), logs["json"].requests.select(keep))
