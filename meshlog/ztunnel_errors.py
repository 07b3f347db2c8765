"""ztunnel's ``error=`` texts: what kind of failure each is, and what to check in ambient mode.

ztunnel writes the ``Display`` of its proxy error (``src/proxy.rs``), so a text is a chain of
prefixes around a leaf from std, h2 or rustls: ``while closing connection: send: io error: stream
closed because of a broken pipe``. The first category whose pattern the text contains wins, so
the outer prefixes come first (``identity error: … Connection refused`` is the CA's refusal, an
identity problem) and the specific before the general (the NetworkPolicy timeout before any
timeout; a 401 before any status).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class ErrorKind:
    key: str
    title: str  # what happened, in the words of the person on call
    pattern: str  # regex on the error text (case-insensitive)
    check: str  # what to look at, in ambient mode
    severity: str = "warning"


KINDS: tuple[ErrorKind, ...] = (
    ErrorKind("policy", "Denied by an AuthorizationPolicy",
              r"policy rejection|explicitly denied by|allow policies exist|connection closed due to policy change"
              r"|http status: 401",
              "the AuthorizationPolicies of the destination's namespace (kubectl get authorizationpolicy -n NS; "
              "a waypoint-bound policy uses targetRefs), and the source identity they allow; a 401 from the "
              "destination's ztunnel is its policy saying no", "critical"),
    ErrorKind("hbone-blocked", "HBONE port 15008 unreachable (a NetworkPolicy?)",
              r"NetworkPolicy is blocking HBONE",
              "NetworkPolicies in the destination namespace must allow TCP 15008 from other nodes' ztunnels; "
              "is the destination pod's ztunnel running (kubectl get pods -n istio-system -l app=ztunnel -o wide)?",
              "critical"),
    ErrorKind("ca", "Certificate signing failed (istiod / the CA)",
              r"^identity error: (?:signing|failed to create CSR|chain returned from CA)|signing gRPC error",
              "ztunnel could not get the workload's certificate: is istiod (or the external CA) reachable from "
              "ztunnel on 15012 and healthy (its logs), and what do istioctl ztunnel-config certificates show?",
              "critical"),
    ErrorKind("identity", "ztunnel does not know the workload",
              r"failed to fetch information about local workload|ip mismatch|identity error|workload is unknown"
              r"|unknown source",
              "is the pod enrolled (namespace label istio.io/dataplane-mode=ambient) and known to ztunnel: "
              "istioctl ztunnel-config workloads; istiod's push to ztunnel (its xds lines)"),
    ErrorKind("waypoint", "Waypoint not found or failing",
              r"unknown waypoint|unknown network gateway",
              "the istio.io/use-waypoint label and the waypoint Gateway: istioctl waypoint list / status; "
              "istioctl ztunnel-config services shows each service's waypoint", "critical"),
    ErrorKind("mtls", "mTLS handshake failed",
              r"tls handshake|tls error|ssl error|identity verification|certificate|NoCertificatesPresented"
              r"|BadSignature|UnknownIssuer|peer certificate",
              "PeerAuthentication (STRICT needs both sides in the mesh), the workload certificates (istioctl "
              "ztunnel-config certificates), and a trust-domain or root-CA mismatch between clusters", "critical"),
    ErrorKind("dns", "DNS lookup failed",
              r"^dns|dns lookup",
              "ztunnel's DNS proxy and the ServiceEntry / Service the name should resolve to"),
    ErrorKind("no-upstream", "No healthy endpoint for the destination",
              r"no healthy upstream|no endpoints for workload|no valid routing destination|no ip addresses were "
              r"resolved|no service for target address|cannot resolve port|has no IP addresses|no valid target port"
              r"|no service or workload for hostname|no gateway address|dns response had no",
              "the Service's endpoints (kubectl get endpointslices -l kubernetes.io/service-name=SVC) and what "
              "ztunnel knows: istioctl ztunnel-config services / workloads", "critical"),
    ErrorKind("refused", "Connection refused by the destination",
              r"Connection refused|os error 111|http status: 503",
              "the destination app: does it listen on the target port (the Service's targetPort)? is it restarting? "
              "A 503 from the destination's ztunnel means it could not connect to the app", "critical"),
    ErrorKind("timeout", "Connect timed out",
              r"deadline has elapsed|timed out|os error 110",
              "reachability of the destination pod (node, CNI, NetworkPolicy); the destination ztunnel's log "
              "(kubectl logs -n istio-system ds/ztunnel); a 10 s duration is ztunnel's connect timeout"),
    ErrorKind("hbone", "HBONE (HTTP/2 CONNECT) failed",
              r"h2 failed|http2 handshake failed|expected method CONNECT|invalid CONNECT address|no valid authority"
              r"|no valid service port|http status:",
              "whether the destination speaks HBONE: a sidecar-injected or non-ambient pod, or a waypoint; the "
              "destination ztunnel's log for the same connection"),
    ErrorKind("reset", "Connection reset or closed mid-stream",
              r"disconnected before all data was written|broken pipe|Connection reset|stream closed|os error 104"
              r"|os error 32",
              "usually the app or the client closing early (idle timeouts, restarts); a burst points at a pod "
              "restart or a deploy"),
    ErrorKind("drain", "Closed by a ztunnel drain (restart or upgrade)",
              r"connection drain|pool draining|failed to drain",
              "ztunnel pods restarting (kubectl get pods -n istio-system -l app=ztunnel), an upgrade in progress"),
    ErrorKind("local", "ztunnel could not open a socket",
              r"Cannot assign requested address|os error 99|failed to bind|Too many open files|os error 24",
              "ephemeral ports or file descriptors on the node running out (many short connections)"),
)  # fmt: skip
OTHER = ErrorKind("other", "Other error", "", "the full error text and the ztunnel log around it")
BY_KEY = {k.key: k for k in (*KINDS, OTHER)}


def kind_filter(key: str) -> str:
    """The ``--where`` text that lists the errors of one kind: its pattern, and none of the kinds
    before it (first match wins, so a text an earlier kind claimed is not this one's)."""
    from meshlog.filters import quote

    at = next(i for i, k in enumerate(KINDS) if k.key == key) if key != OTHER.key else len(KINDS)
    terms = [f"error~{quote('(?i)' + KINDS[at].pattern)}"] if at < len(KINDS) else ["error~."]
    terms += [f"not error~{quote('(?i)' + k.pattern)}" for k in KINDS[:at]]
    return " and ".join(terms)


def error_kind(error: pl.Expr) -> pl.Expr:
    """The ``ErrorKind.key`` of each error text (null where there is no error). Run it on the few
    distinct texts, not on every record."""
    out = pl.lit(OTHER.key)
    for kind in reversed(KINDS):
        out = pl.when(error.str.contains(f"(?i){kind.pattern}")).then(pl.lit(kind.key)).otherwise(out)
    return pl.when(error.is_not_null()).then(out)
