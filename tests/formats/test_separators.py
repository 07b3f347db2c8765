"""Separators that stand inside values: a field's kind decides where it ends (wild-inputs issue, item 5).

The lines are what Envoy prints for these formats with the values written beside them (Istio
cluster names hold ``|``; addresses are ``ip:port``, ``[v6]:port``, a path or ``envoy://…``).
"""

from __future__ import annotations

import pytest

from meshlog.formats.compiler import compile_format
from tests.conftest import parse_text

PIPES = "%START_TIME%|%UPSTREAM_HOST%|%UPSTREAM_CLUSTER%|%RESPONSE_CODE%|%REQ(:PATH)%|%DOWNSTREAM_REMOTE_ADDRESS%\n"
CLUSTER = "outbound|9080||reviews.default.svc.cluster.local"


def test_an_istio_cluster_inside_a_pipe_separated_format_is_read_by_kind() -> None:
    fmt = compile_format(PIPES)
    sent = [
        ("127.0.0.1:19080", CLUSTER, 200, "/reviews/0", "10.1.2.3:41000"),
        ("[fd00::7]:9080", "inbound|9080||", 503, "/a|b", "[::1]:5050"),  # the path holds the separator too
        ("envoy://connect_originate/10.0.0.1:8080", "inbound-vip|8000|http|svc.ns.svc.cluster.local", 0, "-", "-"),
        ("-", "-", 404, "/nope", "127.0.0.1:1"),
    ]
    lines = [f"2026-11-25T21:24:24.{i:03d}Z|{h}|{c}|{code}|{p}|{d}" for i, (h, c, code, p, d) in enumerate(sent)]
    log = parse_text(lines, fmt)
    assert log.unparsed.height == 0, log.unparsed["reason"].to_list()
    got = log.requests.select("upstream_host", "upstream_cluster", "response_code", "path", "downstream_remote_address")
    want = [tuple(None if v == "-" else v for v in row) for row in sent]
    assert got.rows() == want


def test_two_readings_that_both_fit_make_the_line_unparsed_with_the_reason() -> None:
    fmt = compile_format("%REQ(USER-AGENT)%|%REQ(X-REQUEST-ID)%|%RESPONSE_CODE%\n")
    log = parse_text(["curl|x|abc|200", "curl/8.5|0f3c|200"], fmt)
    assert log.requests.select("user_agent", "request_id", "response_code").rows() == [("curl/8.5", "0f3c", 200)]
    assert log.unparsed["line_no"].to_list() == [1]
    assert log.unparsed["reason"].to_list() == [
        'ambiguous: the line fits the format two ways (user_agent "curl" or "curl|x");'
        " a separator stands inside a value"
    ]


def test_an_address_outside_the_shapes_is_still_read() -> None:
    """A shape is tried first; text Envoy prints in odd cases (a host name) is still a value."""
    fmt = compile_format("%START_TIME% %UPSTREAM_HOST% %RESPONSE_CODE%\n")
    log = parse_text(["2026-11-25T21:24:24.000Z reviews:9080 200", "2026-11-25T21:24:24.000Z @abstract 200"], fmt)
    assert log.requests["upstream_host"].to_list() == ["reviews:9080", "@abstract"]


def test_few_lines_read_with_python_re_equal_polars_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lines the plan refuses are read with Python's re when few, with polars when many: same fields."""
    from meshlog.parse import text

    fmt = compile_format(PIPES)
    lines = [
        f"2026-11-25T21:24:24.{i:03d}Z|127.0.0.1:{9000 + i}|{CLUSTER}|{200 + i}|/p/{i}|a|[::1]:{i + 1}"
        for i in range(50)
    ]
    lines += ["2026-11-25T21:24:24.000Z|weird host|x|y|z|w", "curl|x|abc|200"]
    few = parse_text(lines, fmt)
    monkeypatch.setattr(text, "FEW", -1)
    many = parse_text(lines, fmt)
    assert few.requests.equals(many.requests)
    assert few.unparsed.equals(many.unparsed)
    assert few.requests.height == 50 and few.requests["path"][0] == "/p/0|a"
