"""Envoy's response flags: short code → long name and what it means for the person on call."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flag:
    code: str
    name: str
    meaning: str


_FLAGS = (
    ("UH", "NoHealthyUpstream", "no healthy upstream host in the cluster (503)"),
    ("UF", "UpstreamConnectionFailure", "connecting to the upstream failed, or its TLS handshake did (503)"),
    ("UO", "UpstreamOverflow", "circuit breaker open: connection pool or pending-request limit reached (503)"),
    ("NR", "NoRouteFound", "no route matched the request (404), or no filter chain matched the connection"),
    ("URX", "UpstreamRetryLimitExceeded", "retries (HTTP) or connect attempts (TCP) used up, still failing"),
    ("NC", "NoClusterFound", "the route points at a cluster the proxy does not know (503)"),
    ("DT", "DurationTimeout", "max connection / stream duration exceeded"),
    ("DC", "DownstreamConnectionTermination", "the client closed the connection before the response was done"),
    ("LH", "FailedLocalHealthCheck", "the local service failed its health check (503)"),
    ("UT", "UpstreamRequestTimeout", "route or per-try timeout hit while waiting for the upstream (504)"),
    ("LR", "LocalReset", "the connection was reset locally (503)"),
    ("UR", "UpstreamRemoteReset", "the upstream reset the stream (503)"),
    ("UC", "UpstreamConnectionTermination", "the upstream closed the connection (503)"),
    ("DI", "DelayInjected", "a fault-injection delay was applied"),
    ("FI", "FaultInjected", "a fault-injection abort answered the request"),
    ("RL", "RateLimited", "rate limited, locally or by the rate-limit service (429)"),
    ("UAEX", "UnauthorizedExternalService", "the external authorization service denied or failed (403)"),
    ("RLSE", "RateLimitServiceError", "the rate-limit service could not be reached or failed"),
    ("IH", "InvalidEnvoyRequestHeaders", "a strictly checked x-envoy-* request header was invalid (400)"),
    ("SI", "StreamIdleTimeout", "the stream idle timeout fired (408 or 504)"),
    ("DPE", "DownstreamProtocolError", "the client sent a malformed request (400)"),
    ("UPE", "UpstreamProtocolError", "the upstream sent a malformed response (502)"),
    ("UMSDR", "UpstreamMaxStreamDurationReached", "the upstream's max stream duration was reached (504)"),
    ("RFCF", "ResponseFromCacheFilter", "served from the cache filter"),
    ("NFCF", "NoFilterConfigFound", "a filter's config (ECDS) did not arrive in time"),
    ("OM", "OverloadManagerTerminated", "the overload manager rejected or ended the request"),
    ("DF", "DnsResolutionFailed", "DNS resolution failed (dynamic forward proxy)"),
    ("DO", "DropOverload", "dropped by the cluster's drop_overloads setting (503)"),
    ("DR", "DownstreamRemoteReset", "the client reset the stream"),
    ("UDO", "UnconditionalDropOverload", "dropped: drop_overloads set to 100% (503)"),
)

FLAGS: dict[str, Flag] = {code: Flag(code, name, meaning) for code, name, meaning in _FLAGS}
BY_LONG_NAME: dict[str, Flag] = {f.name: f for f in FLAGS.values()}


_BY_UPPER: dict[str, Flag] = {**{k.upper(): f for k, f in BY_LONG_NAME.items()}, **FLAGS}


def lookup(code: str) -> Flag | None:
    """A built-in flag by short code or long name, in any case (``uf``, ``upstreamconnectionfailure``)."""
    return FLAGS.get(code) or BY_LONG_NAME.get(code) or _BY_UPPER.get(code.upper())


def near_misses(code: str, *, n: int = 3) -> list[str]:
    """Short codes a mistyped flag may have meant (``UFX`` → ``UF``, ``URX``)."""
    import difflib

    upper = code.upper()
    short = difflib.get_close_matches(upper, list(FLAGS), n=n, cutoff=0.5)
    long = difflib.get_close_matches(upper, [k for k in _BY_UPPER if k not in FLAGS], n=n, cutoff=0.7)
    return list(dict.fromkeys([*short, *(_BY_UPPER[k].code for k in long)]))[:n]


def describe(code: str) -> Flag:
    """The flag for a short code or long name; an unknown one (a custom flag) is described as such."""
    return FLAGS.get(code) or BY_LONG_NAME.get(code) or Flag(code, code, "not a built-in Envoy flag (custom flag?)")
