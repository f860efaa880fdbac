"""A lineage backend for tests: a real HTTP server on a free port that records every POST
(path, headers, JSON body) and answers as Marquez does (201), or fails (500), or refuses the
event (400), or hangs (until released).

Built on :class:`~.fakehttp.LocalHTTPServer` (pytest-httpserver): every request is answered in
its own thread, so a hanging answer holds up no other.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from werkzeug import Request, Response

from .fakehttp import LocalHTTPServer

__all__ = ["LineageBackend", "running_backend"]

#: The status each mode answers with; "hang" answers 201 once released (or after 5 s).
_STATUS = {"fail": 500, "refuse": 400}


class LineageBackend:
    """A lineage backend on a free port: records every POST, then answers as ``mode`` says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode  # "ok": 201, "fail": 500, "refuse": 400, "hang": waits (5 s at most)
        self.received: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        self._server = LocalHTTPServer(self._answer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def start(self) -> LineageBackend:
        """Start serving; returns the backend."""
        self._server.begin()
        return self

    def stop(self) -> None:
        """Let a hanging answer go, and stop serving."""
        self.release.set()
        self._server.end()

    def _answer(self, request: Request) -> Response:
        query = request.query_string.decode()
        path = f"{request.path}?{query}" if query else request.path
        body = json.loads(request.get_data())
        self.received.append((path, dict(request.headers), body))
        self.arrived.set()
        if self.mode == "hang":
            self.release.wait(5)
        return Response(b"", status=_STATUS.get(self.mode, 201))


@contextlib.contextmanager
def running_backend(mode: str) -> Iterator[LineageBackend]:
    """A started :class:`LineageBackend`, stopped on exit."""
    backend = LineageBackend(mode).start()
    try:
        yield backend
    finally:
        backend.stop()
