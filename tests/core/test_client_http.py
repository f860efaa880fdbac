"""The client's HTTP (sluicegate.client over httpx), against real sockets.

The client's behaviour against the real server is in test_client.py; here is what only a
hand-made server can show: a path prefix, a server that drops the kept-alive connection, TLS
that must verify, a server that never answers, an answer that is not JSON, answers framed as
other servers and proxies frame them (chunks, closing, ``Connection: close``, an interim 100),
answers that cannot be read, and a path that tries to end the request line.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate._http import ca_verified, trusts_nobody
from sluicegate.calls import ApiCall
from sluicegate.client import SluicegateClient
from sluicegate.exceptions import ClientError, UnreachableError
from tests.core.support.paths import CERTS  # a self-signed certificate for 127.0.0.1


class Recorder:
    """An HTTP/1.1 server on 127.0.0.1 that notes each request and answers ``reply``.

    Hand-made on purpose, unlike the fakes of tests/core/support (pytest-httpserver): these
    tests count the TCP connections a client opens and need a server that closes a kept-alive
    connection without saying so, which werkzeug's server behind pytest-httpserver hides."""

    def __init__(
        self,
        reply: bytes = b'{"id": "r1", "status": "allowed", "rule": "routine", "items": []}',
        *,
        status: int = 200,
        drop_after_each: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        seen = self.seen = []
        connections = self.connections = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn does

            def setup(self) -> None:
                super().setup()
                connections.append(self.client_address)

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append((self.command, self.path, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                # Closing without saying so: what a server's idle keep-alive timeout does.
                self.close_connection = drop_after_each

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


def test_a_path_prefix_token_and_query_reach_the_server(recorder: Recorder) -> None:
    with SluicegateClient(f"{recorder.url}/sluicegate/", "sgreq_secret") as client:
        client.list(status="pending", job="crm.export", limit=5)
        client.open_gate("k1", {"kind": "read", "summary": "é"}, {"orchestrator": "airflow"})
    (m1, path1, headers1, _), (m2, path2, headers2, body2) = recorder.seen
    assert (m1, path2, m2) == ("GET", "/sluicegate/api/v1/requests", "POST")
    assert path1 == "/sluicegate/api/v1/requests?status=pending&job=crm.export&limit=5"
    assert headers1["Authorization"] == headers2["Authorization"] == "Bearer sgreq_secret"
    assert headers2["Content-Type"] == "application/json"
    assert '"summary":"é"'.encode() in body2  # UTF-8 JSON, as httpx sends it
    assert len(recorder.connections) == 1  # one kept-alive connection for both


def test_a_connection_the_server_dropped_is_replaced_not_failed() -> None:
    server = Recorder(drop_after_each=True)
    try:
        with SluicegateClient(server.url, "t") as client:
            for _ in range(3):
                assert client.get("r1").status == "allowed"
                time.sleep(0.05)  # the server has closed its side by now
    finally:
        server.close()
    assert len(server.seen) == 3 and len(server.connections) == 3


def _server_tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERTS / "localhost.pem", CERTS / "localhost.key")
    return ctx


@pytest.fixture
def ca_bundle(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Sets the CA bundle the client trusts (``SSL_CERT_FILE``, read once per process, as
    httpx reads it); the client's cached TLS context is made anew before and after."""

    def trust(path: Path | None) -> None:
        if path is None:
            monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        else:
            monkeypatch.setenv("SSL_CERT_FILE", str(path))
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        ca_verified.cache_clear()

    yield trust
    ca_verified.cache_clear()


def test_https_verifies_the_certificate_and_fails_closed_without_trust(ca_bundle: Any) -> None:
    server = Recorder(tls=_server_tls())
    try:
        ca_bundle(CERTS / "localhost.pem")
        with SluicegateClient(server.url, "t", timeout=5) as trusting:
            assert trusting.get("r1").status == "allowed"
        # the right certificate for another name: the hostname check refuses it
        other = f"https://127.0.0.2:{server.server.server_address[1]}"
        with (
            SluicegateClient(other, "t", timeout=5) as wrong_name,
            pytest.raises(UnreachableError, match="cannot reach"),
        ):
            wrong_name.get("r1")
        ca_bundle(None)  # the public CAs (certifi): none of them signed it
        with (
            SluicegateClient(server.url, "t", timeout=5) as public,
            pytest.raises(UnreachableError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            public.get("r1")
        # what a client of a plain http:// server holds, were TLS ever used: no CA at all
        nobody = httpx.HTTPTransport(verify=trusts_nobody())
        with (
            SluicegateClient(server.url, "t", timeout=5, transport=nobody) as untrusting,
            pytest.raises(UnreachableError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            untrusting.get("r1")
    finally:
        server.close()
    assert len(server.seen) == 1


def test_a_server_that_never_answers_is_unreachable_after_the_timeout() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never reads or answers
    try:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with (
            SluicegateClient(f"http://127.0.0.1:{port}", "t", timeout=0.5) as client,
            pytest.raises(UnreachableError, match="cannot reach"),
        ):
            client.get("r1")
        assert 0.4 < time.monotonic() - started < 5
    finally:
        silent.close()


def test_an_error_answer_that_is_not_json_is_a_client_error_with_its_text() -> None:
    server = Recorder(b"upstream went away", status=502)
    try:
        with SluicegateClient(server.url, "t") as client, pytest.raises(ClientError) as err:
            client.get("r1")
    finally:
        server.close()
    assert err.value.status == 502 and "upstream went away" in str(err.value)


def test_a_server_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        SluicegateClient("ftp://sluicegate.example", "t")


# --------------------------------------------------------------------------- framing, by hand


class Scripted:
    """A TCP server on 127.0.0.1 that reads each request whole and sends the next of
    ``answers`` byte for byte (closing afterwards when told): how servers and proxies other
    than uvicorn may frame an answer."""

    def __init__(self, answers: list[bytes], *, close_after: bool = False) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.close_after = close_after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                buf = b""
                while self.answers:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(buf) < length:
                        buf += conn.recv(65536)
                    self.requests.append(head + b"\r\n\r\n" + buf[:length])
                    buf = buf[length:]
                    conn.sendall(self.answers.pop(0))
                    if self.close_after:
                        break

    def close(self) -> None:
        self.sock.close()


class _Raw:
    """A client whose calls answer the raw JSON (any path, any body)."""

    def __init__(self, url: str) -> None:
        self.client = SluicegateClient(url, "t", timeout=5)

    def request(self, method: str, path: str, json_body: Any = None) -> Any:
        return self.client.call(ApiCall(method, path, lambda answer: answer, json=json_body))

    def close(self) -> None:
        self.client.close()


def _conn(url: str) -> _Raw:
    return _Raw(url)


def test_a_chunked_answer_is_put_back_together_and_the_connection_kept() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b'7;ext=1\r\n{"id": \r\n5\r\n"r1"}\r\n0\r\nX-Trailer: yes\r\n\r\n'
    )
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    server = Scripted([chunked, plain])
    try:
        conn = _conn(server.url)
        assert conn.request("GET", "/a") == {"id": "r1"}
        assert conn.request("GET", "/b") == {}
        conn.close()
    finally:
        server.close()
    assert server.connections == 1


def test_an_answer_framed_by_closing_is_read_to_the_end_and_not_reused() -> None:
    server = Scripted(
        [b"HTTP/1.0 200 OK\r\n\r\n" + b'{"n": 1}', b"HTTP/1.0 200 OK\r\n\r\n" + b'{"n": 2}'],
        close_after=True,
    )
    try:
        conn = _conn(server.url)
        assert conn.request("GET", "/a") == {"n": 1}
        assert conn.request("GET", "/b") == {"n": 2}
        conn.close()
    finally:
        server.close()
    assert server.connections == 2


def test_connection_close_is_honoured_and_an_interim_answer_skipped() -> None:
    server = Scripted(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 9\r\n\r\n"
            b'{"n": 1}\n',
            b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + b'{"n": 2}',
        ],
        close_after=True,
    )
    try:
        conn = _conn(server.url)
        assert conn.request("POST", "/a", json_body={"k": 1}) == {"n": 1}  # the 201's body
        assert conn.request("GET", "/b") == {"n": 2}
        conn.close()
    finally:
        server.close()
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"id": ',
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"",
    ],
    ids=["truncated", "not-http", "bad-chunk", "no-answer"],
)
def test_an_answer_that_cannot_be_read_is_unreachable(answer: bytes) -> None:
    server = Scripted([answer], close_after=True)
    try:
        with pytest.raises(UnreachableError, match=f"cannot reach {server.url}"):
            _conn(server.url).request("GET", "/r/1")
    finally:
        server.close()


def test_a_path_cannot_end_the_request_line_or_add_a_header() -> None:
    body = b'{"error": "not_found"}'
    server = Scripted(
        [b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)]
    )
    try:
        with SluicegateClient(server.url, "t") as client, pytest.raises(ClientError) as err:
            client.get("r1 HTTP/1.1\r\nX-Injected: yes\r\n\r\nGET /x")
    finally:
        server.close()
    assert err.value.status == 404
    (raw,) = server.requests
    request_line, *headers = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    # The id is one path segment: its slash is encoded too.
    assert request_line.startswith(b"GET /api/v1/requests/r1%20HTTP%2F1.1%0D%0AX-Injected")
    assert not [h for h in headers if h.lower().startswith(b"x-injected")]
