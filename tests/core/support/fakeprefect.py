"""A stand-in for Prefect's API in core tests: records each resume and answers as scripted.

A real HTTP server on 127.0.0.1 (:mod:`.fakehttp`). Only ``POST /api/flow_runs/{id}/resume`` is
served, answering an orchestration result the way Prefect's server does (``{"status":
"ACCEPT", ...}``); ``script`` holds answers to give first, one per call, as ``(http status,
body)``; status 0 closes the connection without an answer (what a keep-alive connection closed
by the server looks like). ``busy_every = n`` answers every n-th call after the script with the
503 Prefect gives while its SQLite database is locked. The end-to-end tests use the real
Prefect.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from werkzeug import Request, Response

from .fakehttp import LocalHTTPServer

__all__ = ["ACCEPT", "BUSY", "FakePrefect", "Resume"]

ACCEPT: tuple[int, dict[str, Any]] = (201, {"status": "ACCEPT", "details": {}, "state": None})
#: What Prefect's server answers when its database is busy.
BUSY: tuple[int, dict[str, Any]] = (503, {"exception_message": "Service Unavailable"})


@dataclass(frozen=True)
class Resume:
    """One call the fake received."""

    flow_run_id: str
    body: Any
    headers: dict[str, str]
    answered: int
    #: ``time.monotonic()`` when it arrived.
    at: float = 0.0


class FakePrefect:
    """``with FakePrefect() as api:`` serves on a free port; ``api.url`` is its API URL."""

    def __init__(self) -> None:
        self.calls: list[Resume] = []
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.busy_every = 0
        self._unscripted = 0
        self._lock = threading.Condition()
        self._server = LocalHTTPServer(self._serve)
        self.url = ""

    def __enter__(self) -> FakePrefect:
        self._server.begin()
        self.url = f"http://127.0.0.1:{self._server.port}/api"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.end()

    def _serve(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if (
            request.method != "POST"
            or len(parts) != 4
            or parts[:2] != ["api", "flow_runs"]
            or parts[3] != "resume"
        ):
            return _json(404, {"detail": "Not Found"})
        at = time.monotonic()
        raw = request.get_data()
        with self._lock:
            status, body = self._next_answer()
            self.calls.append(
                Resume(parts[2], json.loads(raw or b"null"), dict(request.headers), status, at)
            )
            self._lock.notify_all()
        if status == 0:
            # No answer at all: the connection goes down under the request, as a keep-alive
            # connection the server already closed does. (The answer returned below is then
            # written to a closed socket, which the server takes as a client gone.)
            request.environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
        return _json(status or 500, body)

    def _next_answer(self) -> tuple[int, dict[str, Any]]:
        if self.script:
            return self.script.pop(0)
        self._unscripted += 1
        busy = self.busy_every and self._unscripted % self.busy_every == 0
        return BUSY if busy else ACCEPT

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Resume]:
        """The first ``count`` calls, waiting for them up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.calls) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.calls)} resume calls, expected {count}")
                self._lock.wait(left)
            return list(self.calls[:count])


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
