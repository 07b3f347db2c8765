"""Parsing lines into frames: values, nulls, reasons and line accounting, on hand-written lines."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from meshlog.formats.compiler import compile_format
from meshlog.formats.presets import ISTIO_JSON, resolve
from meshlog.parse import parse_lines
from meshlog.parse.detect import detect
from tests.conftest import parse_text, row

ISTIO = resolve("istio")
UTC = dt.UTC

OK = (
    '[2026-11-25T20:31:22.878Z] "GET /ok HTTP/1.1" 200 - via_upstream - "-" 0 6 2 1 "-" "curl/8.1" '
    '"ec6000d1-3b1c-47db-bb2d-3b82925a9849" "backend:8080" "10.0.0.5:8080" '
    "outbound|8080|v1|backend.default.svc.cluster.local 10.0.0.9:53460 10.96.0.1:8080 10.0.0.9:48126 - default"
)
UF = (
    '[2026-11-25T20:31:24.777Z] "GET /down HTTP/1.1" 503 URX,UF '
    "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused} - "
    '"delayed_connect_error:_Connection_refused" 0 121 13 - "1.2.3.4, 5.6.7.8" "curl/8.1" "id-2" "down:9999" '
    '"[2a02:cf40::7]:3000" outbound|9999||down.default.svc.cluster.local; '
    "- 10.96.0.2:9999 [2a02:cf40::9]:40000 - default"
)
QUOTED_UA = OK.replace('"curl/8.1"', '"meshlog-case/quote-ua "quoted" back\\slash"')
TCP = (
    '[2026-11-25T20:31:40.364Z] "- - -" 0 - - - "-" 50 143 2 - "-" "-" "-" "-" "127.0.0.1:18080" '
    "outbound|8080||backend.default.svc.cluster.local 127.0.0.1:47728 127.0.0.1:10001 127.0.0.1:40170 - -"
)
DPE = (
    '[2026-11-25T20:31:38.760Z] "- - HTTP/1.1" 400 DPE http1.codec_error - "-" 0 11 0 - "-" "-" "-" "-" "-" '
    "- - 127.0.0.1:10000 127.0.0.1:51402 - -"
)


def test_istio_line_values() -> None:
    log = parse_text([OK, UF], ISTIO)
    assert log.counts.access == 2
    ok, uf = row(log, 0), row(log, 1)
    assert ok["start_time"] == dt.datetime(2026, 11, 25, 20, 31, 22, 878000, tzinfo=UTC)
    assert (ok["method"], ok["path"], ok["protocol"], ok["response_code"]) == ("GET", "/ok", "HTTP/1.1", 200)
    assert (ok["response_flags"], ok["x_forwarded_for"], ok["requested_server_name"]) == (None, None, None)
    assert (ok["bytes_sent"], ok["duration"], ok["upstream_service_time"]) == (6, 2, 1)
    assert (ok["cluster_direction"], ok["cluster_port"], ok["cluster_subset"], ok["cluster_service"]) == (
        "outbound", 8080, "v1", "backend.default.svc.cluster.local",
    )  # fmt: skip
    assert uf["response_flags"] == "URX,UF"
    assert uf["response_code_details"].endswith("{remote_connection_failure|delayed_connect_error:_Connection_refused}")
    assert uf["x_forwarded_for"] == "1.2.3.4, 5.6.7.8"
    assert uf["upstream_host"] == "[2a02:cf40::7]:3000"
    assert uf["downstream_remote_address"] == "[2a02:cf40::9]:40000"
    assert uf["upstream_cluster"] == "outbound|9999||down.default.svc.cluster.local"  # ';' of alt_stat_name dropped
    assert (uf["upstream_service_time"], uf["upstream_local_address"], uf["cluster_subset"]) == (None, None, None)
    assert (uf["line_no"], uf["source"]) == (2, "test")


def test_quotes_inside_a_quoted_field_are_kept() -> None:
    """Envoy escapes nothing in text mode: the regex path must still find the field ends."""
    log = parse_text([QUOTED_UA], ISTIO)
    assert row(log)["user_agent"] == 'meshlog-case/quote-ua "quoted" back\\slash'
    assert row(log)["request_id"] == "ec6000d1-3b1c-47db-bb2d-3b82925a9849"


def test_tcp_and_dpe_lines() -> None:
    log = parse_text([TCP, DPE], ISTIO)
    tcp, dpe = row(log, 0), row(log, 1)
    assert (tcp["method"], tcp["path"], tcp["protocol"], tcp["response_code"]) == (None, None, None, 0)
    assert (tcp["bytes_received"], tcp["bytes_sent"], tcp["response_code_details"]) == (50, 143, None)
    assert (dpe["method"], dpe["protocol"], dpe["response_code"], dpe["response_flags"]) == (
        None,
        "HTTP/1.1",
        400,
        "DPE",
    )


def test_no_dash_survives_as_a_value() -> None:
    log = parse_text([OK, UF, TCP, DPE], ISTIO)
    strings = [c for c, t in log.requests.schema.items() if t == pl.String]
    assert log.requests.select(pl.any_horizontal(pl.col(strings) == "-").any()).item() is False


def test_split_plan_and_regex_agree() -> None:
    lines = [OK, UF, QUOTED_UA, TCP, DPE]
    assert_frame_equal(parse_text(lines, ISTIO).requests, parse_text(lines, ISTIO, use_plan=False).requests)


def test_line_accounting_and_reasons() -> None:
    lines = [
        OK,
        OK.replace(" 200 ", " 2x0 "),
        "",
        "2024-06-28T06:40:09.967215Z\tinfo\tEnvoy proxy is ready",
        "2024-06-28T06:40:08.205464Z\twarning\tenvoy main external/envoy/source/server/server.cc:835\tUsage\tthread=14",
        OK[:60],
        "iptables v1.8 banner",
    ]
    log = parse_text(lines, ISTIO)
    c = log.counts
    assert (c.total, c.access, c.unparsed, c.other) == (7, 1, 2, 4)
    assert log.unparsed["line_no"].to_list() == [2, 6]
    reasons = log.unparsed["reason"].to_list()
    assert reasons[0] == 'field response_code: expected an integer, got "2x0"'
    assert reasons[1] == (
        'no match at column 53: expected response_code_details (string, %RESPONSE_CODE_DETAILS%), got "via_upst"'
    )
    assert log.other.select("line_no", "kind").rows() == [
        (3, "blank"),
        (4, "istio-log"),
        (5, "envoy-log"),
        (7, "unrecognised"),
    ]


def test_custom_format_with_attempts_trace_and_epoch_time() -> None:
    fmt = compile_format(
        "%START_TIME(%s.%3f)% %UPSTREAM_REQUEST_ATTEMPT_COUNT% %REQ(X-B3-TRACEID)% "
        '%RESPONSE_CODE% "%REQ(USER-AGENT):10%"'
    )
    log = parse_text(['1795638578.707 3 80f198ee56343ba8 503 "Mozilla/5."'], fmt)
    r = row(log)
    assert r["start_time"] == dt.datetime(2026, 11, 25, 20, 29, 38, 707000, tzinfo=UTC)
    assert (r["upstream_request_attempt_count"], r["req_x_b3_traceid"], r["user_agent"]) == (
        3,
        "80f198ee56343ba8",
        "Mozilla/5.",
    )


def test_strftime_with_zone() -> None:
    fmt = compile_format("%START_TIME(%d/%b/%Y:%H:%M:%S %z)% %RESPONSE_CODE%")
    log = parse_text(["25/Nov/2026:21:29:38 +0100 200"], fmt)
    assert row(log)["start_time"] == dt.datetime(2026, 11, 25, 20, 29, 38, tzinfo=UTC)


def test_json_typed_and_untyped_give_the_same_rows() -> None:
    typed = {k: None for k in ISTIO_JSON} | {
        "start_time": "2026-11-25T20:31:24.777Z", "response_code": 503, "response_flags": "URX,UF",
        "duration": 13, "bytes_sent": 121, "bytes_received": 0, "upstream_service_time": "47", "method": "GET",
    }  # fmt: skip
    untyped = {k: "-" if v is None else str(v) for k, v in typed.items()}
    fmt = resolve("istio-json")
    a = parse_text([json.dumps(typed)], fmt).requests
    b = parse_text([json.dumps(dict(reversed(list(untyped.items()))))], fmt).requests
    assert_frame_equal(a, b)
    r = a.row(0, named=True)
    assert (r["response_code"], r["upstream_service_time"], r["path"], r["response_flags"]) == (503, 47, None, "URX,UF")


def test_json_bad_records_are_unparsed_with_the_decoder_message() -> None:
    fmt = resolve("istio-json")
    lines = [
        '{"response_code":200,"duration":1}',
        '{"response_code":20',
        '{"response_code":"abc"}',
        '{"level":"info","msg":"x"}',
    ]
    log = parse_text(lines, fmt)
    assert (log.counts.access, log.counts.unparsed, log.counts.other) == (1, 2, 1)
    assert log.unparsed.select("line_no", "reason").rows() == [
        (2, "invalid JSON at column 20: Expecting ',' delimiter"),
        (3, 'field response_code: expected an integer, got "abc"'),
    ]


def test_json_nested_values_are_kept_as_json_text() -> None:
    fmt = compile_format(json.dumps({"code": "%RESPONSE_CODE%", "meta": "%DYNAMIC_METADATA(istio)%"}))
    log = parse_text(['{"code":200,"meta":{"a":1}}'], fmt)
    assert row(log)["meta"] == '{"a":1}'


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("istio", OK),
        (
            "envoy",
            '[2019-04-08T16:16:55.931Z] "GET /service/1 HTTP/1.1" 200 - 0 89 5 4 "-" "curl/7.54.0" "c219" '
            '"localhost:8000" "172.27.0.3:80"',
        ),
        ("istio-json", json.dumps({k: None for k in ISTIO_JSON})),
    ],
)
def test_detect(name: str, line: str) -> None:
    assert detect([line] * 3).name == name


def test_omit_empty_values_text_leaves_empty_fields() -> None:
    """With omit_empty_values Envoy prints nothing for unset fields: doubled spaces, empty quotes."""
    line = (
        '[2026-11-25T20:31:24.464Z] "GET /nope HTTP/1.1" 404 NR route_not_found  "" 0 0 0  "" '
        '"meshlog-case/nr-404" "c15efd99-8b32-48f4-a616-eaf7fe619729" "127.0.0.1:10000" ""   '
        "127.0.0.1:10000 127.0.0.1:48174  "
    )
    r = row(parse_text([line], ISTIO))
    assert (r["response_code"], r["response_flags"], r["upstream_service_time"]) == (404, "NR", None)
    # text fields keep the "" Envoy wrote (it cannot be told from an empty header); numbers are null
    assert (r["connection_termination_details"], r["upstream_cluster"], r["route_name"]) == ("", "", "")
    assert (r["x_forwarded_for"], r["upstream_host"], r["bytes_received"]) == ("", "", 0)
    assert r["downstream_remote_address"] == "127.0.0.1:48174"


def test_one_broken_json_record_among_many_costs_only_itself() -> None:
    good = json.dumps({"response_code": 200, "duration": 1, "start_time": "2026-11-25T20:31:24.777Z"})
    lines = [good] * 70_000
    lines[41_234] = good[:-5]  # truncated record
    log = parse_text(lines, resolve("istio-json"))
    assert (log.counts.access, log.counts.unparsed) == (69_999, 1)
    try:
        json.loads(lines[41_234])
    except json.JSONDecodeError as exc:  # the decoder's own words for the same line
        reason = f"invalid JSON at column {exc.colno}: {exc.msg}"
    assert log.unparsed.select("line_no", "reason").row(0) == (41_235, reason)


@pytest.mark.parametrize("fmt_name", ["istio", "istio-json"])
def test_building_fewer_columns_changes_no_value_and_no_count(fmt_name: str) -> None:
    from meshlog.reports.state import STATE_COLUMNS as REPORT_COLUMNS
    from meshlog.sources import read_lines
    from tests.conftest import FIXTURES

    fmt = resolve(fmt_name)
    path = FIXTURES / "envoy" / fmt_name / "access.log"
    lines = [f for f in read_lines(str(path))]
    bad = lines[0].with_columns(pl.col("line").str.replace(r"(\" |:)200([ ,])", "${1}2x0${2}"))  # one unparsed line
    for frame in (lines[0], bad):
        full = parse_lines(frame, fmt)
        some = parse_lines(frame, fmt, columns=REPORT_COLUMNS)
        assert some.counts == full.counts
        assert_frame_equal(some.requests, full.requests.select(some.requests.columns))
        assert "user_agent" not in some.requests.columns and "bytes_sent" in some.requests.columns
    assert parse_lines(bad, fmt).counts.unparsed >= 1
