"""A lineage backend for tests: a real HTTP server on a free port that records every POST
(path, headers, JSON body) and answers as Marquez does (201), or fails (500), or refuses the
event (400), or hangs (until released)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LineageBackend", "running_backend"]


class LineageBackend(ThreadingHTTPServer):
    """A lineage backend on a free port: records every POST, then answers as ``mode`` says."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, mode: str) -> None:
        self.mode = mode  # "ok": 201, "fail": 500, "refuse": 400, "hang": waits (5 s at most)
        self.received: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: LineageBackend

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append((self.path, dict(self.headers), body))
        self.server.arrived.set()
        if self.server.mode == "hang":
            self.server.release.wait(5)
        self.send_response({"fail": 500, "refuse": 400}.get(self.server.mode, 201))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def running_backend(mode: str) -> Iterator[LineageBackend]:
    server = LineageBackend(mode)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
