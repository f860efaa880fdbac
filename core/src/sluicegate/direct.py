"""A small blocking HTTP/1.1 connection for :class:`~sluicegate.client.SluicegateClient`.

A pipeline step that opens a gate makes a client, sends one request and exits: through httpx
that request cost 0.8 ms more than through this connection, which is within 0.3 ms of bare
``http.client`` (an allowed gate after 50 ms of quiet, p50: 4.79 / 3.97 / 3.72 ms by
``bench/bench_idle_open.py``): URL models, cookie handling and the layers of a general client,
for a call that needs none of them, and an allowed gate is little else. The client
therefore talks to its server directly through ``http.client`` with one kept-alive
connection, and keeps httpx where its generality is needed: a proxy named in the environment,
or a transport given by the caller (see :func:`sluicegate.client._proxies_in_environment`).

What it does: ``http`` and ``https`` (with the caller's TLS context: hostname checked, no
redirects followed), a path prefix in the server URL, JSON bodies, query parameters, a timeout
per call (for long polls), and reconnecting when the server closed the idle connection.
Failures to connect, send or read, and answers that are not HTTP, raise
:class:`~sluicegate.exceptions.UnreachableError`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import ssl
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from sluicegate.exceptions import UnreachableError

__all__ = ["DirectConnection", "Reply"]


class Reply:
    """A response: status, reason phrase and body (named as httpx names them)."""

    __slots__ = ("body", "reason_phrase", "status_code")

    def __init__(self, status_code: int, reason_phrase: str, body: bytes) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.body = body

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _query_value(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


class DirectConnection:
    """One keep-alive connection to ``server_url`` (see the module's docstring)."""

    def __init__(
        self,
        server_url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        tls: ssl.SSLContext,
    ) -> None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {server_url!r}")
        self.server_url = server_url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Accept": "application/json", "User-Agent": "sluicegate", **headers}
        self._timeout = timeout
        self._tls = tls
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, **options: Any) -> Reply:
        """Send one request and read the whole answer (``options`` as :meth:`send` takes)."""
        self.send(method, path, **options)
        return self.receive()

    def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Send one request; :meth:`receive` reads its answer, which the server meanwhile
        works on. Nothing else may be sent before that."""
        # Percent-encoded, so that an id from a DAG's conf, say, with a space or a line break
        # in it is asked for (and not found) rather than refused as a bad URL; what is already
        # encoded stays as it is.
        target = quote(self._prefix + path, safe="/%:@!$&'()*+,;=~")
        if params:
            target += "?" + urlencode({k: _query_value(v) for k, v in params.items()})
        headers = dict(self._headers)
        body = None
        if json_body is not None:
            # as httpx encodes it: compact, UTF-8, no NaN
            body = json.dumps(
                json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            headers["Content-Type"] = "application/json"
        with self._unreachable():
            conn = self._connection(timeout or self._timeout)
            conn.request(method, target, body=body, headers=headers)

    def receive(self) -> Reply:
        """The whole answer to the request :meth:`send` sent."""
        if self._conn is None:
            raise UnreachableError(f"cannot reach {self.server_url}: nothing was sent")
        with self._unreachable():
            response = self._conn.getresponse()
            reply = Reply(response.status, response.reason, response.read())
            if response.will_close:
                self.close()
        return reply

    @contextlib.contextmanager
    def _unreachable(self) -> Iterator[None]:
        try:
            yield
        except (OSError, http.client.HTTPException) as err:
            self.close()
            why = str(err) or type(err).__name__
            raise UnreachableError(f"cannot reach {self.server_url}: {why}") from err

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is not None and conn.sock is not None and _closed_by_peer(conn.sock):
            self.close()  # the server dropped the idle connection: start a new one
            conn = None
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=timeout, context=self._tls
                )
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn


def _closed_by_peer(sock: Any) -> bool:
    """A kept-alive socket with something to read before we asked: the server closed it (or
    sent what nobody asked for); either way it cannot carry the next request."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
