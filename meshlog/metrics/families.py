"""The Envoy cluster stats worth reading in an incident, as data.

A default Istio sidecar exposes none of these (its stats matcher keeps only a few prefixes), so
each entry also names the ``proxyStatsMatcher`` setting that turns it on; "not exposed" is then an
answer with a next step, not an empty panel.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where to put a proxyStatsMatcher (mesh-wide or per workload).
MATCHER_WHERE = "meshConfig.defaultConfig.proxyStatsMatcher or the proxy.istio.io/config pod annotation"


@dataclass(frozen=True)
class Family:
    """One Prometheus family (Istio stat tags: label ``cluster_name``; stock tags: ``envoy_cluster_name``)."""

    name: str
    kind: str  # "counter": increase over the window; "gauge": the value at the end
    title: str
    matcher: str  # the proxyStatsMatcher entry that exposes it

    @property
    def hint(self) -> str:
        return f"{self.name}: not exposed by the sidecar; add {self.matcher} to {MATCHER_WHERE}"


def _regex(stat: str) -> str:
    return f'inclusionRegexps: [".*{stat}.*"]'


ENVOY_FAMILIES: tuple[Family, ...] = (
    Family("envoy_cluster_upstream_rq_total", "counter", "upstream requests", _regex("upstream_rq_total")),
    Family("envoy_cluster_upstream_rq_retry", "counter", "retries", _regex("upstream_rq_retry")),
    Family("envoy_cluster_upstream_rq_retry_success", "counter", "retries that succeeded", _regex("upstream_rq_retry")),
    Family(
        "envoy_cluster_upstream_rq_retry_limit_exceeded",
        "counter",
        "retry limit exceeded (URX)",
        _regex("upstream_rq_retry"),
    ),
    Family(
        "envoy_cluster_upstream_rq_retry_overflow",
        "counter",
        "retries stopped by the breaker",
        _regex("upstream_rq_retry"),
    ),
    Family("envoy_cluster_upstream_rq_timeout", "counter", "route timeouts (UT)", _regex("upstream_rq_timeout")),
    Family(
        "envoy_cluster_upstream_rq_per_try_timeout",
        "counter",
        "per-try timeouts",
        _regex("upstream_rq_per_try_timeout"),
    ),
    Family(
        "envoy_cluster_upstream_cx_connect_fail", "counter", "connect failures (UF)", _regex("upstream_cx_connect_fail")
    ),
    Family(
        "envoy_cluster_upstream_cx_connect_timeout",
        "counter",
        "connect timeouts",
        _regex("upstream_cx_connect_timeout"),
    ),
    Family(
        "envoy_cluster_upstream_cx_none_healthy", "counter", "no healthy host (UH)", _regex("upstream_cx_none_healthy")
    ),
    Family(
        "envoy_cluster_outlier_detection_ejections_enforced_total",
        "counter",
        "outlier ejections",
        _regex("outlier_detection"),
    ),
    Family(
        "envoy_cluster_outlier_detection_ejections_active", "gauge", "hosts ejected now", _regex("outlier_detection")
    ),
    Family(
        "envoy_cluster_upstream_rq_pending_overflow", "counter", "breaker: pending overflow (UO)", _regex("overflow")
    ),
    Family("envoy_cluster_upstream_rq_active_overflow", "counter", "breaker: max requests (UO)", _regex("overflow")),
    Family("envoy_cluster_upstream_cx_overflow", "counter", "breaker: connection overflow", _regex("overflow")),
    Family("envoy_cluster_membership_healthy", "gauge", "healthy hosts", _regex("membership_healthy")),
)

# Local rate limiting is per HTTP filter, not per cluster: its rows carry the filter's stat prefix.
RATE_LIMIT_FAMILIES: tuple[Family, ...] = (
    Family(
        "envoy_http_local_rate_limiter_http_local_rate_limit_rate_limited",
        "counter",
        "local rate limit (RL, 429)",
        _regex("http_local_rate_limit"),
    ),
)

CLUSTER_LABELS = ("cluster_name", "envoy_cluster_name")  # Istio's stat tags, then Envoy's stock tags


def hidden(missing: list[str]) -> list[Family]:
    """The families a report's ``missing`` notes say the sidecar does not expose."""
    return [f for f in (*ENVOY_FAMILIES, *RATE_LIMIT_FAMILIES) if f.hint in missing]


def inclusion_regexps(families: list[Family]) -> str:
    """One ``inclusionRegexps`` list that exposes all of ``families`` (each pattern once)."""
    patterns = dict.fromkeys(f.matcher.split("[", 1)[1].rstrip("]") for f in families)
    return f"inclusionRegexps: [{', '.join(patterns)}]"


def absence(count: int, source: str) -> str:
    """How to say that ``count`` families are missing: a scrape saw the sidecar itself; Prometheus only
    knows it holds no series for the window, which a default sidecar explains."""
    if source == "scrape":
        return f"{count} Envoy counter families are not exposed by the sidecar"
    return (
        f"{count} Envoy counter families have no series in Prometheus for the window"
        " (a default sidecar does not expose them)"
    )
