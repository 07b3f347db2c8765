"""Helpers for the forward tests: a receiver on 127.0.0.1 that collects frames, the npm client."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl

from meshlog.forward.server import ForwardServer
from tests.conftest import SHARED

SAMPLES = SHARED / "samples" / "streams"
FORWARD_SAMPLES = SAMPLES / "forward"
NODE_DIR = Path(__file__).resolve().parent / "node"
# A kubelet symlink name as fluent-bit's `Tag kube.*` makes it (the 64-hex id is made up).
K8S_TAG = "kube.var.log.containers.sleep-7656cf8794-7hkmv_default_istio-proxy-" + "896d" * 16 + ".log"


class Collector:
    """The ``on_lines`` callback of a test receiver: keeps every frame, lets a test wait for N lines."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self._cond = threading.Condition()

    def __call__(self, frame: pl.DataFrame) -> None:
        with self._cond:
            self.frames.append(frame)
            self._cond.notify_all()

    @property
    def lines(self) -> pl.DataFrame:
        with self._cond:
            return pl.concat(self.frames) if self.frames else pl.DataFrame()

    def wait_lines(self, n: int, timeout: float = 10.0) -> pl.DataFrame:
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(f.height for f in self.frames) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"waited {timeout} s for {n} lines, got {sum(f.height for f in self.frames)}")
                self._cond.wait(left)
        return self.lines


def start_receiver(**options: Any) -> tuple[ForwardServer, Collector, list[str]]:
    """A receiver on 127.0.0.1, an ephemeral port; returns it, its frames and its problem lines."""
    collector = Collector()
    problems: list[str] = []
    server = ForwardServer(collector, host="127.0.0.1", port=0, on_problem=problems.append, **options)
    server.start()
    return server, collector, problems


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def recv_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def node_send(config: dict[str, Any], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``node/send.js`` (npm ``@fluent-org/logger``) with a JSON config."""
    node = shutil.which("node")
    assert node, "node is needed for the @fluent-org/logger tests (scripts/test.sh installs the package)"
    assert (NODE_DIR / "node_modules" / "@fluent-org" / "logger").is_dir(), (
        "run `npm install --prefix tests/forward/node` (scripts/test.sh does)"
    )
    result = subprocess.run(
        [node, str(NODE_DIR / "send.js"), json.dumps(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=NODE_DIR,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result
