"""One HTTP session per metrics server: auth, TLS, a hard timeout, no retry loops, one-line errors.

An on-call engineer pointing meshlog at the wrong port must learn it in a second, not after the
6 s of retries that ``requests`` + prometheus-api-client do by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from meshlog.errors import UnreachableError


@dataclass(frozen=True)
class Connection:
    """How to talk to a server: the options of ``--token``, ``--user``, ``--ca-file``, ``--insecure``, ``--timeout``."""

    url: str
    token: str | None = None
    user: str | None = None  # "name:password"
    ca_file: str | None = None
    insecure: bool = False
    timeout: float = 10.0

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def auth(self) -> tuple[str, str] | None:
        if not self.user:
            return None
        name, _, password = self.user.partition(":")
        return name, password

    def session(self) -> requests.Session:
        """A session that never retries (one attempt, then a clear error) and verifies TLS as asked."""
        if self.insecure:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        session = requests.Session()
        session.verify = False if self.insecure else (self.ca_file or True)
        adapter = HTTPAdapter(max_retries=Retry(total=0, redirect=3, raise_on_status=False))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session


def _reason(exc: requests.RequestException) -> str:
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return "TLS certificate not trusted (pass --ca-file, or --insecure to skip verification)"
        return "TLS handshake failed"
    if "Connection refused" in text:
        return "connection refused (is the port-forward / Prometheus running?)"
    if "Name or service not known" in text or "nodename nor servname" in text or "Temporary failure in name" in text:
        return "host name does not resolve"
    if isinstance(
        exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema | requests.exceptions.InvalidSchema
    ):
        return "not a valid http(s) URL"
    return "connection failed"


@contextlib.contextmanager
def talking_to(conn: Connection) -> Iterator[None]:
    """Turn whatever ``requests`` raises into one ``UnreachableError`` naming the URL."""
    try:
        yield
    except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout):
        raise UnreachableError(conn.base, f"no answer within {conn.timeout:g} s (--timeout)") from None
    except requests.exceptions.TooManyRedirects:
        raise UnreachableError(conn.base, "too many redirects") from None
    except requests.RequestException as exc:
        if "timed out" in str(exc):  # a read timeout arrives wrapped in a ConnectionError
            raise UnreachableError(conn.base, f"no answer within {conn.timeout:g} s (--timeout)") from None
        raise UnreachableError(conn.base, _reason(exc)) from None


def http_status_message(status: int, body: bytes) -> str:
    """``HTTP 401 Unauthorized: …`` with the start of the body (servers explain themselves there)."""
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    snippet = " ".join(body[:160].decode("utf-8", "replace").split())
    if snippet.startswith("<"):  # an HTML error page says nothing the status does not
        snippet = ""
    hint = " (check --token / --user)" if status in (401, 403) else ""
    return f"HTTP {status} {phrase}{hint}" + (f": {snippet}" if snippet else "")
