"""Ambient waypoint lines (an Envoy with Istio's waypoint clusters): the derived cluster columns, the
address columns kept as Envoy printed them, and the hints that name what to check in ambient.

Real lines: ``../shared/peer-data/kiali/waypoint.log`` (kubectl --timestamps wrapped). Crafted lines
use the same format (Istio's default text format) with the cluster names Istio gives a waypoint
(pilot/pkg/networking/core/cluster_waypoint.go) and the HBONE failure line of istio/istio#52886.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshlog.filters import narrow
from meshlog.formats.presets import resolve
from meshlog.parse import DERIVED, AccessLog
from meshlog.pipeline import Run, parse_paths
from meshlog.reports import hints as hints_module
from meshlog.reports.hints import hints
from meshlog.reports.state import state_of
from meshlog.reports.summary import summarize_log
from tests.conftest import FIXTURES, PEER_DATA

WAYPOINT_LOG = PEER_DATA / "kiali" / "waypoint.log"


def parse_file(path: Path) -> AccessLog:
    """As the CLI reads a file: the envelope and the format detected."""
    run = Run(None)
    logs = list(parse_paths([str(path)], run))
    assert run.format is not None and not run.errors
    return AccessLog.concat(logs, run.format)


# -- the real waypoint log -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kiali() -> AccessLog:
    return parse_file(WAYPOINT_LOG)


def test_kiali_waypoint_lines_parse_with_their_addresses_as_text(kiali: AccessLog) -> None:
    c = kiali.counts
    assert (c.total, c.access, c.unparsed, c.other) == (16, 16, 0, 0)
    assert kiali.format is not None and kiali.format.name == "istio"
    first = kiali.requests.row(0, named=True)
    assert first["captured_at"].isoformat() == "2025-01-30T12:10:13.682034+00:00"  # kubectl's timestamp
    assert first["start_time"].isoformat() == "2025-01-30T12:10:13.279000+00:00"
    assert (first["method"], first["path"], first["response_code"], first["authority"]) == (
        "GET", "/details/0", 200, "details:9080",
    )  # fmt: skip
    # the internal addresses of Envoy's internal listeners stay the text Envoy printed
    assert first["upstream_host"] == "envoy://connect_originate/10.244.0.32:9080"
    assert first["upstream_local_address"] == "envoy://internal_client_address/"
    assert first["downstream_local_address"] == "10.96.185.196:9080"  # the service VIP
    assert first["downstream_remote_address"] == "10.244.0.37:52134"  # the client pod
    assert first["upstream_cluster"] == "inbound-vip|9080|http|details.bookinfo.svc.cluster.local"
    assert {k: first[k] for k in DERIVED} == {
        "cluster_direction": "inbound-vip",
        "cluster_port": 9080,
        "cluster_subset": None,  # "http" is the protocol, not a subset
        "cluster_service": "details.bookinfo.svc.cluster.local",
        "cluster_protocol": "http",
    }
    # line 5: the gateway's pod is not in the mesh, so the waypoint connects to it directly (no HBONE)
    fifth = kiali.requests.row(4, named=True)
    assert (fifth["line_no"], fifth["upstream_host"], fifth["upstream_local_address"]) == (
        5, "10.244.0.39:80", "10.244.0.44:58916",
    )  # fmt: skip
    assert (fifth["cluster_direction"], fifth["cluster_port"], fifth["cluster_service"]) == (
        "inbound-vip", 80, "bookinfo-gateway-istio.bookinfo.svc.cluster.local",
    )  # fmt: skip


def test_kiali_waypoint_clusters_per_service(kiali: AccessLog) -> None:
    requests = kiali.requests
    assert set(requests["cluster_direction"]) == {"inbound-vip"}
    assert set(requests["cluster_protocol"]) == {"http"}
    assert requests["cluster_subset"].null_count() == requests.height
    per_service = dict(requests.group_by("cluster_service").len().iter_rows())
    assert per_service == {
        "details.bookinfo.svc.cluster.local": 5,
        "ratings.bookinfo.svc.cluster.local": 3,
        "reviews.bookinfo.svc.cluster.local": 4,
        "bookinfo-gateway-istio.bookinfo.svc.cluster.local": 4,
    }
    assert requests["upstream_host"].str.starts_with("envoy://connect_originate/").sum() == 12


def test_kiali_waypoint_summary(kiali: AccessLog) -> None:
    summary = summarize_log(kiali)
    assert summary["requests"] == 16 and summary["hints"] == []
    clusters = {c["upstream_cluster"]: c["requests"] for c in summary["latency"]["by_upstream_cluster"]}
    assert clusters["inbound-vip|9080|http|details.bookinfo.svc.cluster.local"] == 5


# -- crafted waypoint lines ----------------------------------------------------------------------------------

V2 = (
    '[2025-01-30T10:53:20.282Z] "GET /reviews/0 HTTP/1.1" 200 - via_upstream - "-" 0 358 3 3 "-" '
    '"Go-http-client/1.1" "0f1d6c1e-7a5b-4c36-9d8e-1a2b3c4d5e01" "reviews:9080" '
    '"envoy://connect_originate/10.244.0.34:9080" inbound-vip|9080|http/v2|reviews.bookinfo.svc.cluster.local '
    "envoy://internal_client_address/ 10.111.226.218:9080 10.244.0.37:52134 - default"
)
# istio/istio#52886: the waypoint's HBONE origination to the pod's port 15008 is refused
HBONE_REFUSED = (
    '[2025-01-30T10:53:21.{ms:03d}Z] "- - -" 0 UF,URX - - "delayed_connect_error:_Connection_refused" 0 0 0 - '
    '"-" "-" "-" "-" "10.244.0.17:15008" connect_originate - 10.244.0.17:80 envoy://internal_client_address/ - -'
)
# the HBONE terminator's listener logs only answers >= 400 (its cluster: main_internal)
MAIN_INTERNAL = (
    '[2025-01-30T10:53:22.000Z] "CONNECT - HTTP/2" 503 UC '
    'upstream_reset_before_response_started{connection_termination} - "-" 0 95 2 - "-" "-" '
    '"0f1d6c1e-7a5b-4c36-9d8e-1a2b3c4d5e03" "10.96.185.196:9080" "envoy://main_internal/" '
    "main_internal envoy://internal_client_address/ 10.244.0.44:15008 10.244.0.37:40202 - -"
)
# workload-addressed TCP (a pod IP, not a VIP): the direct-tcp chain hands it to the HBONE origination
ENCAP = (
    '[2025-01-30T10:53:22.500Z] "- - -" 0 - - - "-" 1024 2048 15 - "-" "-" "-" "-" "envoy://connect_originate/" '
    "encap envoy://internal_client_address/ 10.244.0.32:9080 10.244.0.37:52140 - -"
)
RBAC_DENIED = (
    '[2025-01-30T10:53:23.000Z] "GET /ratings/0 HTTP/1.1" 403 - rbac_access_denied_matched_policy[none] - "-" 0 19 0 '
    '- "-" "curl/8.5.0" "0f1d6c1e-7a5b-4c36-9d8e-1a2b3c4d5e04" "ratings:9080" "-" '
    "inbound-vip|9080|http|ratings.bookinfo.svc.cluster.local - 10.107.133.104:9080 10.244.0.35:36720 - default"
)
NO_ENDPOINT = (
    '[2025-01-30T10:53:24.000Z] "GET /reviews/0 HTTP/1.1" 503 UH no_healthy_upstream - "-" 0 19 0 - "-" '
    '"Go-http-client/1.1" "0f1d6c1e-7a5b-4c36-9d8e-1a2b3c4d5e05" "reviews:9080" "-" '
    "inbound-vip|9080|http/v3|reviews.bookinfo.svc.cluster.local - 10.111.226.218:9080 10.244.0.37:52134 - default"
)
WAYPOINT_LINES = [V2, HBONE_REFUSED.format(ms=0), HBONE_REFUSED.format(ms=7), MAIN_INTERNAL, ENCAP, RBAC_DENIED,
                  NO_ENDPOINT]  # fmt: skip
# a sidecar's refused connect in the same log: still the sidecar's hint
SIDECAR_REFUSED = (
    '[2025-01-30T10:53:25.000Z] "GET /ratings/1 HTTP/1.1" 503 UF,URX '
    "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused} "
    '- "delayed_connect_error:_Connection_refused" 0 152 12 - "-" "curl/8.5.0" "0f1d6c1e-7a5b-4c36-9d8e-1a2b3c4d5e06" '
    '"ratings:9080" "10.244.0.41:9080" outbound|9080||ratings.bookinfo.svc.cluster.local - 10.107.133.104:9080 '
    "10.244.0.35:36730 - default"
)


def _crafted(tmp_path: Path, lines: list[str]) -> AccessLog:
    path = tmp_path / "waypoint.log"
    path.write_text("\n".join(lines) + "\n")
    return parse_file(path)


def _by_line(log: AccessLog) -> dict[int, dict[str, Any]]:
    return {r["line_no"]: r for r in log.requests.iter_rows(named=True)}


def test_crafted_waypoint_lines_derive_their_clusters(tmp_path: Path) -> None:
    log = _crafted(tmp_path, WAYPOINT_LINES)
    assert log.format is not None and log.format.name == "istio"
    assert (log.counts.unparsed, log.requests.height) == (0, len(WAYPOINT_LINES))
    rows = _by_line(log)
    derived = {n: tuple(r[k] for k in DERIVED) for n, r in rows.items()}
    # direction, port, subset, service, protocol
    assert derived == {
        1: ("inbound-vip", 9080, "v2", "reviews.bookinfo.svc.cluster.local", "http"),
        2: ("outbound", None, None, None, None),  # connect_originate: the waypoint → the destination
        3: ("outbound", None, None, None, None),
        4: ("inbound", None, None, None, None),  # main_internal: what the HBONE terminator received
        5: ("outbound", None, None, None, None),  # encap
        6: ("inbound-vip", 9080, None, "ratings.bookinfo.svc.cluster.local", "http"),
        7: ("inbound-vip", 9080, "v3", "reviews.bookinfo.svc.cluster.local", "http"),
    }
    hbone = rows[2]
    assert (hbone["response_code"], hbone["response_flags"], hbone["upstream_transport_failure_reason"]) == (
        0, "UF,URX", "delayed_connect_error:_Connection_refused",
    )  # fmt: skip
    assert (hbone["upstream_host"], hbone["upstream_cluster"], hbone["upstream_local_address"]) == (
        "10.244.0.17:15008", "connect_originate", None,
    )  # fmt: skip
    assert (hbone["downstream_local_address"], hbone["downstream_remote_address"]) == (
        "10.244.0.17:80", "envoy://internal_client_address/",
    )  # fmt: skip
    assert rows[4]["upstream_host"] == "envoy://main_internal/"
    assert rows[5]["upstream_host"] == "envoy://connect_originate/"
    assert rows[6]["response_code_details"] == "rbac_access_denied_matched_policy[none]"


def test_tcp_clusters_of_a_waypoint() -> None:
    from tests.conftest import parse_text

    line = V2.replace("inbound-vip|9080|http/v2|", "inbound-vip|3306|tcp|").replace("reviews.", "mysql.", 1)
    log = parse_text([line, line.replace("|tcp|", "|tcp/primary|")], resolve("istio"))
    got = log.requests.select(*DERIVED).rows()
    assert got == [
        ("inbound-vip", 3306, None, "mysql.bookinfo.svc.cluster.local", "tcp"),
        ("inbound-vip", 3306, "primary", "mysql.bookinfo.svc.cluster.local", "tcp"),
    ]


def test_waypoint_hints_name_what_to_check_in_ambient(tmp_path: Path) -> None:
    log = _crafted(tmp_path, WAYPOINT_LINES)
    found = {h["rule"]: h for h in hints(state_of(log.requests))}
    assert {k: h["count"] for k, h in found.items()} == {
        "waypoint-hbone": 2,
        "waypoint-no-endpoint": 1,
        "waypoint-rbac": 1,
        "retries-exhausted": 2,  # the URX of the HBONE lines
        "upstream-closed": 1,  # the main_internal line
    }
    hbone = found["waypoint-hbone"]
    assert (hbone["title"], hbone["severity"]) == ("Waypoint cannot open HBONE to the destination", "critical")
    for text in ("kubectl logs -n istio-system ds/ztunnel", "15008", "istioctl ztunnel-config workloads"):
        assert text in hbone["detail"]
    assert hbone["where"]["upstream_cluster"] == [{"value": "connect_originate", "count": 2}]
    no_endpoint = found["waypoint-no-endpoint"]
    assert no_endpoint["title"] == "Waypoint has no healthy endpoint for the service"
    assert "istioctl ztunnel-config services" in no_endpoint["detail"]
    assert no_endpoint["where"]["upstream_cluster"] == [
        {"value": "inbound-vip|9080|http/v3|reviews.bookinfo.svc.cluster.local", "count": 1}
    ]
    rbac = found["waypoint-rbac"]
    assert rbac["title"] == "Denied by an AuthorizationPolicy on the waypoint" and "targetRefs" in rbac["detail"]
    # every hint's filter lists exactly its lines
    for hint in found.values():
        assert narrow(log, where=hint["filter"]).requests.height == hint["count"], hint["rule"]


def test_a_sidecar_line_beside_waypoint_lines_keeps_its_hint(tmp_path: Path) -> None:
    log = _crafted(tmp_path, [*WAYPOINT_LINES, SIDECAR_REFUSED])
    found = {h["rule"]: h for h in hints(state_of(log.requests))}
    assert found["waypoint-hbone"]["count"] == 2
    refused = found["refused"]  # the HBONE lines match the sidecar's rule too, but count for the waypoint's
    assert refused["count"] == 1
    assert refused["where"]["upstream_cluster"] == [
        {"value": "outbound|9080||ratings.bookinfo.svc.cluster.local", "count": 1}
    ]
    assert " and not (" in refused["filter"]
    assert narrow(log, where=refused["filter"]).requests.height == 1
    assert found["retries-exhausted"]["count"] == 3


# -- sidecar logs: exactly the hints they had -----------------------------------------------------------------

SIDECAR_LOGS = sorted(p for p in FIXTURES.rglob("*.log") if not {"waypoint", "ambient"} & set(p.parts))


def _read_fixture(path: Path) -> AccessLog:
    given = path.parent / "format.txt"
    run = Run(resolve(given.read_text()) if given.exists() else None)
    logs = list(parse_paths([str(path)], run))
    assert run.format is not None
    return AccessLog.concat(logs, run.format)


@pytest.mark.parametrize("path", SIDECAR_LOGS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_sidecar_logs_get_no_waypoint_hint(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = state_of(_read_fixture(path).requests)
    now = hints(state)
    assert not [h["rule"] for h in now if h["rule"].startswith("waypoint-")]
    before = tuple(r for r in hints_module.RULES if not r.key.startswith("waypoint-"))
    monkeypatch.setattr(hints_module, "RULES", before)
    assert now == hints(state)  # counts, places and filters
