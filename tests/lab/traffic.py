"""The fixture traffic: one table row per case, each with the outcome Envoy is configured to give.

Expected values come only from what is sent and configured here (and in
``envoy.SERVICES``), never from parsing a log, so fixtures can test a parser.
Requests go out one at a time and each waits for its access-log record, so record order
is the table order; the only exception is the circuit-breaker pair (``hold`` then
``uo``), whose records are logged victim-first, which ``drive`` accounts for.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from .envoy import SERVICES, EnvoyLab, RequestSpec

__all__ = ["CASES", "Case", "drive", "expected_record"]

_NS = uuid.UUID("6d657368-6c6f-6700-8000-000000000000")  # fixed namespace -> stable ids
_SVC = {s.host: s for s in SERVICES}

Kind = Literal["http", "abort", "hold", "tcp"]


@dataclass(frozen=True)
class Case:
    """One request (or TCP connection) and the outcome the lab config produces for it.

    kind: ``http`` normal request; ``abort`` client closes once the upstream has the
    request (DC); ``hold`` started in the background and kept open by the upstream until
    the *next* case has been logged, then released (circuit breaker, no timing involved);
    ``tcp`` one tcp_proxy connection.
    """

    name: str
    code: int
    flags: frozenset[str]
    attempts: int | None
    details: str | None
    route: str | None
    service: str = "backend"
    path: str = "/ok"
    method: str = "GET"
    kind: Kind = "http"
    body: bytes = b""
    ua_suffix: str | None = None  # user-agent = meshlog-case/<name><suffix>
    xff: str | None = None
    b3: str | None = None
    ipv6: bool = False
    listener: str | None = None  # tcp cases: which tcp_proxy listener
    has_cluster: bool = True

    @property
    def request_id(self) -> str:
        return str(uuid.uuid5(_NS, self.name))

    @property
    def user_agent(self) -> str:
        return f"meshlog-case/{self.name}{self.ua_suffix or ''}"

    def spec(self) -> RequestSpec:
        headers: list[tuple[str, str]] = [("user-agent", self.user_agent), ("x-request-id", self.request_id)]
        if self.xff is not None:
            headers.append(("x-forwarded-for", self.xff))
        if self.b3 is not None:
            headers.append(("x-b3-traceid", self.b3))
        return RequestSpec(self.method, self.path, tuple(headers), self.body, _SVC[self.service].authority, self.ipv6)


def _f(*flags: str) -> frozenset[str]:
    return frozenset(flags)


_RESET = "upstream_reset_before_response_started"
_REFUSED = f"{_RESET}{{remote_connection_failure|delayed_connect_error:_Connection_refused}}"

CASES: tuple[Case, ...] = (
    Case("ok", 200, _f(), 1, "via_upstream", "default", b3="80f198ee56343ba864fe8b2a57d3eff7"),
    Case(
        "post-xff",
        200,
        _f(),
        1,
        "via_upstream",
        "default",
        method="POST",
        path="/echo",
        body=b'{"meshlog": "post body"}\n',
        xff="10.1.2.3",
    ),
    Case("quote-ua", 200, _f(), 1, "via_upstream", "default", ua_suffix=' "quoted" back\\slash'),
    Case("nr-404", 404, _f("NR"), 0, "route_not_found", None, path="/nope", has_cluster=False),
    Case("uh", 503, _f("UH"), 1, "no_healthy_upstream", "default", service="empty"),
    Case("uf-noretry", 503, _f("UF"), 1, _REFUSED, "down-noretry", service="down", path="/noretry"),
    Case(
        "uf-retry", 503, _f("URX", "UF"), 3, _REFUSED, "default", service="down", b3="463ac35c9f6413ad48485a3953bb6124"
    ),
    Case("urx-503", 503, _f("URX"), 3, "via_upstream", "retry-route", path="/status/503"),
    Case("uc-reset", 503, _f("UC"), 1, f"{_RESET}{{connection_termination}}", "default", path="/reset"),
    Case("ut-504", 504, _f("UT"), 1, "response_timeout", "slow-route", service="reviews", path="/slow?ms=1500"),
    Case("rl-first", 200, _f(), 1, "via_upstream", "ratelimit-route", service="ratings"),
    Case("rl-429", 429, _f("RL"), 0, "local_rate_limited", "ratelimit-route", service="ratings"),
    Case("dc", 0, _f("DC"), 1, "downstream_remote_disconnect", "default", path="/slow?ms=3000", kind="abort"),
    Case("uo-holder", 200, _f(), 1, "via_upstream", "default", service="tiny", path="/slow?ms=10000", kind="hold"),
    Case("uo", 503, _f("UO"), 1, f"{_RESET}{{overflow}}", "default", service="tiny"),
    Case("ipv6-ok", 200, _f(), 1, "via_upstream", "default", ipv6=True, ua_suffix=" (IPv6 client)"),
    Case("ipv6-xff", 200, _f(), 1, "via_upstream", "default", ipv6=True, xff="2001:db8::7"),
    Case("tcp-echo", 0, _f(), 1, None, None, service="echo", kind="tcp", listener="tcp-echo"),
    Case("tcp-uf", 0, _f("UF", "URX"), 1, None, None, service="down", kind="tcp", listener="tcp-down"),
)

TCP_PAYLOAD = b"meshlog tcp payload: 0123456789abcdef\n"


def expected_record(case: Case) -> dict[str, Any]:
    """What every logger's record for ``case`` must say (fields as named in expected.jsonl)."""
    tcp = case.kind == "tcp"
    return {
        "case": case.name,
        "tcp": tcp,
        "ipv6_client": case.ipv6,
        "method": None if tcp else case.method,
        "path": None if tcp else case.path,
        "protocol": None if tcp else "HTTP/1.1",
        "authority": None if tcp else _SVC[case.service].authority,
        "user_agent": None if tcp else case.user_agent,
        "request_id": None if tcp else case.request_id,
        "x_forwarded_for": case.xff,
        "x_b3_traceid": case.b3,
        "response_code": case.code,
        "response_flags": sorted(case.flags),
        "response_code_details": case.details,
        "route_name": case.route,
        "upstream_cluster": _SVC[case.service].cluster if case.has_cluster else None,
        "upstream_request_attempt_count": case.attempts,
    }


def drive(lab: EnvoyLab, cases: tuple[Case, ...] = CASES) -> list[dict[str, Any]]:
    """Send ``cases`` through ``lab``; return expected records in access-log order.

    IPv6 cases are skipped when the lab has no [::1] listener. A ``hold`` case must be
    followed by the case it starves; its record is logged (and returned) after that one.
    """
    records: list[dict[str, Any]] = []
    holding: tuple[Case, Any] | None = None
    for case in cases:
        if case.ipv6 and not lab.ipv6:
            continue
        if case.kind == "tcp":
            assert case.listener is not None
            echoed = lab.tcp(case.listener, TCP_PAYLOAD)
            if case.code == 0 and not case.flags and echoed != TCP_PAYLOAD:
                raise AssertionError(f"{case.name}: echo mismatch {echoed!r}")
        elif case.kind == "abort":
            lab.send_then_abort(case.spec(), case.request_id)
        elif case.kind == "hold":
            join = lab.send_background(case.spec())
            if not lab.upstream.wait_for_request(case.request_id, 5):
                raise AssertionError(f"{case.name}: request never reached the upstream")
            holding = (case, join)
            continue
        else:
            # While a hold is pending its record comes last: wait only for ours.
            status = lab.send(case.spec(), wait_logged=holding is None)
            if holding is not None:
                lab.wait_records(lab.records - 1)
            if status != case.code:
                raise AssertionError(f"{case.name}: got HTTP {status}, configured {case.code}")
        records.append(expected_record(case))
        if holding is not None:
            held, join = holding
            holding = None
            lab.upstream.release(held.request_id)
            status = join()
            if status != held.code:
                raise AssertionError(f"{held.name}: got HTTP {status}, configured {held.code}")
            lab.wait_records(lab.records)
            records.append(expected_record(held))
    if holding is not None:
        raise AssertionError(f"{holding[0].name}: hold case must be followed by another case")
    return records
