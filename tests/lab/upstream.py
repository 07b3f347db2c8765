"""Loopback upstreams for the Envoy lab: an HTTP/1.1 app and a TCP echo server.

Both bind 127.0.0.1 on an ephemeral port and are context managers, so a test never
collides with another run and never leaves a listening socket behind.

HTTP endpoints (anything else answers 404):

* ``/ok``            200 ``ok\\n``
* ``/status/<code>`` that status, body ``status <code>\\n``
* ``/slow?ms=N``     sleeps N ms or until ``release(request_id)``, then 200 ``slow\\n``
* ``/reset``         closes the connection without answering (Envoy logs ``UC``)
* ``/echo``          200 with the request body echoed back

Every request's ``x-request-id`` is recorded so a driver can wait until a request has
really reached the upstream (needed to make the circuit-breaker and client-disconnect
cases deterministic).
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit

__all__ = ["ClosedPort", "HttpUpstream", "TcpEcho"]


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive like a real app; without TCP_NODELAY every keep-alive
    # response costs ~40 ms (Nagle + delayed ACK) and pollutes durations.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    # Buffered writer: _reply's flush sends status, headers and body in one write, so a
    # proxy never holds the headers without the body. Otherwise a retrying Envoy (which
    # resets an attempt as soon as it sees a retriable 503's headers) races the body, and
    # the Envoy in between logs that attempt as DC instead of via_upstream (tests/lab/chain.py).
    wbufsize = 1 << 16
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr request log."""

    def _body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, code: int, body: bytes) -> None:
        try:
            self.send_response(code)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # Envoy gave up on us (timeout / downstream gone): fine.
            self.close_connection = True

    def _handle(self) -> None:
        body = self._body()
        self.server.record(self.headers.get("x-request-id"))
        url = urlsplit(self.path)
        path = url.path
        if path == "/ok":
            self._reply(200, b"ok\n")
        elif path == "/echo":
            self._reply(200, body)
        elif path.startswith("/status/") and path[8:].isdigit():
            code = int(path[8:])
            self._reply(code, f"status {code}\n".encode())
        elif path == "/slow":
            ms = int(parse_qs(url.query).get("ms", ["100"])[0])
            if not self.server.sleep(self.headers.get("x-request-id"), ms / 1000):
                self.close_connection = True  # upstream shutting down: just hang up
                return
            self._reply(200, b"slow\n")
        elif path == "/reset":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._reply(404, b"not found\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stopping = threading.Event()
        self._seen: set[str] = set()
        self._released: set[str] = set()
        self._cond = threading.Condition()
        self._conns: set[socket.socket] = set()

    def record(self, request_id: str | None) -> None:
        if request_id:
            with self._cond:
                self._seen.add(request_id)
                self._cond.notify_all()

    def sleep(self, request_id: str | None, seconds: float) -> bool:
        """Sleep until timeout or release(request_id); False if the server is stopping."""
        with self._cond:
            self._cond.wait_for(lambda: self.stopping.is_set() or request_id in self._released, seconds)
            return not self.stopping.is_set()

    def release(self, request_id: str) -> None:
        with self._cond:
            self._released.add(request_id)
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self.stopping.set()
            self._cond.notify_all()

    def wait_for(self, request_id: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: request_id in self._seen, timeout)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        self._conns.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        """Close keep-alive connections so no handler thread lingers on a read."""
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class HttpUpstream:
    """Threaded HTTP/1.1 keep-alive app on 127.0.0.1:<ephemeral>."""

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "upstream not started"
        return int(self._server.server_address[1])

    def wait_for_request(self, request_id: str, timeout: float = 5.0) -> bool:
        """Block until a request carrying this x-request-id reached the app."""
        assert self._server is not None
        return self._server.wait_for(request_id, timeout)

    def release(self, request_id: str) -> None:
        """End the ``/slow`` sleep of the request with this x-request-id now (answers 200)."""
        assert self._server is not None
        self._server.release(request_id)

    def __enter__(self) -> Self:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        server.shutdown()
        server.close_all()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class TcpEcho:
    """Plain TCP echo server (target of the tcp_proxy listener): byte counts are exact."""

    def __init__(self) -> None:
        self._server: _EchoServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "echo server not started"
        return int(self._server.server_address[1])

    def __enter__(self) -> Self:
        self._server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)


class ClosedPort:
    """A 127.0.0.1 port that refuses connections for as long as the context lives.

    The socket is bound but never listens, so connects get ECONNREFUSED and no other
    process can grab the port in between (unlike "find a free port and hope").
    """

    def __init__(self) -> None:
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        assert self._sock is not None, "closed port not reserved"
        return int(self._sock.getsockname()[1])

    def __enter__(self) -> Self:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
