"""Named formats: Envoy's default and Istio's defaults across versions.

Strings are Envoy/Istio's own (istio/istio ``pilot/pkg/model/telemetry_logging.go`` and
its history; ``../shared/reference/envoy-access-log-format.md`` §4).
"""

from __future__ import annotations

import json
import re

from meshlog.errors import ConfigError
from meshlog.formats.compiler import CompiledFormat, compile_format

_ISTIO_HEAD = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% '
)
_ISTIO_MIDDLE = (
    '%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" '
    '"%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" '
)
_ISTIO_TAIL = "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME%"
_MIXER = '"%DYNAMIC_METADATA(istio.mixer:status)%" '

ENVOY_DEFAULT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% '
    '%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" '
    '"%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n'
)
ISTIO = (
    _ISTIO_HEAD
    + '%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" '
    + _ISTIO_MIDDLE
    + "%UPSTREAM_CLUSTER_RAW% "
    + _ISTIO_TAIL
    + " %ROUTE_NAME%\n"
)
ISTIO_UPSTREAM_CLUSTER = ISTIO.replace("%UPSTREAM_CLUSTER_RAW%", "%UPSTREAM_CLUSTER%")
ISTIO_1_8 = (
    _ISTIO_HEAD
    + '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" '
    + _ISTIO_MIDDLE
    + "%UPSTREAM_CLUSTER% "
    + _ISTIO_TAIL
    + " %ROUTE_NAME%\n"
)
ISTIO_1_5 = (
    _ISTIO_HEAD
    + _MIXER
    + '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" '
    + _ISTIO_MIDDLE
    + "%UPSTREAM_CLUSTER% "
    + _ISTIO_TAIL
    + " %ROUTE_NAME%\n"
)
ISTIO_1_2 = (
    _ISTIO_HEAD
    + _MIXER
    + '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" '
    + _ISTIO_MIDDLE
    + "%UPSTREAM_CLUSTER% "
    + _ISTIO_TAIL
    + "\n"
)
ISTIO_1_1 = _ISTIO_HEAD + _MIXER + _ISTIO_MIDDLE + "%UPSTREAM_CLUSTER% " + _ISTIO_TAIL + "\n"

ISTIO_JSON: dict[str, str] = {
    "start_time": "%START_TIME%",
    "route_name": "%ROUTE_NAME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}

# name → (format string, what it is). Order matters for detection: the first of equals wins.
PRESETS: dict[str, tuple[str, str]] = {
    "istio": (ISTIO, "Istio ≥ 1.9 default text format (%UPSTREAM_CLUSTER_RAW% since 1.23)"),
    "istio-json": (json.dumps(ISTIO_JSON), "Istio accessLogEncoding: JSON (24 keys, typed values)"),
    "istio-upstream-cluster": (ISTIO_UPSTREAM_CLUSTER, "Istio 1.9–1.22 default text format (%UPSTREAM_CLUSTER%)"),
    "istio-1.8": (ISTIO_1_8, "Istio 1.8 default text format (mixer status removed)"),
    "istio-1.5": (ISTIO_1_5, "Istio 1.3–1.7 default text format (mixer status, %ROUTE_NAME%)"),
    "istio-1.2": (ISTIO_1_2, "Istio 1.2 default text format (mixer status, transport failure reason)"),
    "istio-1.1": (ISTIO_1_1, "Istio 1.1 default text format (mixer status field)"),
    "envoy": (ENVOY_DEFAULT, "Envoy's built-in default format"),
}


def resolve(spec: str) -> CompiledFormat:
    """A preset name or a format string → compiled format."""
    if spec in PRESETS:
        return compile_format(PRESETS[spec][0], name=spec)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec):  # a name, not a format: a mistyped preset
        raise ConfigError(f"unknown preset {spec!r} (presets: {', '.join(PRESETS)}; or give a format string)")
    return compile_format(spec)
