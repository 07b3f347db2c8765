"""Run a real Spark Connect server (from the PyPI ``pyspark`` package) on 127.0.0.1.

Why a real server: the Spark engine builds DataFrame plans that only Spark can check (Java
regex rather than Python's, ANSI casts, hidden ``_metadata`` columns, plan-only errors that
surface at ``collect()``), and Spark Connect is what meshlog talks to, so the tests drive the
same gRPC client against the same server as a user would.

Recipe: the pip package is a full SPARK_HOME (``bin/spark-submit``, ``jars/`` with
``spark-connect_2.13-*.jar``) but, unlike a Spark download, it has no
``sbin/start-connect-server.sh``. That script only runs ``spark-submit --class
SparkConnectServer`` under ``spark-daemon.sh`` (nohup + pid file), so we run the same
``spark-submit`` in the foreground: ``spark-class`` ``exec``s the JVM, so the process we start
*is* the server and dies with the test process (PR_SET_PDEATHSIG + atexit, shared with the
Envoy lab). The gRPC port is ``0`` and read back from the "Spark Connect server started at"
log line, so there is no free-port race. Every file Spark writes (logs, ``spark.local.dir``,
warehouse, ``java.io.tmpdir``, the cwd) is in one temp dir removed on exit; nothing goes to
the repo or $HOME, and no Maven download is needed (there is no network for one anyway).

Costs measured on the 2-core box (pyspark 4.1.4, OpenJDK 17, idle box): 4.5 s to a listening
port, 8 s until a first query has returned (JIT warm-up), then ~80 ms per trivial round trip;
server RSS 0.4 GB idle, ~1 GB after a few MB-sized jobs; SIGTERM stop 0.5 s. Start one per
test session (a module- or session-scoped fixture), not per test.

Call ``spark.stop()`` on the client session *before* ``stop()``: a Connect client whose
server is gone retries with backoff for many minutes (at interpreter exit too, when it
releases its session).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from .envoy import _LIVE, _PRCTL, _die_with_parent
from .managed import Managed

__all__ = ["DEFAULT_CONF", "SparkConnect", "SparkLabError", "find_spark_home"]

_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
# SparkConnectServer logs this once its gRPC listener is bound (Spark 4.x).
_STARTED = re.compile(r"Spark Connect server started at: (\S+):(\d+)")

# Small and quiet for a 2-core box and test-sized data; a test may override any of them.
DEFAULT_CONF: dict[str, str] = {
    "spark.master": "local[2]",
    "spark.driver.memory": "1g",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.connect.grpc.binding.address": "127.0.0.1",
    "spark.connect.grpc.binding.port": "0",
    # The pip package ships Hive jars; a Hive catalog would create a Derby metastore_db.
    "spark.sql.catalogImplementation": "in-memory",
    "spark.eventLog.enabled": "false",
}


class SparkLabError(RuntimeError):
    """pyspark/java missing, or the server exited or did not listen in time (message has its log)."""


def find_spark_home() -> Path:
    """The pyspark package directory, which is a complete SPARK_HOME with the Connect server jar."""
    # find_spec, not import: no JVM-free pyspark import cost here, and mypy needs no pyspark to check this file.
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise SparkLabError("pyspark is not installed (pip install 'pyspark[connect]==4.1.*')")
    home = Path(spec.origin).resolve().parent
    if not (home / "bin" / "spark-submit").exists() or not list((home / "jars").glob("spark-connect_*.jar")):
        raise SparkLabError(f"{home} has no bin/spark-submit or jars/spark-connect_*.jar (not a pip pyspark 4.x?)")
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (java_home and (Path(java_home) / "bin" / "java").exists()):
        raise SparkLabError(
            "java not found (nor JAVA_HOME); scripts/test.sh installs it with "
            "`apt-get install -y --no-install-recommends openjdk-17-jre-headless`"
        )
    return home


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return ""


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class SparkConnect(Managed):
    """One Spark Connect server in a temp dir.

    >>> with SparkConnect() as sc:                       # or: url = sc.start(); ...; sc.stop()
    ...     spark = SparkSession.builder.remote(sc.url).getOrCreate()
    ...     spark.read.text(str(path)).count()

    ``conf`` entries are added to / override ``DEFAULT_CONF`` (passed as ``--conf k=v``).
    """

    def __init__(self, conf: Mapping[str, str] | None = None, *, start_timeout: float = 120.0) -> None:
        self.conf = {**DEFAULT_CONF, **(conf or {})}
        self._start_timeout = start_timeout
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen[bytes] | None = None
        self.tmp = Path()
        self.log_path = Path()
        self.url = ""  # "sc://127.0.0.1:PORT" once started
        self.timings: dict[str, float] = {}  # seconds per phase: start, stop

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> str:
        """Start the server (as ``with`` does) and return its ``sc://`` URL; pair with ``stop()``."""
        self.__enter__()
        return self.url

    def _start(self) -> None:
        home = find_spark_home()
        self.tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="meshlog-spark-")))
        for sub in ("conf", "local", "warehouse", "java-tmp", "logs"):
            (self.tmp / sub).mkdir()
        # JVM scratch (Netty native libs, etc.) and a UTC JVM clock whatever the box's TZ; a caller's
        # own extraJavaOptions are appended, not a replacement.
        java_opts = f"-Djava.io.tmpdir={self.tmp / 'java-tmp'} -Duser.timezone=UTC"
        java_opts = f"{java_opts} {self.conf.get('spark.driver.extraJavaOptions', '')}".strip()
        conf = {
            "spark.local.dir": str(self.tmp / "local"),
            "spark.sql.warehouse.dir": str(self.tmp / "warehouse"),
            **self.conf,
            "spark.driver.extraJavaOptions": java_opts,
        }
        env = {
            **os.environ,
            "SPARK_HOME": str(home),
            "SPARK_CONF_DIR": str(self.tmp / "conf"),  # empty: no spark-defaults.conf from anywhere else
            "SPARK_LOG_DIR": str(self.tmp / "logs"),
            "SPARK_PID_DIR": str(self.tmp),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(self.tmp / "local"),
            # Python UDF workers (if a plan ever needs them) run this interpreter, with its pyspark.
            "PYSPARK_PYTHON": sys.executable,
        }
        args = [str(home / "bin" / "spark-submit"), "--class", _SERVER_CLASS, "--name", "meshlog-lab"]
        for key, value in conf.items():
            args += ["--conf", f"{key}={value}"]
        self.log_path = self.tmp / "server.log"
        log = self._stack.enter_context(self.log_path.open("wb"))
        t0 = time.monotonic()
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=self.tmp,  # a stray spark-warehouse/ or metastore_db/ lands in the temp dir
            env=env,
            start_new_session=True,  # own process group: stop() also reaches any Python worker it forked
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )
        _LIVE.add(self._proc)  # envoy.py's atexit hook kills whatever is left in _LIVE
        self._stack.callback(self._stop_server)
        self._wait_listening()
        self.timings["start"] = time.monotonic() - t0

    def _wait_listening(self) -> None:
        """Until the log names the bound port and a TCP connect there succeeds."""
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SparkLabError(
                    f"spark connect server exited with {self._proc.returncode}:\n{_tail(self.log_path)}"
                )
            if m := _STARTED.search(_tail(self.log_path, 1 << 20)):
                host, port = m.group(1), int(m.group(2))
                if _accepts(host, port):
                    self.url = f"sc://{host}:{port}"
                    return
            time.sleep(0.05)
        raise SparkLabError(f"spark connect server not listening after {self._start_timeout}s:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        """Stop the server and remove the temp dir. Idempotent; ``with`` does the same on exit."""
        self._stack.close()

    def _stop_server(self) -> None:
        """SIGTERM the process group (Spark's shutdown hooks stop the context), SIGKILL after 10 s."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        t0 = time.monotonic()
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        finally:
            _LIVE.discard(proc)
        self.timings["stop"] = time.monotonic() - t0

    def log_tail(self, n: int = 4000) -> str:
        """The last ``n`` characters of the server's log (for a failing test's message)."""
        return _tail(self.log_path, n)
