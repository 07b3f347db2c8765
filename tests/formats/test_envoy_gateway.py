"""Envoy Gateway's default access-log formats: presets, detection, and logs a real Envoy 1.40 wrote.

Fixtures: ``fixtures/envoy/envoy-gateway/<preset>/`` (made by ``fixtures/regenerate.py``, the same
traffic as the other fixture folders). Expected values are what the generator sent and configured
(``expected.jsonl``); ``start_time`` and ``duration`` are not deterministic, so they are checked
against the JSON logger's own bytes (read with ``json``) and against what the lab configured.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from meshlog.cli import app
from meshlog.errors import DetectionError
from meshlog.formats.compiler import CompiledFormat, compile_format
from meshlog.formats.presets import ENVOY_GATEWAY, ENVOY_GATEWAY_JSON, PRESETS, resolve
from meshlog.parse import AccessLog, parse_lines
from meshlog.parse.cast import dtype_of
from meshlog.parse.detect import detect
from meshlog.sources import read_lines
from tests.conftest import FIXTURES, parse_text

ENVOY = FIXTURES / "envoy"
GATEWAY = ENVOY / "envoy-gateway"
PAIR = ("envoy-gateway", "envoy-gateway-json")
runner = CliRunner()

# expected.jsonl key → column (Istio's names: architecture rule 1)
SENT = {
    "method": "method",
    "path": "path",
    "protocol": "protocol",
    "authority": "authority",
    "user_agent": "user_agent",
    "request_id": "request_id",
    "x_forwarded_for": "x_forwarded_for",
    "response_code": "response_code",
    "response_code_details": "response_code_details",
    "route_name": "route_name",
    "upstream_cluster": "upstream_cluster",
}


def lines_of(folder: Path) -> list[str]:
    return (folder / "access.log").read_text(encoding="utf-8").splitlines()


def parse_folder(folder: Path, fmt: CompiledFormat) -> AccessLog:
    frames = list(read_lines(str(folder / "access.log")))
    return AccessLog.concat([parse_lines(f, fmt) for f in frames], fmt)


def expected(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (GATEWAY / name / "expected.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------- the presets


def test_both_presets_are_listed_by_meshlog_formats() -> None:
    result = runner.invoke(app, ["formats"])
    assert result.exit_code == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"envoy-gateway", "envoy-gateway-json"} <= set(listed)
    assert list(PRESETS)[-2:] == ["envoy-gateway", "envoy-gateway-json"]  # after every Istio/Envoy preset


def test_the_fixtures_hold_envoy_gateways_exact_strings() -> None:
    assert (GATEWAY / "envoy-gateway" / "format.txt").read_text() == ENVOY_GATEWAY
    assert json.loads((GATEWAY / "envoy-gateway-json" / "format.txt").read_text()) == ENVOY_GATEWAY_JSON


def test_the_text_default_is_the_json_map_written_as_text() -> None:
    """Envoy Gateway's text default has the JSON map's keys and operators, in order, every value quoted."""
    rendered = "{" + ",".join(f'"{k}":"{v}"' for k, v in ENVOY_GATEWAY_JSON.items()) + "}\n"
    assert rendered == ENVOY_GATEWAY
    assert len(ENVOY_GATEWAY_JSON) == 24


def test_text_preset_compiles_as_text_although_it_reads_as_json() -> None:
    text = resolve("envoy-gateway")
    assert (text.encoding, text.name) == ("text", "envoy-gateway")
    result = runner.invoke(app, ["formats", "--show", "envoy-gateway"])
    assert result.exit_code == 0, result.stderr
    assert "encoding: text" in result.stdout and "regex: ^" in result.stdout


def test_json_preset_reads_envoy_gateways_keys_into_istios_columns() -> None:
    js = resolve("envoy-gateway-json")
    assert (js.encoding, js.name) == ("json", "envoy-gateway-json")
    assert js.json_keys == tuple(ENVOY_GATEWAY_JSON)
    column = dict(zip(js.json_keys, js.columns, strict=True))
    assert {k: column[k] for k in (":authority", "x-request-id", "x-envoy-origin-path", "user-agent")} == {
        ":authority": "authority",
        "x-request-id": "request_id",
        "x-envoy-origin-path": "path",
        "user-agent": "user_agent",
    }
    assert (column["x-forwarded-for"], column["x-envoy-upstream-service-time"]) == (
        "x_forwarded_for",
        "upstream_service_time",
    )
    result = runner.invoke(app, ["formats", "--show", "envoy-gateway-json"])
    assert result.exit_code == 0, result.stderr
    assert "encoding: json" in result.stdout and "%REQ(:AUTHORITY)%" in result.stdout


def test_text_json_and_istio_give_one_schema() -> None:
    text, js, istio = resolve("envoy-gateway"), resolve("envoy-gateway-json"), resolve("istio")
    assert text.columns == js.columns
    assert sorted(text.columns) == sorted(istio.columns)
    types = {f.column: dtype_of(f) for f in istio.fields}
    assert {f.column: dtype_of(f) for f in text.fields} == types
    assert {f.column: dtype_of(f) for f in js.fields} == types


def test_istio_json_preset_is_unchanged() -> None:
    """The JSON presets now name columns by operator: for Istio's map that is its keys, as before."""
    fmt = resolve("istio-json")
    assert fmt == compile_format(PRESETS["istio-json"][0], name="istio-json")
    assert fmt.columns == list(fmt.json_keys)


def test_a_users_json_map_keeps_its_keys() -> None:
    """Rule 3 still holds for a map the user gives: only the preset renames."""
    fmt = compile_format(json.dumps(ENVOY_GATEWAY_JSON))
    assert fmt.name is None and ":authority" in fmt.columns and "authority" not in fmt.columns


# ---------------------------------------------------------------------------- real Envoy's logs


def test_both_fixtures_exist_and_match_the_other_folders() -> None:
    assert sorted(p.name for p in GATEWAY.iterdir() if (p / "access.log").exists()) == list(PAIR)
    twin = (ENVOY / "istio" / "expected.jsonl").read_bytes()
    for name in PAIR:
        assert (GATEWAY / name / "expected.jsonl").read_bytes() == twin  # line i is the same request


@pytest.mark.parametrize("name", PAIR)
def test_every_line_parses(name: str) -> None:
    log = parse_folder(GATEWAY / name, resolve(name))
    assert (log.counts.access, log.counts.unparsed, log.counts.other) == (len(expected(name)), 0, 0)


@pytest.mark.parametrize("name", PAIR)
def test_detection_picks_the_preset(name: str) -> None:
    lines = lines_of(GATEWAY / name)
    fmt = detect(lines)
    assert fmt == resolve(name)
    for start in range(len(lines)):  # any start of the stream (a tail of the log) is told apart too
        assert detect(lines[start:]).name == name, start
    log = parse_text(lines, fmt)
    assert (log.counts.access, log.counts.unparsed) == (len(lines), 0)


def test_text_lines_are_not_all_json() -> None:
    """Envoy Gateway's text default does not escape: a quote in a header leaves the line no JSON."""
    broken = []
    for line in lines_of(GATEWAY / "envoy-gateway"):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            broken.append(line)
    assert len(broken) == 1 and '"quoted" back\\slash' in broken[0]


@pytest.mark.parametrize("name", PAIR)
def test_values_are_what_was_sent(name: str) -> None:
    log = parse_folder(GATEWAY / name, resolve(name))
    rows = log.requests.to_dicts()
    for got, want in zip(rows, expected(name), strict=True):
        for key, column in SENT.items():
            assert got[column] == want[key], (want["case"], column)
        flags = sorted(got["response_flags"].split(",")) if got["response_flags"] else []
        assert flags == want["response_flags"], want["case"]


@pytest.mark.parametrize("name", PAIR)
def test_start_time_and_duration_are_what_envoy_wrote(name: str) -> None:
    """What Envoy wrote to its JSON logger (read with ``json``), and what the lab configured."""
    raw = [json.loads(line) for line in lines_of(GATEWAY / "envoy-gateway-json")]
    rows = parse_folder(GATEWAY / name, resolve(name)).requests.to_dicts()
    for got, envoy, want in zip(rows, raw, expected(name), strict=True):
        assert got["start_time"] == datetime.fromisoformat(envoy["start_time"]), want["case"]
        assert got["start_time"].utcoffset().total_seconds() == 0
        assert got["duration"] == envoy["duration"] and got["duration"] >= 0, want["case"]
        if want["case"] == "ut-504":  # the route's timeout is 0.25 s
            assert got["duration"] >= 250


def test_text_and_json_twins_give_the_same_frame() -> None:
    """One Envoy wrote the same requests through both loggers: the frames agree column for column."""
    text = parse_folder(GATEWAY / "envoy-gateway", resolve("envoy-gateway")).requests.drop("source")
    js = parse_folder(GATEWAY / "envoy-gateway-json", resolve("envoy-gateway-json")).requests.drop("source")
    assert text.columns == js.columns
    assert_frame_equal(text, js)


def test_the_frame_is_istios_frame() -> None:
    """Same schema as Istio's fixture; the same values where the run does not change them."""
    eg = parse_folder(GATEWAY / "envoy-gateway-json", resolve("envoy-gateway-json")).requests
    istio = parse_folder(ENVOY / "istio", resolve("istio")).requests
    assert eg.schema == istio.select(eg.columns).schema
    assert sorted(eg.columns) == sorted(istio.columns)
    stable = [*SENT.values(), "response_flags", "cluster_direction", "cluster_port", "cluster_service"]
    assert_frame_equal(eg.select(stable), istio.select(stable))


# ---------------------------------------------------------------------------- detection around them


@pytest.mark.parametrize(("folder", "name"), [("istio", "istio"), ("istio-json", "istio-json"), ("envoy", "envoy")])
def test_detection_of_the_other_fixtures_is_unchanged(folder: str, name: str) -> None:
    lines = lines_of(ENVOY / folder)
    assert detect(lines).name == name
    if name == "istio-json":
        assert detect(lines) == resolve("istio-json")


def test_custom_fixture_is_still_undetected() -> None:
    with pytest.raises(DetectionError):
        detect(lines_of(ENVOY / "custom"))


def test_extra_keys_ride_along_and_never_take_a_presets_column() -> None:
    """Keys a deployment adds to Envoy Gateway's map are text columns named by their key; one that is
    already a column name (here ``path``) keeps it, and Envoy Gateway's key then keeps its own name."""
    records = [json.loads(line) for line in lines_of(GATEWAY / "envoy-gateway-json")]
    lines = [json.dumps({**r, "tenant": "blue", "path": "/custom"}) for r in records]
    fmt = detect(lines)
    assert fmt.name == "envoy-gateway-json"
    log = parse_text(lines, fmt)
    assert log.counts.unparsed == 0
    got = log.requests.row(0, named=True)
    assert (got["tenant"], got["path"], got["x-envoy-origin-path"], got["authority"]) == (
        "blue",
        "/custom",
        "/ok",
        "backend.default.svc.cluster.local:8080",
    )


def test_json_records_go_to_the_preset_naming_most_of_their_keys() -> None:
    istio_like = {"start_time": None, "method": "GET", "path": "/a", "authority": "x", "request_id": "r"}
    eg_like = {"start_time": None, "method": "GET", "x-envoy-origin-path": "/a", ":authority": "x", "x-request-id": "r"}
    assert detect([json.dumps(istio_like)] * 3).name == "istio-json"
    assert detect([json.dumps(eg_like)] * 3).name == "envoy-gateway-json"
    both = {k: v for k, v in eg_like.items() if k in ("start_time", "method")} | {"response_code": 200}
    assert detect([json.dumps(both)] * 3).name == "istio-json"  # only shared keys: Istio's, as before


def test_parse_command_detects_envoy_gateway() -> None:
    for name in PAIR:
        result = runner.invoke(app, ["parse", str(GATEWAY / name / "access.log"), "-o", "ndjson"])
        assert result.exit_code == 0, result.stderr
        assert f"format: detected {name}" in result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["request_id"] for r in rows] == [e["request_id"] for e in expected(name)]
        assert pl.DataFrame(rows).height == len(expected(name))
