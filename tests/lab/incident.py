"""An incident in miniature for the metrics tests: retries, timeouts, refused connections, no
endpoints, an outlier ejection, a tripped breaker and rate limiting, through the real lab Envoy.

The Envoy counters each step must move come from what is sent and how the lab is configured
(``envoy.SERVICES``, Istio's retry policy), written next to the traffic — never read back from
Envoy — so a test can compare them with what meshlog reports.
"""

from __future__ import annotations

from typing import Any

from .envoy import SERVICES, EnvoyLab
from .traffic import Case, drive

__all__ = ["INCIDENT", "expected_counters", "run_incident"]

_C = {s.host: s.cluster for s in SERVICES}
_RESET = "upstream_reset_before_response_started"
_REFUSED = f"{_RESET}{{remote_connection_failure|delayed_connect_error:_Connection_refused}}"

OK, RETRIED, TIMEOUTS, REFUSED, NO_ENDPOINTS, FLAKY, FLAKY_EJECT_AFTER, LIMITED = 10, 4, 3, 4, 2, 5, 3, 3


def _n(name: str, count: int, *args: Any, **kw: Any) -> list[Case]:
    return [Case(f"incident-{name}-{i}", *args, **kw) for i in range(count)]


INCIDENT: tuple[Case, ...] = (
    *_n("ok", OK, 200, frozenset(), 1, "via_upstream", "default"),
    # Istio's default policy retries a 503 twice: 3 attempts, then URX
    *_n("urx", RETRIED, 503, frozenset({"URX"}), 3, "via_upstream", "retry-route", path="/status/503"),
    *_n(
        "ut",
        TIMEOUTS,
        504,
        frozenset({"UT"}),
        1,
        "response_timeout",
        "slow-route",
        service="reviews",
        path="/slow?ms=600",
    ),
    *_n("uf", REFUSED, 503, frozenset({"UF"}), 1, _REFUSED, "down-noretry", service="down", path="/noretry"),
    *_n("uh", NO_ENDPOINTS, 503, frozenset({"UH"}), 1, "no_healthy_upstream", "default", service="empty"),
    # 3 consecutive 5xx eject flaky's only host; with panic threshold 0 the rest are 503 UH
    *_n(
        "eject", FLAKY_EJECT_AFTER, 503, frozenset(), 1, "via_upstream", "default", service="flaky", path="/status/503"
    ),
    *_n(
        "ejected",
        FLAKY - FLAKY_EJECT_AFTER,
        503,
        frozenset({"UH"}),
        1,
        "no_healthy_upstream",
        "default",
        service="flaky",
    ),
    # one token: the first passes, the rest are 429 RL
    Case("incident-rl-first", 200, frozenset(), 1, "via_upstream", "ratelimit-route", service="ratings"),
    *_n("rl", LIMITED - 1, 429, frozenset({"RL"}), 0, "local_rate_limited", "ratelimit-route", service="ratings"),
    # max_requests=1: a held request makes the next one overflow (503 UO)
    Case(
        "incident-uo-holder",
        200,
        frozenset(),
        1,
        "via_upstream",
        "default",
        service="tiny",
        path="/slow?ms=10000",
        kind="hold",
    ),
    Case("incident-uo", 503, frozenset({"UO"}), 1, f"{_RESET}{{overflow}}", "default", service="tiny"),
)


def expected_counters() -> dict[str, dict[str, float]]:
    """Envoy family -> cluster_name -> increase the incident causes (rate limiting: cluster "")."""
    return {
        "envoy_cluster_upstream_rq_retry": {_C["backend"]: 2 * RETRIED},
        "envoy_cluster_upstream_rq_retry_limit_exceeded": {_C["backend"]: RETRIED},
        "envoy_cluster_upstream_rq_timeout": {_C["reviews"]: TIMEOUTS},
        "envoy_cluster_upstream_cx_connect_fail": {_C["down"]: REFUSED},
        "envoy_cluster_upstream_cx_none_healthy": {_C["empty"]: NO_ENDPOINTS, _C["flaky"]: FLAKY - FLAKY_EJECT_AFTER},
        "envoy_cluster_outlier_detection_ejections_enforced_total": {_C["flaky"]: 1},
        "envoy_cluster_outlier_detection_ejections_active": {_C["flaky"]: 1},
        "envoy_cluster_upstream_rq_active_overflow": {_C["tiny"]: 1},  # max_requests, not max_pending
        "envoy_http_local_rate_limiter_http_local_rate_limit_rate_limited": {"": LIMITED - 1},
    }


def run_incident(lab: EnvoyLab) -> None:
    """Send the incident (each request waits for its access-log record, so it is over on return)."""
    drive(lab, INCIDENT)
