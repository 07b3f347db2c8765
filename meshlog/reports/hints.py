"""Triage hints: patterns in the requests frame → a diagnosis and the Istio object to look at.

The rules are data (``RULES``), not code paths: each names the lines it is about with a few
conditions, and says in plain words what that usually means during an incident. Evaluation
is one vectorised filter per rule.

An ambient waypoint is an Envoy too, but its clusters say what failed (``connect_originate``: the
HBONE tunnel; ``inbound-vip|…``: a service it serves) and the objects to look at differ (ztunnel,
port 15008, AuthorizationPolicy ``targetRefs``). Its rules ``replace`` the sidecar rules whose advice
does not fit those lines: a line both match counts for the waypoint rule only. A log without waypoint
lines gets exactly the hints (counts and filters) it got before.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import polars as pl

from meshlog.filters import WRITTEN, compile_where, flag_filter, quote
from meshlog.reports.contract import Hint, Place

if TYPE_CHECKING:
    from meshlog.reports.state import SummaryState


# An ambient waypoint's clusters (istio pilot/pkg/networking/core/cluster_waypoint.go): those that open
# the HBONE tunnel to the destination (or hand traffic to it; a gateway sending HBONE has them too), and
# those that take requests in: the services it serves, what its HBONE terminator (port 15008) received.
_HBONE_CLUSTERS = r"^(connect_originate|inner_connect_originate|outer_connect_originate|encap)$"
_WAYPOINT_INBOUND = r"^(inbound-vip\|.*|main_internal)$"


@dataclass(frozen=True)
class Rule:
    """When lines match every condition, say ``title`` / ``detail``; ``look_at`` names what to inspect.
    ``replaces``: rules whose advice does not fit this rule's lines (a waypoint's, for a sidecar's rule):
    a line both match counts for this rule only."""

    key: str
    title: str
    detail: str
    look_at: str
    flag: str | None = None  # the line's response_flags contain this flag
    any_flag: tuple[str, ...] = ()  # the line's response_flags contain one of these
    codes: tuple[int, ...] = ()  # response_code is one of these
    details: str | None = None  # regex on response_code_details
    failure: str | None = None  # regex on upstream_transport_failure_reason (or the details' {...} part)
    no_flag: bool = False  # the line has no response flag
    cluster: str | None = None  # regex on upstream_cluster
    replaces: tuple[str, ...] = ()  # keys of rules that do not count the lines this rule matches
    severity: str = "warning"


RULES: tuple[Rule, ...] = (
    Rule("mtls", "mTLS / TLS handshake failing towards the upstream",
         "Connections fail during the TLS handshake: one side sends mTLS, the other expects plaintext (or a "
         "certificate does not verify).",
         "PeerAuthentication mode of the destination and the DestinationRule trafficPolicy.tls (ISTIO_MUTUAL vs "
         "DISABLE); is the destination's sidecar injected?",
         flag="UF", failure=r"(?i)tls|ssl|certificate", severity="critical"),
    Rule("refused", "Upstream refuses connections",
         "TCP connects to the chosen endpoint are refused or time out: nothing listens on that port, or the app "
         "is crashing / restarting.",
         "the destination pods (kubectl get pods, restarts), the Service targetPort vs the container port",
         flag="UF", failure=r"(?i)refused|timeout|timed out|no route to host|_111\b", severity="critical"),
    Rule("no-healthy", "No healthy upstream endpoints",
         "The cluster has no healthy endpoint: the Service selects no ready pod, a DestinationRule subset matches "
         "no pod labels, or outlier detection ejected every host.",
         "kubectl get endpoints <service>; DestinationRule subsets (labels) and outlierDetection",
         flag="UH", severity="critical"),
    Rule("circuit-breaker", "Circuit breaker open (connection pool overflow)",
         "Requests were rejected because the connection pool or pending-request limit was reached.",
         "DestinationRule trafficPolicy.connectionPool (http1MaxPendingRequests, http2MaxRequests, maxConnections)",
         flag="UO", severity="critical"),
    Rule("no-route", "No route for the request",
         "No VirtualService / route matched the host and path, so the proxy answered 404 itself.",
         "VirtualService hosts and match rules, Gateway hosts; is the authority (Host header) the one you expect?",
         flag="NR"),
    Rule("no-cluster", "Route points at an unknown cluster",
         "The route sends traffic to a cluster the proxy does not have: usually a DestinationRule subset that "
         "does not exist, or a host without a Service / ServiceEntry.",
         "VirtualService route destinations (host, subset) vs DestinationRule subsets; ServiceEntry",
         flag="NC", severity="critical"),
    Rule("timeout", "Upstream request timeout",
         "The route timeout (or per-try timeout) expired before the upstream answered.",
         "VirtualService http[].timeout and retries.perTryTimeout; the upstream's own latency",
         flag="UT"),
    Rule("retries-exhausted", "Retries exhausted",
         "Envoy retried and every attempt failed; the final error is what the client saw.",
         "VirtualService http[].retries (attempts, retryOn); the upstream errors behind the retries",
         flag="URX"),
    Rule("upstream-closed", "Upstream closed the connection",
         "The upstream closed or reset the connection before answering: often an idle/keep-alive timeout on the "
         "app shorter than Envoy's, or the app dying mid-request.",
         "DestinationRule connectionPool.http.idleTimeout / maxRequestsPerConnection; app keep-alive settings",
         flag="UC"),
    Rule("upstream-reset", "Upstream reset the stream",
         "The upstream reset the stream (HTTP/2 RST_STREAM or a TCP reset).",
         "the upstream application's logs; protocol selection (port name / appProtocol)",
         flag="UR"),
    Rule("protocol-error", "Upstream protocol error",
         "The upstream's response could not be parsed: often the wrong protocol (HTTP/2 vs HTTP/1.1, TLS vs "
         "plaintext) for that port.",
         "Service port name / appProtocol (http, http2, grpc, tcp); DestinationRule h2UpgradePolicy",
         flag="UPE"),
    Rule("client-gave-up", "Clients gave up before the response",
         "The downstream closed the connection before the response was complete (code 0 / DC): the client's "
         "timeout is shorter than the time this hop takes.",
         "the calling service's client timeout vs this route's latency (see latency by cluster)",
         flag="DC", severity="info"),
    Rule("rate-limited", "Requests rate limited",
         "The proxy answered 429 because a local or global rate limit was hit.",
         "EnvoyFilter local_ratelimit token bucket / the rate limit service and its descriptors",
         flag="RL"),
    Rule("ext-authz", "External authorization denied or failed",
         "The CUSTOM authorization provider denied the request or could not be reached.",
         "AuthorizationPolicy action CUSTOM and meshConfig.extensionProviders; the authz service",
         flag="UAEX"),
    Rule("rbac", "Denied by an AuthorizationPolicy",
         "Istio RBAC denied the request (403, no response flag): ALLOW policies exist and none matched, or a DENY "
         "policy matched.",
         "AuthorizationPolicy objects in the destination namespace and the root namespace",
         codes=(403,), details=r"^rbac_access_denied"),
    Rule("idle-timeout", "Stream idle timeout",
         "No bytes moved on the stream for the idle timeout.",
         "VirtualService timeouts and the HCM stream_idle_timeout (EnvoyFilter); long-polling / streaming calls",
         flag="SI"),
    Rule("bad-request", "Malformed requests from clients",
         "Clients sent requests the proxy could not parse (HTTP/1 codec errors, bad headers).",
         "the calling client; protocol sniffing on the port (name the port http/http2)",
         flag="DPE", severity="info"),
    Rule("app-errors", "The application itself returns 5xx",
         "Upstreams answered with 5xx themselves (via_upstream, no proxy flag): the mesh delivered the request, "
         "the app failed it.",
         "the destination application's logs and recent deploys",
         codes=(500, 501, 502, 503, 504), details=r"^via_upstream$", no_flag=True),
    # ambient waypoints (Istio's cluster names: pilot/pkg/networking/core/cluster_waypoint.go, waypoint.go)
    Rule("waypoint-hbone", "Waypoint cannot open HBONE to the destination",
         "The HBONE tunnel (an mTLS CONNECT to the destination pod's port 15008, cluster connect_originate / "
         "encap) could not be opened: the destination's ztunnel refused or did not answer, a NetworkPolicy "
         "drops port 15008, the pod is not (or no longer) in the ambient mesh, or the tunnel's mTLS failed.",
         "the destination node's ztunnel (kubectl logs -n istio-system ds/ztunnel), NetworkPolicies (they must "
         "allow port 15008 to the pod), istioctl ztunnel-config workloads (is the pod there, protocol HBONE?)",
         flag="UF", cluster=_HBONE_CLUSTERS, replaces=("mtls", "refused"), severity="critical"),
    Rule("waypoint-no-endpoint", "Waypoint has no healthy endpoint for the service",
         "The waypoint answered 503 for a service it serves (cluster inbound-vip|port|protocol[/subset]|service): "
         "it knows no healthy endpoint for it. The Service selects no ready pod, the subset matches no pod, "
         "outlier detection ejected every pod, or ztunnel does not know the pods.",
         "istioctl ztunnel-config services (the service's endpoints as the ambient mesh sees them); the service's "
         "endpoints (kubectl get endpointslices -l kubernetes.io/service-name=<service>); DestinationRule subsets "
         "and outlierDetection",
         codes=(503,), any_flag=("UH", "NR"), cluster=r"^inbound-vip\|", replaces=("no-healthy", "no-route"),
         severity="critical"),
    Rule("waypoint-rbac", "Denied by an AuthorizationPolicy on the waypoint",
         "The waypoint denied the request (403): ALLOW policies bound to it exist and none matched, or a DENY "
         "policy matched. A waypoint enforces the policies that target it (targetRefs: its Gateway, or the "
         "Service); a policy with a workload selector binds to ztunnel, not to the waypoint.",
         "AuthorizationPolicy objects whose targetRefs name the waypoint (kind: Gateway) or the service "
         "(kind: Service), in the service's namespace and the root namespace",
         codes=(403,), details=r"^rbac_access_denied", cluster=_WAYPOINT_INBOUND, replaces=("rbac",)),
)  # fmt: skip


_RULE_COLUMNS = (
    "response_flags", "response_code", "response_code_details", "upstream_transport_failure_reason", "upstream_cluster",
)  # fmt: skip
_PLACES = ("upstream_cluster", "route_name", "pod", "authority")  # where a hint happens


def rule_filter(rule: Rule, columns: Collection[str]) -> str | None:
    """The lines a rule is about, in the ``--where`` language (so a hint's lines can be listed:
    ``summarize --where``, the TUI's table), or None when the log lacks a column the rule needs.
    The rule's expression is compiled from this text, so the two cannot disagree."""
    parts: list[str] = []
    if rule.flag is not None:
        if "response_flags" not in columns:
            return None
        parts.append(flag_filter(rule.flag))
    if rule.any_flag:
        if "response_flags" not in columns:
            return None
        parts.append("(" + " or ".join(flag_filter(f) for f in rule.any_flag) + ")")
    if rule.no_flag and "response_flags" in columns:
        parts.append("not response_flags~.")
    if rule.codes:
        if "response_code" not in columns:
            return None
        parts.append("(" + " or ".join(f"response_code={c}" for c in rule.codes) + ")")
    if rule.cluster is not None:
        if "upstream_cluster" not in columns:
            return None
        parts.append(f"upstream_cluster~{quote(rule.cluster)}")
    if rule.details is not None:
        if "response_code_details" not in columns:
            return None
        parts.append(f"response_code_details~{quote(rule.details)}")
    if rule.failure is not None:
        texts = [c for c in ("upstream_transport_failure_reason", "response_code_details") if c in columns]
        if not texts:
            return None
        parts.append("(" + " or ".join(f"{c}~{quote(rule.failure)}" for c in texts) + ")")
    return " and ".join(parts) if parts else None


def hints(state: SummaryState, *, top: int = 3) -> list[Hint]:
    """Every rule that some lines match: severity, title, detail, count, share and where it happens."""
    columns = state.columns
    requests = state.requests
    total = max(state.total, 1)
    filters = {r.key: f for r in RULES if (f := rule_filter(r, columns)) is not None}
    rules = [(r, compile_where(filters[r.key], requests.schema, WRITTEN)) for r in RULES if r.key in filters]
    if not rules or not requests.height:
        return []
    # Every rule is about a flagged line or a 4xx/5xx/0 answer: look only at those (few) rows.
    worth = [pl.col("response_flags").is_not_null()] if "response_flags" in columns else []
    if "response_code" in columns:
        worth.append((pl.col("response_code") >= 400) | (pl.col("response_code") == 0))
    # Rules read a few low-cardinality columns: the requests table counts the lines per distinct
    # combination of those and of the places reported; each rule's regexes run once per combination.
    keys = [c for c in dict.fromkeys((*_RULE_COLUMNS, *_PLACES)) if c in columns]
    combos = requests.lazy().filter(pl.any_horizontal(worth) if worth else pl.lit(True))
    combos = combos.group_by(keys).agg(pl.col("n").sum().alias("_n"))
    tagged = combos.with_columns(c.alias(_tag(r)) for r, c in rules).collect()
    tagged = _replace(tagged, [r for r, _ in rules], filters)
    counts = tagged.select(_lines(_tag(r)) for r, _ in rules).row(0, named=True)
    hit = [r for r, _ in rules if counts[_tag(r)]]
    wheres = _where(tagged, [_tag(r) for r in hit], top)
    out: list[Hint] = []
    for rule in hit:
        n = counts[_tag(rule)]
        out.append(
            {
                "severity": rule.severity,
                "title": rule.title,
                "detail": f"{rule.detail} Look at: {rule.look_at}" + ("" if rule.look_at.endswith("?") else "."),
                "count": int(n),
                "share": n / total,
                "rule": rule.key,
                "look_at": rule.look_at,
                "where": cast(dict[str, list[Place]], wheres[_tag(rule)]),
                "filter": filters[rule.key],
            }
        )
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(out, key=lambda h: (order[h["severity"]], -h["count"]))


def _replace(tagged: pl.DataFrame, rules: list[Rule], filters: dict[str, str]) -> pl.DataFrame:
    """A rule's lines no longer count for the rules it ``replaces`` (when it matched some): their tags
    and filters lose them. ``filters`` is updated in place: ``<filter> and not (<its filter>)``, which
    the ``--where`` grammar reads as meant (a rule's filter has no ``or`` outside parentheses)."""
    present = {r.key: r for r in rules}
    instead: dict[str, list[Rule]] = {}
    for rule in rules:
        if rule.replaces and tagged[_tag(rule)].any():
            for key in rule.replaces:
                if key in present:
                    instead.setdefault(key, []).append(rule)
    for key, by in instead.items():
        filters[key] += "".join(f" and not ({filters[r.key]})" for r in by)
    return tagged.with_columns(
        (pl.col(_tag(present[key])) & ~pl.any_horizontal(pl.col(_tag(r)) for r in by)).alias(_tag(present[key]))
        for key, by in instead.items()
    )


def _tag(rule: Rule) -> str:
    return f"_rule_{rule.key}"


def _lines(tag: str) -> pl.Expr:
    """How many lines the combinations a rule matched stand for."""
    return pl.col("_n").filter(pl.col(tag)).sum().alias(tag)


def _where(tagged: pl.DataFrame, rules: list[str], top: int) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per rule tag: top upstream clusters, routes and pods among the lines it matches (one group-by per column)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {key: {} for key in rules}
    if not rules:
        return out
    for column in _PLACES:
        if column not in tagged.columns:
            continue
        # every rule's top values in one query: long (value, rule, count), most lines first, ties by value
        per_value = tagged.lazy().group_by(column).agg(_lines(key) for key in rules).drop_nulls(column)
        ranked = (
            per_value.unpivot(index=column, on=rules, variable_name="_rule", value_name="_c")
            .filter(pl.col("_c") > 0)
            .sort(["_rule", "_c", column], descending=[False, True, False])
            .group_by("_rule", maintain_order=True)
            .head(top)
            .collect()
        )
        for key, value, n in ranked.select("_rule", column, "_c").iter_rows():
            out[key].setdefault(column, []).append({"value": value, "count": int(n)})
    return out
