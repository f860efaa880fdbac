"""A stand-in for Prefect's API in core tests: records each resume and answers as scripted.

Only ``POST /api/flow_runs/{id}/resume`` is served, answering an orchestration result the way
Prefect's server does (``{"status": "ACCEPT", ...}``); ``script`` holds answers to give first,
one per call, as ``(http status, body)``; status 0 closes the connection without an answer
(what a keep-alive connection closed by the server looks like). ``busy_every = n`` answers
every n-th call after the script with the 503 Prefect gives while its SQLite database is
locked. The end-to-end tests use the real Prefect.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakePrefect", "Resume"]

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
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.strip("/").split("/")
                if len(parts) != 4 or parts[:2] != ["api", "flow_runs"] or parts[3] != "resume":
                    self._answer(404, {"detail": "Not Found"})
                    return
                at = time.monotonic()
                with fake._lock:
                    status, body = fake._next_answer()
                    fake.calls.append(
                        Resume(parts[2], json.loads(raw or b"null"), dict(self.headers), status, at)
                    )
                    fake._lock.notify_all()
                if status == 0:
                    self.close_connection = True
                    return
                self._answer(status, body)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakePrefect:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

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
