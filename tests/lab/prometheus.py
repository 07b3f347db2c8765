"""Run a real Prometheus (Debian package 2.42) on 127.0.0.1 with backfilled data and/or live scrape targets.

Why a real server: PromQL details (extrapolation in ``rate()``, ``histogram_quantile``
interpolation, lookback, vector matching that drops series) are easy to get subtly wrong,
so meshlog's metrics code is checked against the real engine on data with known answers
(``istio_series``).

Recipe (``shared/reference/sidecar-metrics.md`` §4): backfill with
``promtool tsdb create-blocks-from openmetrics`` into an empty data dir *before* the server
starts (the documented safe order), then start ``prometheus`` on ``127.0.0.1:0`` and read the
port it bound back from its "Listening on" log line, so there is no free-port race and no
retry loop. Everything lives in one temp dir removed on exit; the server dies with the test
process (PR_SET_PDEATHSIG + atexit, shared with the Envoy lab).

Costs measured on the 2-core box: start (to ``/-/ready``) ~0.06 s, SIGTERM stop 0.01-0.5 s;
promtool backfills 1 h of BOOKINFO at 15 s (66 k lines, 61 MB of OpenMetrics) in 0.7-0.9 s,
3 h in 2.3 s. A scrape target's first scrape comes ~5.5 s after start whatever the scrape
interval: Prometheus 2.42's discovery manager forwards targets on a fixed 5 s tick (the hidden
``--scrape.discovery-reload-interval`` flag does not shorten it). Later scrapes follow the interval.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .envoy import _LIVE, _PRCTL, _die_with_parent, stop_envoy
from .managed import Managed

__all__ = ["PrometheusLab", "PrometheusLabError", "find_prometheus"]

# logfmt line Prometheus writes once its listener is bound (exporter-toolkit, 2.42).
_LISTENING = re.compile(r'msg="Listening on" address=(\S+)')
# Basic auth for the web config: bcrypt (cost 4, quick to check) of BASIC_AUTH[1], made once with
# crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)).
BASIC_AUTH = ("meshlog", "meshlog-pw")
_BASIC_AUTH_BCRYPT = "$2b$04$K6N7z/McIr69/d5p16z.a./DkyKXGqj261UKCIczTV01RGbXtgKzm"
# Prometheus may stamp a scrape up to 2 ms before it really started (scrape timestamp alignment),
# so "newer than t" needs a margin to mean "the target was read after t".
_SCRAPE_TS_SLACK = 0.01


class PrometheusLabError(RuntimeError):
    """Prometheus/promtool missing, backfill rejected, or server not ready (message has its output)."""


def find_prometheus() -> tuple[str, str]:
    """(prometheus, promtool) from $PATH."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus and promtool:
        return prometheus, promtool
    missing = " and ".join(n for n, p in (("prometheus", prometheus), ("promtool", promtool)) if not p)
    raise PrometheusLabError(
        f"{missing} not found on PATH; scripts/test.sh installs them with "
        "`apt-get install -y --no-install-recommends prometheus` (Debian package, Prometheus 2.42)"
    )


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return ""


class PrometheusLab(Managed):
    """One Prometheus server in a temp dir.

    >>> with PrometheusLab(openmetrics=text) as prom:          # backfilled, e.g. istio_series.openmetrics()
    ...     prom.query('sum(rate(istio_requests_total[5m]))', time=end)
    >>> with PrometheusLab(scrape_targets=[("app", "127.0.0.1:8000", "/metrics")]) as prom:
    ...     prom.wait_for_scrape_after(time.time(), "app")

    ``openmetrics`` is backfilled with promtool before the server starts. ``scrape_targets`` are
    (job name, "127.0.0.1:PORT", metrics_path) scraped every ``scrape_interval``.
    """

    def __init__(
        self,
        openmetrics: str | None = None,
        scrape_targets: Sequence[tuple[str, str, str]] = (),
        scrape_interval: str = "1s",
        *,
        start_timeout: float = 30.0,
        backfill_timeout: float = 300.0,
        tls: bool = False,
        basic_auth: bool = False,
    ) -> None:
        self.tls = tls  # serve https with a fresh self-signed certificate (``ca_file``) for 127.0.0.1
        self.basic_auth = basic_auth  # require BASIC_AUTH
        self.ca_file = Path()
        self.openmetrics = openmetrics
        self.scrape_targets = tuple(scrape_targets)
        self.scrape_interval = scrape_interval
        self._start_timeout = start_timeout
        self._backfill_timeout = backfill_timeout
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen[bytes] | None = None
        self.tmp = Path()
        self.url = ""
        self.timings: dict[str, float] = {}  # seconds per phase: backfill, start, stop

    # -- lifecycle ---------------------------------------------------------------------

    def _start(self) -> None:
        prometheus, promtool = find_prometheus()
        self.tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="meshlog-prometheus-")))
        data = self.tmp / "data"
        data.mkdir()
        if self.openmetrics is not None:
            self._backfill(promtool, data)
        config = self.tmp / "prometheus.yml"
        config.write_text(json.dumps(self._config(), indent=1))  # JSON is YAML: no quoting surprises
        web = self._web_config()
        self._log_path = self.tmp / "prometheus.log"
        log = self._stack.enter_context(self._log_path.open("wb"))
        t0 = time.monotonic()
        self._proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                "--web.listen-address=127.0.0.1:0",
                # Backfilled blocks may be old; the default 15 d retention would delete them at start.
                "--storage.tsdb.retention.time=100y",
                # Keep info: the "Listening on" line is how we learn the port. The log goes to a file.
                "--log.level=info",
                "--log.format=logfmt",
                *([f"--web.config.file={web}"] if web else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=self.tmp,
            # Only a prctl() call in the child, resolved before fork (see envoy.py).
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )
        _LIVE.add(self._proc)  # envoy.py's atexit hook kills whatever is left in _LIVE
        self._stack.callback(self.stop)
        self._wait_ready()
        self.timings["start"] = time.monotonic() - t0

    def _web_config(self) -> Path | None:
        """TLS and/or basic auth (Prometheus' --web.config.file), for the client's auth/TLS tests."""
        if not (self.tls or self.basic_auth):
            return None
        web: dict[str, Any] = {}
        if self.tls:
            self.ca_file, key = self.tmp / "cert.pem", self.tmp / "key.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                 "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(self.ca_file)],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            web["tls_server_config"] = {"cert_file": str(self.ca_file), "key_file": str(key)}
        if self.basic_auth:
            web["basic_auth_users"] = {BASIC_AUTH[0]: _BASIC_AUTH_BCRYPT}
        path = self.tmp / "web.yml"
        path.write_text(json.dumps(web))
        return path

    def _backfill(self, promtool: str, data: Path) -> None:
        """promtool writes TSDB blocks into the (still unused) data dir."""
        assert self.openmetrics is not None
        source = self.tmp / "backfill.om"
        source.write_text(self.openmetrics)
        t0 = time.monotonic()
        try:
            done = subprocess.run(
                [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(source), str(data)],
                check=False,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self._backfill_timeout,
                preexec_fn=_die_with_parent if _PRCTL is not None else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise PrometheusLabError(f"promtool backfill took more than {self._backfill_timeout}s") from exc
        finally:
            source.unlink()  # tens of MB we no longer need
        self.timings["backfill"] = time.monotonic() - t0
        if done.returncode != 0:
            out = (done.stderr or done.stdout).decode(errors="replace")[-3000:]
            raise PrometheusLabError(f"promtool backfill failed ({done.returncode}):\n{out}")

    def _config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": "1m"},
            "scrape_configs": [
                {
                    "job_name": job,
                    "metrics_path": path,
                    "scrape_interval": self.scrape_interval,
                    "static_configs": [{"targets": [target]}],
                }
                for job, target, path in self.scrape_targets
            ],
        }

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PrometheusLabError(f"prometheus exited with {self._proc.returncode}:\n{_tail(self._log_path)}")
            if not self.url and (m := _LISTENING.search(_tail(self._log_path, 1 << 20))):
                self.url = f"{'https' if self.tls else 'http'}://{m.group(1)}"
            if self.url and self._get_status("/-/ready") == 200:
                return
            time.sleep(0.02)
        raise PrometheusLabError(f"prometheus not ready after {self._start_timeout}s:\n{_tail(self._log_path)}")

    def _open(self, req: urllib.request.Request | str, timeout: float) -> Any:
        """urlopen that trusts the lab's own certificate and sends the lab's basic auth."""
        if isinstance(req, str):
            req = urllib.request.Request(req)
        if self.basic_auth:
            token = base64.b64encode(":".join(BASIC_AUTH).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
        return urllib.request.urlopen(req, timeout=timeout, context=context)

    def _get_status(self, path: str) -> int:
        try:
            with self._open(self.url + path, timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def stop(self) -> None:
        """SIGTERM (Prometheus closes the TSDB cleanly), SIGKILL after 5 s. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            t0 = time.monotonic()
            stop_envoy(proc)  # generic despite its name: SIGTERM, wait, SIGKILL, forget
            self.timings["stop"] = time.monotonic() - t0

    # -- queries (the lab's own checks; meshlog has its own client) ----------------------

    def query(self, promql: str, time: float | None = None) -> list[dict[str, Any]]:
        """``/api/v1/query`` -> ``data.result`` (for a scalar result: ``[{"value": [ts, "v"]}]``)."""
        params = {"query": promql}
        if time is not None:
            params["time"] = repr(float(time))
        req = urllib.request.Request(
            f"{self.url}/api/v1/query",
            data=urllib.parse.urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with self._open(req, timeout=30) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:  # 400 bad_data / 422 execution: the JSON says why
            raise PrometheusLabError(
                f"query {promql!r} failed: {exc.code} {exc.read().decode(errors='replace')}"
            ) from exc
        if body.get("status") != "success":
            raise PrometheusLabError(f"query {promql!r} failed: {body}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def wait_for_scrape_after(self, t: float, job: str, timeout: float = 30.0) -> float:
        """Block until job's latest scrape started after ``t`` (a ``time.time()``); return its timestamp.

        Why not "until the value is > 0": a scrape that ran before the traffic finished already
        has a value, and a test would then assert on a half-updated target.
        """
        deadline = time.monotonic() + timeout
        query = f'max(timestamp(up{{job="{job}"}}))'
        last = math.nan
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise PrometheusLabError(f"prometheus is not running:\n{_tail(self._log_path)}")
            result = self.query(query)
            if result:
                last = float(result[0]["value"][1])
                if last > t + _SCRAPE_TS_SLACK:
                    return last
            time.sleep(0.05)
        raise PrometheusLabError(
            f"no scrape of job {job!r} after t={t:.3f} within {timeout}s (last scrape at {last:.3f}); "
            f"targets: {self._targets_summary()}"
        )

    def _targets_summary(self) -> str:
        try:
            with self._open(self.url + "/api/v1/targets", timeout=5) as resp:
                active = json.load(resp)["data"]["activeTargets"]
        except (OSError, ValueError, KeyError):
            return "(unavailable)"
        return "; ".join(f"{a['scrapeUrl']} health={a['health']} error={a['lastError']!r}" for a in active) or "none"
