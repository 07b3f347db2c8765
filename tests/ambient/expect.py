"""What the ambient fixtures hold, read from ``fixtures/ambient/records.json`` (the records every fixture
line was built from) and from the reference note (``fixtures/ambient/ztunnel-format.md``, read from
ztunnel's source), never from meshlog's output.

Everything here is plain Python over the records: counts, sums, percentiles (numpy's default linear
interpolation) and the error kind the note's §4 assigns to each error text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from meshlog.cli import app
from meshlog.parse import AccessLog
from meshlog.pipeline import Run, parse_paths
from tests.conftest import FIXTURES, PEER_DATA

AMBIENT = FIXTURES / "ambient"
TEXT = AMBIENT / "ztunnel.log"
JSON = AMBIENT / "ztunnel.json.log"
CRI = AMBIENT / "ztunnel.cri.log"
MIXED = AMBIENT / "ambient-mixed.kubectl.log"
KIALI_ZTUNNEL = PEER_DATA / "kiali" / "ztunnel.log"
SIDECAR = FIXTURES / "envoy" / "istio" / "access.log"

RECORDS: dict[str, Any] = json.loads((AMBIENT / "records.json").read_text(encoding="utf-8"))
ZTUNNEL: list[dict[str, Any]] = RECORDS["ztunnel"]
WAYPOINT: list[dict[str, Any]] = RECORDS["waypoint"]
MIXED_LINES: list[dict[str, Any]] = RECORDS["mixed"]  # file order: pod, container, kind, index, captured

# ztunnel's dotted keys (reference note §1.1, in ztunnel's field order) → meshlog's columns
COLUMN_OF = {
    "src.addr": "src_addr",
    "src.workload": "src_workload",
    "src.namespace": "src_namespace",
    "src.identity": "src_identity",
    "src.cluster": "src_cluster",
    "dst.addr": "dst_addr",
    "dst.hbone_addr": "dst_hbone_addr",
    "dst.service": "dst_service",
    "dst.workload": "dst_workload",
    "dst.namespace": "dst_namespace",
    "dst.identity": "dst_identity",
    "dst.cluster": "dst_cluster",
    "direction": "direction",
    "bytes_sent": "bytes_sent",
    "bytes_recv": "bytes_recv",
    "duration_ms": "duration",  # records.json keeps ztunnel's "13ms" as the integer 13
    "error": "error",
}
RECORD_COLUMNS = ["timestamp", "level", "event", *COLUMN_OF.values()]
PAIR = ("src.workload", "src.namespace", "dst.workload", "dst.service", "dst.namespace")


def utc(stamp: str) -> dt.datetime:
    """An RFC 3339 UTC time (ztunnel's 6 digits, kubelet's/containerd's up to 9) as a datetime, cut to
    the microsecond (a datetime holds no more)."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    at = dt.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    return at + dt.timedelta(microseconds=int((frac + "000000")[:6])) if frac else at


def event(record: dict[str, Any]) -> str:
    """``connection opened`` → ``opened`` (and complete, failed)."""
    return str(record["message"]).removeprefix("connection ")


def expected_row(record: dict[str, Any]) -> dict[str, Any]:
    """One connection row as records.json says it: every column, null where ztunnel left the key out."""
    fields = record["fields"]
    row: dict[str, Any] = {"timestamp": utc(record["time"]), "level": record["level"], "event": event(record)}
    row.update({column: fields.get(key) for key, column in COLUMN_OF.items()})
    return row


def ended(records: Iterable[dict[str, Any]] = ZTUNNEL) -> list[dict[str, Any]]:
    """The connections: ``connection complete`` and ``connection failed`` (an opened one is only counted)."""
    return [r for r in records if event(r) in ("complete", "failed")]


def field(record: dict[str, Any], key: str) -> Any:
    return record["fields"].get(key)


def other_ztunnel_lines() -> int:
    """The physical lines of ztunnel.log that are no access record (multi-line events count each line)."""
    return sum(len(o["lines"]) for o in RECORDS["ztunnel_other"])


def linear(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile with numpy's default (linear interpolation between the ranks around q·(n−1))."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (rank - lo) * (ordered[hi] - ordered[lo])


def spread(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50": linear(values, 0.5),
        "p90": linear(values, 0.9),
        "p99": linear(values, 0.99),
        "max": float(max(values)) if values else None,
    }


def short_service(fqdn: str) -> str:
    """``reviews.bookinfo.svc.cluster.local`` → ``reviews.bookinfo``: how the reports print a service."""
    return fqdn.removesuffix(".svc.cluster.local")


# -- the error kinds of the reference note §4 -----------------------------------------------------------
#
# The note's §4.4 lists decoder categories; meshlog's kinds (meshlog.ztunnel_errors.KINDS) are keyed
# differently. The category → kind key used here:
#   connect failure (refused/unreachable/reset) → "refused"
#   timeout → "timeout"; its NetworkPolicy form (§4.4: "→ NetworkPolicy hint") → "hbone-blocked"
#   TLS/mTLS handshake → "mtls"; identity/cert provisioning → "identity"
#   policy/authorization denial (incl. "http status: 401 Unauthorized", a remote denial) → "policy"
#   no healthy upstream / routing → "no-upstream"; its unknown-waypoint texts → "waypoint" (the
#     waypoint-specific kind meshlog splits out of routing)
#   upstream HTTP error: 503 = "upstream dial failed" (§4.4; §4.3: the destination could not reach the
#     app port) → "refused"
#   HTTP/2 / HBONE transport → "hbone"; DNS → "dns"; unknown source / identity → "identity"
#   mid-stream disconnect → "reset"; lifecycle: connection drain → "drain", anything else → "other"
EXPECTED_KIND: dict[str, str] = {
    # §4.4 connect failure: `io error: Connection refused`
    "io error: Connection refused (os error 111)": "refused",
    # §4.4 connect failure: `connection failed: Connection refused`
    "connection failed: Connection refused (os error 111)": "refused",
    # §4.4 timeout, the NetworkPolicy form (→ NetworkPolicy hint)
    "connection timed out, maybe a NetworkPolicy is blocking HBONE port 15008: deadline has elapsed": "hbone-blocked",
    # §4.4 timeout: `deadline has elapsed` (§4.2: the 10 s connect timeout)
    "io error: deadline has elapsed": "timeout",
    "connection failed: deadline has elapsed": "timeout",
    # §4.4 TLS/mTLS handshake: `tls handshake error:` (§4.3: inbound TLS accept failure)
    "tls handshake error: Custom { kind: InvalidData, error: NoCertificatesPresented }": "mtls",
    'tls handshake error: Custom { kind: UnexpectedEof, error: "tls handshake eof" }': "mtls",
    # §4.4 TLS/mTLS handshake: `invalid peer certificate` (§4.2: rustls behind `io error: `)
    "io error: invalid peer certificate: BadSignature": "mtls",
    # §4.4 identity/cert provisioning: `identity error:` (`signing gRPC error`, identity::Error's CA call,
    # §4.1); the "Connection refused" at its end is the CA's, inside the identity error: certificate
    # signing, not an unknown workload
    "identity error: signing gRPC error (The service is currently unavailable): error trying to connect: "
    "tcp connect error: Connection refused (os error 111)": "ca",
    # §4.4 policy/authorization denial: `connection closed due to policy rejection:`
    "connection closed due to policy rejection: allow policies exist, but none allowed": "policy",
    "connection closed due to policy rejection: explicitly denied by: bookinfo/deny-ratings": "policy",
    # §4.4 policy/authorization denial: `connection closed due to policy change`
    "connection closed due to policy change": "policy",
    # §4.4 policy/authorization denial: `http status: 401 Unauthorized` (remote denial)
    "http status: 401 Unauthorized": "policy",
    # §4.4 no healthy upstream / routing: `no healthy upstream:`
    "no healthy upstream: 10.96.69.42:80": "no-upstream",
    # §4.4 routing: `unknown waypoint` (meshlog's waypoint kind)
    "unknown waypoint: waypoint waypoint.bookinfo.svc.cluster.local not found": "waypoint",
    'unknown waypoint: waypoint GatewayAddress { destination: Hostname(NamespacedHostname { namespace: "bookinfo", '
    'hostname: "waypoint.bookinfo.svc.cluster.local" }), hbone_mtls_port: 15008 } not found': "waypoint",
    # §4.4 upstream HTTP error: 503 = upstream dial failed (a connect failure at the destination)
    "http status: 503 Service Unavailable": "refused",
    # §4.4 HTTP/2 / HBONE transport: `h2 failed:`
    "h2 failed: connection error detected: frame with invalid size": "hbone",
    'h2 failed: connection error received: not a result of an error (b"shutdown\\n")': "hbone",
    # §4.4 DNS: `dns lookup:`
    "dns lookup: Error performing lookup: Non-Existent Domain": "dns",
    # §4.4 unknown source / identity: `failed to fetch information about local workload:`, `ip mismatch:`
    "failed to fetch information about local workload: sleep.default (sleep-7656cf8794-nw2dq)": "identity",
    "ip mismatch: 10.244.0.99 != 10.244.0.28": "identity",
    # §4.4 mid-stream disconnect: `while closing connection: ` / `send: ` with `io error: ...`
    "while closing connection: send: io error: stream closed because of a broken pipe": "reset",
    # §4.4 mid-stream disconnect: `receive: ` with `client disconnected before all data was written`
    "receive: client disconnected before all data was written": "reset",
    # §4.4 lifecycle: `connection closed due to connection drain`
    "connection closed due to connection drain": "drain",
    # §4.4 lifecycle / other: `attempted recursive call to ourselves`
    "attempted recursive call to ourselves": "other",
}


def kind_of(record: dict[str, Any]) -> str | None:
    error = field(record, "error")
    return None if error is None else EXPECTED_KIND[error]


def errors_by_kind(records: Iterable[dict[str, Any]] = ZTUNNEL) -> Counter[str]:
    return Counter(k for r in ended(records) if (k := kind_of(r)) is not None)


def group(
    records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], tuple[Any, ...]]
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return out


# -- running meshlog the ways a user does ----------------------------------------------------------------

runner = CliRunner()


def summarize(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``meshlog summarize ARGS``: exit code, stdout, stderr."""
    result = runner.invoke(app, ["summarize", *map(str, args)], env=env)
    return result.exit_code, result.stdout, result.stderr


def summary(*args: str | Path) -> dict[str, Any]:
    """``meshlog summarize ARGS -o json`` (exit 0 asserted)."""
    code, out, err = summarize(*args, "-o", "json")
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def parse_file(path: Path) -> AccessLog:
    """As the CLI reads a file: the envelope and the format detected (none needed for ztunnel's lines)."""
    run = Run(None)
    logs = list(parse_paths([str(path)], run))
    assert not run.errors and not run.stream.problems
    return AccessLog.concat(logs, run.format)
