"""Property test: random format strings from the operator table, through a real Envoy, parsed back.

Hypothesis builds a format (text, and the same items as a JSON map), the test starts Envoy
with both loggers, sends requests with random header values, and checks that meshlog
reads back exactly what was sent (or, for values Envoy makes up, what Envoy must have
written: a 200, 3 bytes of body, a time within seconds of now, …).
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshlog.formats.compiler import compile_format, compile_json_format
from meshlog.parse import AccessLog, parse_lines
from meshlog.sources import read_lines
from tests.lab.envoy import DEFAULT_AUTHORITY, RequestSpec, run_formats
from tests.roads import on_both_roads

LAB = True  # every test here runs a real Envoy (the `lab` marker, tests/conftest.py)

Sent = dict[str, Any]  # what one request carried: header values (None = not sent), method, body


def logged(value: str | None) -> str | None:
    """How a sent header reads back: Envoy prints "-" for absent, so a value "-" reads as unset too."""
    return None if value in (None, "-") else value


@dataclass(frozen=True)
class Item:
    """One operator the generator may use: its text, its column and the value Envoy must log."""

    command: str
    column: str
    expect: Callable[[Sent], Any]  # exact value, or a predicate (callable) to hold
    quoted: bool = False  # may hold spaces: only ever placed between double quotes


def near_now(value: Any) -> bool:
    now = dt.datetime.now(dt.UTC)
    return isinstance(value, dt.datetime) and abs((now - value).total_seconds()) < 120


def small_int(value: Any) -> bool:
    return isinstance(value, int) and 0 <= value < 10_000


CLUSTER = "outbound|8080||backend.default.svc.cluster.local"
ITEMS = [
    Item("%REQ(X-MESHLOG-A)%", "req_x_meshlog_a", lambda s: logged(s["a"])),
    Item("%REQ(X-MESHLOG-B):5%", "req_x_meshlog_b", lambda s: logged(None if s["b"] is None else s["b"][:5])),
    Item(
        "%REQ(X-MESHLOG-A?X-MESHLOG-B)%",
        "req_x_meshlog_a_x_meshlog_b",
        lambda s: logged(s["b"] if s["a"] is None else s["a"]),
    ),
    Item("%REQ(USER-AGENT)%", "user_agent", lambda s: logged(s["ua"]), quoted=True),
    Item("%REQ(:METHOD)%", "method", lambda s: s["method"]),
    Item("%REQ(:PATH)%", "path", lambda s: s["path"]),
    Item("%PROTOCOL%", "protocol", lambda s: "HTTP/1.1"),
    Item("%RESPONSE_CODE%", "response_code", lambda s: 200),
    Item("%RESPONSE_FLAGS%", "response_flags", lambda s: None),
    Item("%BYTES_RECEIVED%", "bytes_received", lambda s: len(s["body"])),
    Item("%BYTES_SENT%", "bytes_sent", lambda s: len(s["body"]) if s["path"] == "/echo" else 3),
    Item("%DURATION%", "duration", lambda s: small_int),
    Item("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", "upstream_service_time", lambda s: small_int),
    Item("%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "upstream_request_attempt_count", lambda s: 1),
    Item("%UPSTREAM_CLUSTER%", "upstream_cluster", lambda s: CLUSTER),
    Item("%UPSTREAM_CLUSTER_RAW%", "upstream_cluster", lambda s: CLUSTER),
    Item("%ROUTE_NAME%", "route_name", lambda s: "default"),
    Item("%REQ(:AUTHORITY)%", "authority", lambda s: DEFAULT_AUTHORITY),
    Item("%DOWNSTREAM_REMOTE_ADDRESS%", "downstream_remote_address", lambda s: lambda v: v.startswith("127.0.0.1:")),
    Item("%START_TIME%", "start_time", lambda s: near_now),
    Item("%START_TIME(%s.%3f)%", "start_time", lambda s: near_now),
    Item("%START_TIME(%Y-%m-%dT%H:%M:%S.%6f)%", "start_time", lambda s: near_now),
    Item("%START_TIME(%d/%b/%Y:%H:%M:%S %z)%", "start_time", lambda s: near_now),
    Item("%START_TIME(%s)%", "start_time", lambda s: near_now),
]
SEPARATORS = [" ", " | ", "\t", ",", "=", " [", "] ", " :: ", ";"]
# Header values: no separator characters and no spaces (text mode escapes nothing, so a value
# holding a separator is ambiguous by nature); the quoted user agent may hold spaces.
VALUE = st.text(alphabet=string.ascii_letters + string.digits + "-._~/()!*'@", max_size=24)
UA = (
    st.text(alphabet=string.ascii_letters + string.digits + " -._/()", min_size=1, max_size=40)
    .map(str.strip)
    .filter(bool)
)


@st.composite
def formats(draw: st.DrawFn) -> list[Item]:
    return draw(st.lists(st.sampled_from(ITEMS), min_size=1, max_size=9))


@st.composite
def requests(draw: st.DrawFn) -> Sent:
    post = draw(st.booleans())
    return {
        "a": draw(st.none() | VALUE),
        "b": draw(st.none() | VALUE),
        "ua": draw(UA),
        "method": "POST" if post else "GET",
        "path": "/echo" if post else "/ok",
        "body": draw(st.binary(max_size=64)) if post else b"",
    }


def text_format(items: list[Item], seps: list[str]) -> str:
    parts = []
    for i, item in enumerate(items):
        parts.append(f'"{item.command}"' if item.quoted else item.command)
        parts.append(seps[i % len(seps)] if i < len(items) - 1 else "")
    return "".join(parts) + "\n"


def column_names(items: list[Item]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for item in items:
        seen[item.column] = seen.get(item.column, 0) + 1
        out.append(item.column if seen[item.column] == 1 else f"{item.column}_{seen[item.column]}")
    return out


def spec(sent: Sent) -> RequestSpec:
    headers = [("user-agent", sent["ua"])]
    headers += [(f"x-meshlog-{k}", sent[k]) for k in ("a", "b") if sent[k] is not None]
    return RequestSpec(method=sent["method"], path=sent["path"], headers=tuple(headers), body=sent["body"])


def parse_bytes(data: bytes, fmt: Any, tmp: Any, name: str) -> AccessLog:
    path = tmp / f"{name}.log"
    path.write_bytes(data)
    return on_both_roads(lambda: AccessLog.concat([parse_lines(f, fmt) for f in read_lines(str(path))], fmt))


def check(log: AccessLog, columns: list[str], items: list[Item], sent: list[Sent]) -> None:
    assert (log.counts.access, log.counts.unparsed, log.counts.other) == (len(sent), 0, 0), (
        log.counts,
        log.other.to_dicts(),
    )
    for got, what in zip(log.requests.to_dicts(), sent, strict=True):
        for column, item in zip(columns, items, strict=True):
            want = item.expect(what)
            if callable(want):
                assert want(got[column]), (item.command, got[column])
            else:
                assert got[column] == want, (item.command, got[column], want)


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    items=formats(),
    seps=st.lists(st.sampled_from(SEPARATORS), min_size=1, max_size=3),
    sent=st.lists(requests(), min_size=1, max_size=3),
)
def test_envoy_writes_what_meshlog_reads(
    tmp_path_factory: Any, items: list[Item], seps: list[str], sent: list[Sent]
) -> None:
    text = text_format(items, seps)
    columns = column_names(items)
    json_map = {name: item.command for name, item in zip(columns, items, strict=True)}
    logs = run_formats({"text": text}, {"json": json_map}, [spec(s) for s in sent])
    tmp = tmp_path_factory.mktemp("prop")
    text_fmt = compile_format(text)
    assert text_fmt.columns == columns
    check(parse_bytes(logs["text"], text_fmt, tmp, "text"), columns, items, sent)
    json_fmt = compile_json_format(json_map)
    check(parse_bytes(logs["json"], json_fmt, tmp, "json"), columns, items, sent)


def test_format_items_are_all_valid_envoy_operators() -> None:
    """The pool itself compiles; its column names follow the contract's rule."""
    for item in ITEMS:
        assert compile_format(item.command).columns == [item.column]
    assert all(re.fullmatch(r"[a-z0-9_]+", i.column) for i in ITEMS)
