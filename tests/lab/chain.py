"""Two real Envoys in a chain, like one hop of an Istio mesh (for ``meshlog trace``).

    client ──▶ Envoy A ──────────────────────────▶ Envoy B ─────────────────▶ HttpUpstream
               "productpage" sidecar, outbound      "reviews" sidecar, inbound
               cluster outbound|9080||reviews...    cluster inbound|9080||
               Istio default retry policy           no retries (as Istio inbound)

Each Envoy writes one access log (any text format, one line per record) to its own file.
A's HCM keeps the incoming ``x-request-id`` (HCM default ``generate_request_id``; the
request is not an edge request because ``use_remote_address`` is false, as in Istio
sidecars) and forwards it, so B logs the same id; on retries A re-sends the same headers.

Deviations from a real mesh, all loopback: plain HTTP/1.1 between A and B (no mTLS, so
``%REQUESTED_SERVER_NAME%`` is ``-``), STATIC clusters instead of EDS/ORIGINAL_DST, B's
upstream bind is 127.0.0.1 (Istio: 127.0.0.6), and B's inbound route table lists the
app's paths instead of Istio's catch-all ``/`` so that a path A forwards can be a 404 NR
at B.

B starts first (A's cluster needs B's ephemeral port, read back from B's admin), then A.
Every request waits until both logs hold the records it causes, so record order in each
file equals send order.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .envoy import (
    _BASE_IDS,
    _LIVE,
    _PRCTL,
    ISTIO_RETRY_POLICY,
    EnvoyError,
    RequestSpec,
    _addr,
    _count_lines,
    _die_with_parent,
    admin_get,
    envoy_command,
    find_envoy,
    stop_envoy,
)
from .managed import Managed
from .upstream import HttpUpstream

__all__ = [
    "CHAIN_CASES",
    "CLIENT_CLUSTER",
    "SERVER_CLUSTER",
    "ChainCase",
    "EnvoyChain",
    "Hop",
    "Outcome",
    "drive_chain",
    "expected_chain",
]

SERVICE = "reviews"
SERVICE_PORT = 9080
FQDN = f"{SERVICE}.default.svc.cluster.local"
AUTHORITY = f"{SERVICE}:{SERVICE_PORT}"  # what productpage sends: http://reviews:9080/...
CLIENT_CLUSTER = f"outbound|{SERVICE_PORT}||{FQDN}"
SERVER_CLUSTER = f"inbound|{SERVICE_PORT}||"
DECORATOR = f"{FQDN}:{SERVICE_PORT}/*"
# B's inbound route table: these prefixes only (Istio would have a catch-all "/").
SERVER_PREFIXES = ("/ok", "/slow", "/status/")

_FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
# A VirtualService route on A: requests with this header get a fixed delay before leaving A.
FAULT_HEADER = "x-meshlog-fault"
FAULT_DELAY_MS = 100


# ---------------------------------------------------------------------------- bootstrap


def _listener(
    name: str, stat_prefix: str, route_config: dict[str, Any], log_path: Path, fmt: str, *, fault: bool = False
) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    if fault:  # Istio's outbound chain has the fault filter; VirtualService faults configure it per route
        filters.append({"name": "envoy.filters.http.fault", "typed_config": {"@type": _FAULT}})
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}})
    hcm = {
        "stat_prefix": stat_prefix,
        "use_remote_address": False,  # Istio sidecars; also keeps the incoming x-request-id
        "route_config": route_config,
        "http_filters": filters,
        "access_log": [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": _FILE_LOG,
                    "path": str(log_path),
                    "log_format": {"text_format_source": {"inline_string": fmt}},
                },
            }
        ],
    }
    return {
        "name": name,
        "address": _addr("127.0.0.1", 0),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": {"@type": _HCM, **hcm}}
                ]
            }
        ],
    }


def _cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "alt_stat_name": name + ";",  # as the single-Envoy lab (Istio >= 1.23)
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _addr("127.0.0.1", port)}}]}],
        },
    }


def _bootstrap(node: str, listener: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any]:
    return {
        "node": {"id": f"sidecar~127.0.0.1~{node}.default~default.svc.cluster.local", "cluster": f"{node}.default"},
        "admin": {"address": _addr("127.0.0.1", 0)},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


def client_bootstrap(log_path: Path, fmt: str, server_port: int) -> dict[str, Any]:
    """Envoy A: productpage's outbound listener for reviews:9080, Istio's default retries."""
    route_config = {
        "name": str(SERVICE_PORT),
        "validate_clusters": False,
        "virtual_hosts": [
            {
                "name": f"{FQDN}:{SERVICE_PORT}",
                "domains": [FQDN, f"{FQDN}:{SERVICE_PORT}", SERVICE, AUTHORITY],
                "routes": [
                    {
                        "name": "fault-delay",
                        "match": {
                            "prefix": "/",
                            "headers": [{"name": FAULT_HEADER, "string_match": {"exact": "delay"}}],
                        },
                        "route": {"cluster": CLIENT_CLUSTER, "timeout": "0s", "retry_policy": ISTIO_RETRY_POLICY},
                        "decorator": {"operation": DECORATOR},
                        "typed_per_filter_config": {
                            "envoy.filters.http.fault": {
                                "@type": _FAULT,
                                "delay": {
                                    "fixed_delay": f"{FAULT_DELAY_MS / 1000}s",
                                    "percentage": {"numerator": 100, "denominator": "HUNDRED"},
                                },
                            }
                        },
                    },
                    {
                        "name": "default",
                        "match": {"prefix": "/"},
                        "route": {"cluster": CLIENT_CLUSTER, "timeout": "0s", "retry_policy": ISTIO_RETRY_POLICY},
                        "decorator": {"operation": DECORATOR},
                    },
                ],
            }
        ],
    }
    listener = _listener(
        f"0.0.0.0_{SERVICE_PORT}", f"outbound_0.0.0.0_{SERVICE_PORT}", route_config, log_path, fmt, fault=True
    )
    return _bootstrap("productpage-v1-lab", listener, _cluster(CLIENT_CLUSTER, server_port))


def server_bootstrap(log_path: Path, fmt: str, app_port: int) -> dict[str, Any]:
    """Envoy B: reviews' inbound listener, cluster ``inbound|9080||``, no retry policy."""
    route_config = {
        "name": SERVER_CLUSTER,
        "validate_clusters": False,
        "virtual_hosts": [
            {
                "name": f"inbound|http|{SERVICE_PORT}",
                "domains": ["*"],
                "routes": [
                    {
                        "name": "default",
                        "match": {"prefix": prefix},
                        "route": {"cluster": SERVER_CLUSTER, "timeout": "0s"},
                        "decorator": {"operation": DECORATOR},
                    }
                    for prefix in SERVER_PREFIXES
                ],
            }
        ],
    }
    listener = _listener("virtualInbound", f"inbound_0.0.0.0_{SERVICE_PORT}", route_config, log_path, fmt)
    return _bootstrap("reviews-v1-lab", listener, _cluster(SERVER_CLUSTER, app_port))


# ---------------------------------------------------------------------------- process


class _Envoy:
    """One Envoy process for a given bootstrap; ``port`` is its (single) listener's port."""

    def __init__(self, name: str, tmp: Path, binary: str, start_timeout: float) -> None:
        self.name = name
        self.dir = tmp / name
        self.dir.mkdir()
        self.binary = binary
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin = ""
        self.port = 0

    def start(self, config: dict[str, Any]) -> None:
        (self.dir / "envoy.json").write_text(json.dumps(config, indent=1))
        admin_path = self.dir / "admin.txt"
        base_id = (os.getpid() * 64 + next(_BASE_IDS)) % 2_000_000_000
        with (self.dir / "envoy.stderr").open("wb") as err:
            self.proc = subprocess.Popen(
                envoy_command(self.binary, self.dir / "envoy.json", base_id, admin_path),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                preexec_fn=_die_with_parent if _PRCTL is not None else None,  # only prctl() in the child (see envoy.py)
            )
        _LIVE.add(self.proc)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvoyError(f"envoy {self.name} exited with {self.proc.returncode}:\n{self.stderr_tail()}")
            if not self.admin and admin_path.exists() and admin_path.read_text().strip():
                self.admin = "http://" + admin_path.read_text().strip()
            if self.admin and self._admin_get("/ready").strip() == "LIVE":
                statuses = json.loads(self._admin_get("/listeners?format=json"))["listener_statuses"]
                self.port = int(statuses[0]["local_address"]["socket_address"]["port_value"])
                return
            time.sleep(0.01)
        raise EnvoyError(f"envoy {self.name} not ready after {self.start_timeout}s:\n{self.stderr_tail()}")

    def stderr_tail(self) -> str:
        return (self.dir / "envoy.stderr").read_text(errors="replace")[-3000:]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _admin_get(self, path: str) -> str:
        return admin_get(self.admin, path)

    def stop(self) -> None:
        """SIGTERM (flushes access logs), SIGKILL after 5 s."""
        proc, self.proc = self.proc, None
        stop_envoy(proc)


@dataclass
class Hop:
    """One Envoy of the chain: its log file and how many records it must hold so far."""

    envoy: _Envoy
    log: Path
    records: int = 0


class EnvoyChain(Managed):
    """HttpUpstream + Envoy B (server sidecar, inbound) + Envoy A (client sidecar, outbound).

    >>> with EnvoyChain(ISTIO) as chain:
    ...     chain.send(RequestSpec("GET", "/ok", (("x-request-id", rid),), b"", AUTHORITY), server_lines=1)
    ...     client, server = chain.stop()

    ``fmt`` must write exactly one newline-terminated line per record (line counting).
    """

    def __init__(self, fmt: str, *, envoy: str | None = None, start_timeout: float = 10.0) -> None:
        if not fmt.endswith("\n") or fmt.count("\n") != 1:
            raise ValueError("format must write one newline-terminated line per record")
        self.fmt = fmt
        self._envoy_bin = envoy
        self._start_timeout = start_timeout
        self._stack = contextlib.ExitStack()
        self.upstream = HttpUpstream()
        self.client: Hop
        self.server: Hop

    def _start(self) -> None:
        binary = self._envoy_bin or find_envoy()
        tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="meshlog-chain-")))
        self._stack.enter_context(self.upstream)
        b = _Envoy("server", tmp, binary, self._start_timeout)
        self._stack.callback(b.stop)  # registered before start: never leaks a half-started Envoy
        self.server = Hop(b, tmp / "server.log")
        b.start(server_bootstrap(self.server.log, self.fmt, self.upstream.port))
        a = _Envoy("client", tmp, binary, self._start_timeout)
        self._stack.callback(a.stop)  # stops first (LIFO): A, then B, then the upstream
        self.client = Hop(a, tmp / "client.log")
        a.start(client_bootstrap(self.client.log, self.fmt, b.port))

    def wait_logged(self, timeout: float = 5.0) -> None:
        """Wait until each hop's log holds the records expected so far."""
        deadline = time.monotonic() + timeout
        for hop in (self.server, self.client):
            while (have := _count_lines(hop.log)) < hop.records:
                if not hop.envoy.alive():
                    raise EnvoyError(f"envoy {hop.envoy.name} died:\n{hop.envoy.stderr_tail()}")
                if time.monotonic() > deadline:
                    raise EnvoyError(f"{hop.envoy.name}: expected {hop.records} records, have {have} after {timeout}s")
                time.sleep(0.002)

    def send(self, spec: RequestSpec, *, client_lines: int = 1, server_lines: int = 1) -> int:
        """Send one request to Envoy A on a fresh connection; wait for both hops' records."""
        self.client.records += client_lines
        self.server.records += server_lines
        with socket.create_connection(("127.0.0.1", self.client.envoy.port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(spec.to_bytes())
            resp = http.client.HTTPResponse(sock, method=spec.method)
            try:
                resp.begin()
                resp.read()
                status = resp.status
            except (http.client.HTTPException, OSError):
                status = 0
            finally:
                resp.close()
        self.wait_logged()
        return status

    def _read(self) -> tuple[bytes, bytes]:
        def read(hop: Hop) -> bytes:
            return hop.log.read_bytes() if hop.log.exists() else b""

        return read(self.client), read(self.server)

    def stop(self) -> tuple[bytes, bytes]:
        """Stop both Envoys (A first; final flush) and return (client log, server log) bytes."""
        self.wait_logged()
        self.client.envoy.stop()
        self.server.envoy.stop()
        return self._read()


# ---------------------------------------------------------------------------- traffic

_NS = uuid.UUID("6d657368-6c6f-6700-8000-00000000c4a1")  # fixed namespace -> stable request ids


@dataclass(frozen=True)
class Outcome:
    """What one hop logs for one request it handled (configured, not observed)."""

    code: int
    flags: frozenset[str] = frozenset()
    details: str = "via_upstream"
    route: str | None = "default"  # None: no route matched (NR), so no cluster either
    min_duration_ms: int = 0  # %DURATION% is at least this (sleeps/delays on the path)


@dataclass(frozen=True)
class ChainCase:
    """One request sent to A, what A logs (one line) and what B logs (one line per attempt)."""

    name: str
    path: str
    client: Outcome
    server: tuple[Outcome, ...]
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def request_id(self) -> str:
        return str(uuid.uuid5(_NS, self.name))

    @property
    def user_agent(self) -> str:
        return f"meshlog-chain/{self.name}"

    def spec(self) -> RequestSpec:
        headers = (("user-agent", self.user_agent), ("x-request-id", self.request_id), *self.headers)
        return RequestSpec("GET", self.path, headers, b"", AUTHORITY)


SLOW_MS = 150
_UPSTREAM_503 = Outcome(503)

CHAIN_CASES: tuple[ChainCase, ...] = (
    ChainCase("ok", "/ok", Outcome(200), (Outcome(200),)),
    # The app sleeps: both hops take >= SLOW_MS, A's duration includes B's.
    ChainCase(
        "slow",
        f"/slow?ms={SLOW_MS}",
        Outcome(200, min_duration_ms=SLOW_MS),
        (Outcome(200, min_duration_ms=SLOW_MS),),
    ),
    # The app answers 503; B relays it (Istio inbound has no retries); A retries twice
    # (Istio default: retriable_status_codes [503], num_retries 2) -> B logs 3 lines.
    ChainCase("retry-503", "/status/503", Outcome(503, frozenset({"URX"})), (_UPSTREAM_503,) * 3),
    # A routes every path to B; B's inbound table has no /nope: local 404 NR at B, A relays it.
    ChainCase(
        "nr-at-server",
        "/nope",
        Outcome(404),
        (Outcome(404, frozenset({"NR"}), "route_not_found", route=None),),
    ),
    # VirtualService fault on A (fixed delay before forwarding): A's duration exceeds B's
    # by >= FAULT_DELAY_MS, and B's start time is that much later than A's.
    ChainCase(
        "delay-at-client",
        "/ok",
        Outcome(200, frozenset({"DI"}), route="fault-delay", min_duration_ms=FAULT_DELAY_MS),
        (Outcome(200),),
        headers=((FAULT_HEADER, "delay"),),
    ),
)


def _hop(outcome: Outcome, cluster: str) -> dict[str, Any]:
    return {
        "response_code": outcome.code,
        "response_flags": sorted(outcome.flags),
        "response_code_details": outcome.details,
        "route_name": outcome.route,
        "upstream_cluster": cluster if outcome.route is not None else None,
        "min_duration_ms": outcome.min_duration_ms,
    }


def expected_chain(case: ChainCase) -> dict[str, Any]:
    """The expected.json entry for ``case`` (built from the table above, never from a log)."""
    return {
        "case": case.name,
        "method": "GET",
        "path": case.path,
        "authority": AUTHORITY,
        "user_agent": case.user_agent,
        "client_lines": 1,
        "server_lines": len(case.server),
        "client": _hop(case.client, CLIENT_CLUSTER),
        "server": [_hop(s, SERVER_CLUSTER) for s in case.server],
    }


def drive_chain(chain: EnvoyChain, cases: tuple[ChainCase, ...] = CHAIN_CASES) -> dict[str, dict[str, Any]]:
    """Send ``cases`` in order; return ``{request_id: expected entry}`` in send order."""
    out: dict[str, dict[str, Any]] = {}
    for case in cases:
        status = chain.send(case.spec(), client_lines=1, server_lines=len(case.server))
        if status != case.client.code:
            raise AssertionError(f"{case.name}: client got HTTP {status}, configured {case.client.code}")
        out[case.request_id] = expected_chain(case)
    return out
