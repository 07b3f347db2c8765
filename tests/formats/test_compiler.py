"""Column names and types: the schema users script against (architecture.md)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from meshlog.formats.compiler import compile_format
from meshlog.formats.meshconfig import load_mesh_config
from meshlog.formats.presets import PRESETS, resolve
from meshlog.parse.cast import dtype_of

ISTIO_COLUMNS = [
    "start_time", "method", "path", "protocol", "response_code", "response_flags", "response_code_details",
    "connection_termination_details", "upstream_transport_failure_reason", "bytes_received", "bytes_sent",
    "duration", "upstream_service_time", "x_forwarded_for", "user_agent", "request_id", "authority",
    "upstream_host", "upstream_cluster", "upstream_local_address", "downstream_local_address",
    "downstream_remote_address", "requested_server_name", "route_name",
]  # fmt: skip


def test_istio_text_columns_and_types() -> None:
    fmt = resolve("istio")
    assert fmt.columns == ISTIO_COLUMNS
    types = {f.column: dtype_of(f) for f in fmt.fields}
    assert types["start_time"] == pl.Datetime("us", "UTC")
    for col in ("response_code", "bytes_received", "bytes_sent", "duration", "upstream_service_time"):
        assert types[col] == pl.Int64, col
    assert types["response_flags"] == pl.String


def test_istio_json_and_text_give_the_same_schema() -> None:
    text, js = resolve("istio"), resolve("istio-json")
    assert sorted(text.columns) == sorted(js.columns)
    assert {f.column: dtype_of(f) for f in text.fields} == {f.column: dtype_of(f) for f in js.fields}


@pytest.mark.parametrize(
    ("command", "column"),
    [
        ("%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "upstream_request_attempt_count"),
        ("%REQUEST_DURATION%", "request_duration"),
        ("%REQ(X-B3-TRACEID)%", "req_x_b3_traceid"),
        ("%RESP(GRPC-STATUS)%", "resp_grpc_status"),
        ("%TRAILER(GRPC-STATUS)%", "trailer_grpc_status"),
        ("%DYNAMIC_METADATA(istio.mixer:status)%", "dynamic_metadata_istio_mixer_status"),
        ("%UPSTREAM_CLUSTER%", "upstream_cluster"),
        ("%UPSTREAM_CLUSTER_RAW%", "upstream_cluster"),
        ("%REQUEST_HEADER(:method)%", "method"),
        ("%START_TIME(%s.%3f)%", "start_time"),
        ("%REQ(USER-AGENT):10%", "user_agent"),
    ],
)
def test_column_names(command: str, column: str) -> None:
    assert compile_format(command).columns == [column]


def test_repeated_names_get_a_suffix() -> None:
    assert compile_format("%DURATION% %DURATION% %DURATION%").columns == ["duration", "duration_2", "duration_3"]


def test_truncated_value_is_text() -> None:
    (f,) = compile_format("%REQ(X-ENVOY-UPSTREAM-SERVICE-TIME):2%").fields
    assert dtype_of(f) == pl.String


def test_every_preset_compiles() -> None:
    for name, (fmt, _) in PRESETS.items():
        assert resolve(name).name == name
        assert compile_format(fmt).fields


@pytest.mark.parametrize(
    ("yaml_text", "encoding", "first_column"),
    [
        ("accessLogFile: /dev/stdout\naccessLogEncoding: JSON\n", "json", "start_time"),
        ("accessLogFile: /dev/stdout\n", "text", "start_time"),
        (
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
                "data:\n  mesh: |-\n    accessLogFile: /dev/stdout\n    accessLogFormat: '%DURATION% %RESPONSE_CODE%'\n"
            ),
            "text",
            "duration",
        ),
        (
            (
                "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  meshConfig:\n"
                "    accessLogEncoding: JSON\n"
                '    accessLogFormat: \'{"code": "%RESPONSE_CODE%", "who": "%REQ(USER-AGENT)%"}\'\n'
            ),
            "json",
            "code",
        ),
    ],
)
def test_mesh_config(tmp_path: Path, yaml_text: str, encoding: str, first_column: str) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml_text)
    fmt = load_mesh_config(path)
    assert fmt.encoding == encoding
    assert fmt.columns[0] == first_column


def test_json_map_types_by_operator_and_mixed_values_are_text() -> None:
    fmt = compile_format(json.dumps({"code": "%RESPONSE_CODE%", "both": "%RESPONSE_CODE%/%RESPONSE_FLAGS%", "n": 3}))
    assert [(f.column, f.kind.value) for f in fmt.fields] == [("code", "integer"), ("both", "string"), ("n", "string")]
