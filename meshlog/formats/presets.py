"""Named formats: Envoy's default, Istio's defaults across versions and Envoy Gateway's.

Strings are Envoy/Istio's own (istio/istio ``pilot/pkg/model/telemetry_logging.go`` and
its history; ``../shared/reference/envoy-access-log-format.md`` §4) and Envoy Gateway's
(envoyproxy/gateway ``internal/xds/translator/accesslog.go`` and its history).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable

from meshlog.errors import ConfigError
from meshlog.formats import grammar
from meshlog.formats.compiler import CompiledFormat, compile_format, compile_json_format, compile_text_format
from meshlog.formats.operators import ALIASES, ISTIO_NAMES, Args, canonical_arg, lookup

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

# Envoy Gateway's default JSON map (``EnvoyJSONLogFields``): its default access log since v1.2.7 / v1.3.1.
# The keys are Envoy Gateway's; the operators are Istio's 24 (with %UPSTREAM_CLUSTER%).
ENVOY_GATEWAY_JSON: dict[str, str] = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "x-envoy-origin-path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "x-envoy-upstream-service-time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x-forwarded-for": "%REQ(X-FORWARDED-FOR)%",
    "user-agent": "%REQ(USER-AGENT)%",
    "x-request-id": "%REQ(X-REQUEST-ID)%",
    ":authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "route_name": "%ROUTE_NAME%",
}
# Envoy Gateway's default text format (``EnvoyTextLogFormat``), its default access log from v0.6.0 to
# v1.2.6 and v1.3.0: the same keys and operators written as JSON-shaped *text*, so every value is a
# quoted string (``"response_code":"200"``, ``"-"`` when unset) and none is escaped.
ENVOY_GATEWAY = (
    '{"start_time":"%START_TIME%","method":"%REQ(:METHOD)%",'
    '"x-envoy-origin-path":"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%","protocol":"%PROTOCOL%",'
    '"response_code":"%RESPONSE_CODE%","response_flags":"%RESPONSE_FLAGS%",'
    '"response_code_details":"%RESPONSE_CODE_DETAILS%",'
    '"connection_termination_details":"%CONNECTION_TERMINATION_DETAILS%",'
    '"upstream_transport_failure_reason":"%UPSTREAM_TRANSPORT_FAILURE_REASON%",'
    '"bytes_received":"%BYTES_RECEIVED%","bytes_sent":"%BYTES_SENT%",'
    '"duration":"%DURATION%","x-envoy-upstream-service-time":"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",'
    '"x-forwarded-for":"%REQ(X-FORWARDED-FOR)%","user-agent":"%REQ(USER-AGENT)%",'
    '"x-request-id":"%REQ(X-REQUEST-ID)%",":authority":"%REQ(:AUTHORITY)%",'
    '"upstream_host":"%UPSTREAM_HOST%","upstream_cluster":"%UPSTREAM_CLUSTER%",'
    '"upstream_local_address":"%UPSTREAM_LOCAL_ADDRESS%",'
    '"downstream_local_address":"%DOWNSTREAM_LOCAL_ADDRESS%",'
    '"downstream_remote_address":"%DOWNSTREAM_REMOTE_ADDRESS%",'
    '"requested_server_name":"%REQUESTED_SERVER_NAME%","route_name":"%ROUTE_NAME%"}\n'
)

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
    "envoy-gateway": (ENVOY_GATEWAY, "Envoy Gateway ≤ 1.3.0 default text format (JSON-shaped, all values strings)"),
    "envoy-gateway-json": (
        json.dumps(ENVOY_GATEWAY_JSON),
        "Envoy Gateway ≥ 1.2.7 / 1.3.1 default JSON format (24 keys, typed values)",
    ),
}

# The JSON presets' maps (key → operator). A preset's keys are its vendor's, not the user's: its
# columns follow the operator as in text logs (architecture rule 1), so Envoy Gateway's ":authority"
# and "x-request-id" are the columns authority and request_id, as in Istio's logs.
JSON_PRESETS: dict[str, dict[str, str]] = {"istio-json": ISTIO_JSON, "envoy-gateway-json": ENVOY_GATEWAY_JSON}


def compile_json_preset(name: str, extra_keys: Iterable[str] = ()) -> CompiledFormat:
    """A JSON preset, plus keys the input has that the preset lacks: each named by its key, typed by the
    operator the key names when it names one (``upstream_request_attempt_count`` →
    ``%UPSTREAM_REQUEST_ATTEMPT_COUNT%``, an integer), else text."""
    mapping = JSON_PRESETS[name]
    full = {**mapping, **{k: _operator_named(k) for k in extra_keys if k not in mapping}}
    fmt = compile_json_format(full, name=name)
    taken = set(fmt.json_keys)  # a key of the input keeps its name: no rename may collide with it
    fields = []
    for key, f in zip(fmt.json_keys, fmt.fields, strict=True):
        column = _istio_column(mapping.get(key, ""))
        if column is not None and column != key and column not in taken:
            taken.add(column)
            f = dataclasses.replace(f, column=column)
        fields.append(f)
    return dataclasses.replace(fmt, fields=tuple(fields))


def _operator_named(key: str) -> str:
    """``%KEY%`` when an operator without required arguments has the key's name (meshlog's column rule
    read backwards), else "" (a text column)."""
    op = lookup(key.upper())
    return f"%{op.name}%" if op.known and op.args not in (Args.REQUIRED, Args.REQUIRED_LEN) else ""


def _istio_column(value: str) -> str | None:
    """Istio's key for a JSON value that is one operator Istio's JSON format names, else None."""
    tokens = grammar.tokenize(value) if value else []
    if len(tokens) != 1 or not isinstance(tokens[0], grammar.Command):
        return None
    command = tokens[0]
    return ISTIO_NAMES.get((ALIASES.get(command.name, command.name), canonical_arg(command.name, command.arg)))


def resolve(spec: str) -> CompiledFormat:
    """A preset name or a format string → compiled format."""
    if spec in JSON_PRESETS:
        return compile_json_preset(spec)
    if spec in PRESETS:  # a text preset is text even when it reads as JSON (envoy-gateway)
        return compile_text_format(PRESETS[spec][0], name=spec)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec):  # a name, not a format: a mistyped preset
        raise ConfigError(f"unknown preset {spec!r} (presets: {', '.join(PRESETS)}; or give a format string)")
    return compile_format(spec)
