"""Envoy 1.40's command operators: what each one takes, prints and becomes as a column.

Knowledge lives in tables here, not in ``if`` chains in the compiler. Arguments and
``:N`` rules come from probing a real Envoy 1.40 (``envoy --mode validate``); the kinds
from what it printed (``../shared/reference/envoy-access-log-format.md`` §1.2, §2).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Kind(enum.Enum):
    """What an operator prints, which fixes the column's type and its text pattern."""

    STRING = "string"
    INTEGER = "integer"
    MILLISECONDS = "milliseconds"
    BYTES = "bytes"
    TIMESTAMP = "timestamp"
    ADDRESS = "address"
    FLAGS = "flags"
    JSON = "json"  # structured values (metadata, filter state): JSON text in a column

    @property
    def numeric(self) -> bool:
        return self in (Kind.INTEGER, Kind.MILLISECONDS, Kind.BYTES)


class Args(enum.Enum):
    """Which argument / length forms Envoy 1.40 accepts for an operator."""

    NONE = "none"  # %X% only
    REQUIRED = "required"  # %X(a)%
    REQUIRED_LEN = "required+len"  # %X(a)% or %X(a):N%
    OPTIONAL = "optional"  # %X% or %X(a)%
    OPTIONAL_LEN = "optional+len"  # %X%, %X(a)%, %X:N%, %X(a):N%


@dataclass(frozen=True)
class Operator:
    name: str
    kind: Kind
    args: Args = Args.NONE
    unset: str = "-"  # what text mode prints when there is no value (JSON: null; counters: 0)
    known: bool = True  # False for names Envoy 1.40 does not know: compiled as strings, with a warning


def _table(kind: Kind, names: str, args: Args = Args.NONE, unset: str = "-") -> dict[str, Operator]:
    return {name: Operator(name, kind, args, unset) for name in names.split()}


OPERATORS: dict[str, Operator] = {
    # timing, integers in milliseconds
    **_table(
        Kind.MILLISECONDS,
        "DURATION REQUEST_DURATION REQUEST_TX_DURATION RESPONSE_DURATION RESPONSE_TX_DURATION"
        " ROUNDTRIP_DURATION DOWNSTREAM_HANDSHAKE_DURATION UPSTREAM_CONNECTION_POOL_READY_DURATION"
        " DOWNSTREAM_CX_RTT",
    ),
    **_table(Kind.MILLISECONDS, "COMMON_DURATION", Args.REQUIRED),  # unit set by its 3rd arg
    # counters: uint, printed 0 (never '-') when there is nothing to count
    **_table(
        Kind.INTEGER,
        "RESPONSE_CODE UPSTREAM_REQUEST_ATTEMPT_COUNT CONNECTION_ID UPSTREAM_CONNECTION_ID ROUTE_RESOLUTION_COUNT"
        " PACKETS_RETRANSMITTED",
        unset="0",
    ),
    **_table(
        Kind.INTEGER,
        "ROUTE_RESOLUTION_TIME_US GRPC_STATUS_NUMBER UPSTREAM_LOCAL_PORT UPSTREAM_REMOTE_PORT DOWNSTREAM_REMOTE_PORT"
        " DOWNSTREAM_DIRECT_REMOTE_PORT DOWNSTREAM_LOCAL_PORT DOWNSTREAM_DIRECT_LOCAL_PORT",
    ),
    **_table(
        Kind.BYTES,
        "BYTES_RECEIVED BYTES_SENT REQUEST_HEADERS_BYTES RESPONSE_HEADERS_BYTES RESPONSE_TRAILERS_BYTES"
        " UPSTREAM_WIRE_BYTES_SENT UPSTREAM_WIRE_BYTES_RECEIVED UPSTREAM_HEADER_BYTES_SENT"
        " UPSTREAM_HEADER_BYTES_RECEIVED UPSTREAM_DECOMPRESSED_HEADER_BYTES_SENT"
        " UPSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED DOWNSTREAM_WIRE_BYTES_SENT"
        " DOWNSTREAM_WIRE_BYTES_RECEIVED DOWNSTREAM_HEADER_BYTES_SENT DOWNSTREAM_HEADER_BYTES_RECEIVED"
        " DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_SENT DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED"
        " BYTES_RETRANSMITTED",
        unset="0",
    ),
    **_table(
        Kind.TIMESTAMP,
        "START_TIME START_TIME_LOCAL EMIT_TIME EMIT_TIME_LOCAL DOWNSTREAM_PEER_CERT_V_START"
        " DOWNSTREAM_PEER_CERT_V_END UPSTREAM_PEER_CERT_V_START UPSTREAM_PEER_CERT_V_END",
        Args.OPTIONAL,
    ),
    **_table(Kind.FLAGS, "RESPONSE_FLAGS RESPONSE_FLAGS_LONG"),
    **_table(
        Kind.ADDRESS,
        "UPSTREAM_HOST UPSTREAM_LOCAL_ADDRESS UPSTREAM_REMOTE_ADDRESS DOWNSTREAM_REMOTE_ADDRESS"
        " DOWNSTREAM_DIRECT_REMOTE_ADDRESS DOWNSTREAM_LOCAL_ADDRESS DOWNSTREAM_DIRECT_LOCAL_ADDRESS",
    ),
    **_table(
        Kind.ADDRESS,
        "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
        " DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT"
        " DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT",
        Args.OPTIONAL,  # the argument is a CIDR mask length
    ),
    **_table(
        Kind.STRING,
        "CONNECTION_TERMINATION_DETAILS UPSTREAM_TRANSPORT_FAILURE_REASON"
        " DOWNSTREAM_TRANSPORT_FAILURE_REASON UPSTREAM_LOCAL_CLOSE_REASON DOWNSTREAM_LOCAL_CLOSE_REASON"
        " UPSTREAM_DETECTED_CLOSE_TYPE DOWNSTREAM_DETECTED_CLOSE_TYPE ROUTE_NAME VIRTUAL_CLUSTER_NAME"
        " FILTER_CHAIN_NAME LISTENER_NAME ACCESS_LOG_TYPE PROTOCOL UPSTREAM_PROTOCOL"
        " UPSTREAM_HOST_NAME UPSTREAM_HOST_NAME_WITHOUT_PORT UPSTREAM_HOSTS_ATTEMPTED"
        " UPSTREAM_HOSTS_ATTEMPTED_WITHOUT_PORT UPSTREAM_HOST_NAMES_ATTEMPTED"
        " UPSTREAM_HOST_NAMES_ATTEMPTED_WITHOUT_PORT UPSTREAM_CONNECTION_IDS_ATTEMPTED UPSTREAM_CLUSTER"
        " UPSTREAM_CLUSTER_RAW UPSTREAM_TLS_VERSION UPSTREAM_TLS_CIPHER"
        " UPSTREAM_TLS_SESSION_ID UPSTREAM_TLS_GROUP UPSTREAM_PEER_SUBJECT UPSTREAM_PEER_ISSUER"
        " UPSTREAM_PEER_CERT UPSTREAM_PEER_URI_SAN UPSTREAM_PEER_DNS_SAN UPSTREAM_PEER_IP_SAN"
        " UPSTREAM_LOCAL_URI_SAN UPSTREAM_LOCAL_DNS_SAN UPSTREAM_LOCAL_IP_SAN UPSTREAM_SERVER_NAME"
        " DOWNSTREAM_TLS_VERSION DOWNSTREAM_TLS_CIPHER DOWNSTREAM_TLS_SESSION_ID DOWNSTREAM_TLS_GROUP"
        " DOWNSTREAM_PEER_SUBJECT DOWNSTREAM_PEER_ISSUER DOWNSTREAM_PEER_SERIAL DOWNSTREAM_PEER_CERT"
        " DOWNSTREAM_PEER_FINGERPRINT_1 DOWNSTREAM_PEER_FINGERPRINT_256 DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1"
        " DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256 DOWNSTREAM_PEER_CHAIN_SERIALS"
        " DOWNSTREAM_PEER_ISSUER_FINGERPRINT_256 DOWNSTREAM_PEER_ISSUER_SERIAL DOWNSTREAM_PEER_URI_SAN"
        " DOWNSTREAM_PEER_DNS_SAN DOWNSTREAM_PEER_IP_SAN DOWNSTREAM_PEER_EMAIL_SAN"
        " DOWNSTREAM_PEER_OTHERNAME_SAN DOWNSTREAM_LOCAL_SUBJECT DOWNSTREAM_LOCAL_URI_SAN"
        " DOWNSTREAM_LOCAL_DNS_SAN DOWNSTREAM_LOCAL_IP_SAN DOWNSTREAM_LOCAL_EMAIL_SAN"
        " DOWNSTREAM_LOCAL_OTHERNAME_SAN TLS_JA3_FINGERPRINT TLS_JA4_FINGERPRINT STREAM_ID UNIQUE_ID"
        " TRACE_ID SPAN_ID HOSTNAME",
    ),
    # empty, not "-", when there is nothing (LOCAL_REPLY_BODY even for local replies, 1.40)
    **_table(
        Kind.STRING,
        "LOCAL_REPLY_BODY CUSTOM_FLAGS UPSTREAM_REMOTE_ADDRESS_ENDPOINT_ID DOWNSTREAM_LOCAL_ADDRESS_ENDPOINT_ID"
        " DOWNSTREAM_DIRECT_LOCAL_ADDRESS_ENDPOINT_ID",
        unset="",
    ),
    **_table(Kind.STRING, "RESPONSE_CODE_DETAILS REQUESTED_SERVER_NAME GRPC_STATUS", Args.OPTIONAL),
    **_table(Kind.STRING, "PATH QUERY_PARAMS", Args.OPTIONAL_LEN),
    **_table(
        Kind.STRING,
        "REQ REQUEST_HEADER RESP RESPONSE_HEADER TRAILER RESPONSE_TRAILER STREAM_INFO_REQ ENVIRONMENT"
        " QUERY_PARAM CEL COALESCE REQ_WITHOUT_QUERY",
        Args.REQUIRED_LEN,
    ),
    **_table(
        Kind.JSON,
        "DYNAMIC_METADATA METADATA FILTER_STATE UPSTREAM_FILTER_STATE TYPED_CEL",
        Args.REQUIRED_LEN,
    ),
    **_table(Kind.JSON, "CLUSTER_METADATA UPSTREAM_METADATA", Args.REQUIRED),
}

# Operators whose text never holds whitespace (Envoy writes "_" for spaces in details and SNI;
# cluster and route names are Kubernetes-style): a tighter pattern keeps look-alike formats apart.
NO_WHITESPACE = frozenset(
    {"RESPONSE_CODE_DETAILS", "UPSTREAM_CLUSTER", "UPSTREAM_CLUSTER_RAW", "REQUESTED_SERVER_NAME", "PROTOCOL"}
)

# Aliases print the same thing; naming uses the short form (REQUEST_HEADER(X) → req_x).
ALIASES = {"REQUEST_HEADER": "REQ", "RESPONSE_HEADER": "RESP", "RESPONSE_TRAILER": "TRAILER"}
HEADER_OPERATORS = frozenset({"REQ", "RESP", "TRAILER", "STREAM_INFO_REQ", "REQ_WITHOUT_QUERY"})

# Istio's JSON keys, so text and JSON logs give one schema (architecture.md, rule 1).
ISTIO_NAMES: dict[tuple[str, str | None], str] = {
    ("START_TIME", None): "start_time",
    ("ROUTE_NAME", None): "route_name",
    ("REQ", ":METHOD"): "method",
    ("REQ", "X-ENVOY-ORIGINAL-PATH?:PATH"): "path",
    ("REQ", ":PATH"): "path",
    ("PROTOCOL", None): "protocol",
    ("RESPONSE_CODE", None): "response_code",
    ("RESPONSE_FLAGS", None): "response_flags",
    ("RESPONSE_CODE_DETAILS", None): "response_code_details",
    ("CONNECTION_TERMINATION_DETAILS", None): "connection_termination_details",
    ("BYTES_RECEIVED", None): "bytes_received",
    ("BYTES_SENT", None): "bytes_sent",
    ("DURATION", None): "duration",
    ("RESP", "X-ENVOY-UPSTREAM-SERVICE-TIME"): "upstream_service_time",
    ("REQ", "X-FORWARDED-FOR"): "x_forwarded_for",
    ("REQ", "USER-AGENT"): "user_agent",
    ("REQ", "X-REQUEST-ID"): "request_id",
    ("REQ", ":AUTHORITY"): "authority",
    ("UPSTREAM_HOST", None): "upstream_host",
    ("UPSTREAM_CLUSTER", None): "upstream_cluster",
    ("UPSTREAM_CLUSTER_RAW", None): "upstream_cluster",
    ("UPSTREAM_LOCAL_ADDRESS", None): "upstream_local_address",
    ("DOWNSTREAM_LOCAL_ADDRESS", None): "downstream_local_address",
    ("DOWNSTREAM_REMOTE_ADDRESS", None): "downstream_remote_address",
    ("REQUESTED_SERVER_NAME", None): "requested_server_name",
    ("UPSTREAM_TRANSPORT_FAILURE_REASON", None): "upstream_transport_failure_reason",
}

# Header values that are numbers by contract: Envoy sets them itself.
TYPED_HEADERS: dict[tuple[str, str], Kind] = {
    ("RESP", "X-ENVOY-UPSTREAM-SERVICE-TIME"): Kind.MILLISECONDS,
    ("REQ", "X-ENVOY-ATTEMPT-COUNT"): Kind.INTEGER,
    ("RESP", "X-ENVOY-ATTEMPT-COUNT"): Kind.INTEGER,
}


def lookup(name: str) -> Operator:
    """The operator called ``name``; an unknown one becomes a string operator marked unknown."""
    return OPERATORS.get(name) or Operator(name, Kind.STRING, Args.OPTIONAL_LEN, known=False)


def canonical_arg(name: str, arg: str | None) -> str | None:
    """Header names are case-insensitive in Envoy: normalise them for lookups."""
    if arg is not None and ALIASES.get(name, name) in HEADER_OPERATORS:
        return arg.upper()
    if name in ("START_TIME",):  # the strftime argument does not change what is logged
        return None
    return arg


def kind_of(name: str, arg: str | None) -> Kind:
    """The kind of one command, including the few headers that are typed by contract."""
    base = ALIASES.get(name, name)
    typed = TYPED_HEADERS.get((base, canonical_arg(name, arg) or ""))
    return typed or lookup(name).kind


def column_name(name: str, arg: str | None) -> str:
    """Column name for a command (architecture.md: Istio's key, else snake-cased name and argument)."""
    base = ALIASES.get(name, name)
    istio = ISTIO_NAMES.get((base, canonical_arg(name, arg)))
    if istio:
        return istio
    stem = base.lower()
    if arg:
        words = re.sub(r"[^0-9a-z]+", "_", arg.lower()).strip("_")
        if words:
            stem = f"{stem}_{words}"
    return stem
