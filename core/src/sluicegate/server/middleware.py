"""What every HTTP request goes through before a route: the body limit, ``nosniff``, the
access log.

One pure ASGI layer does all three (:class:`Limits`): the allowed gate's path is measured in
microseconds, and each extra middleware costs a few.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sluicegate.server.errors import error_body

__all__ = ["ACCESS_FLUSH_SECONDS", "MAX_BODY_BYTES", "AccessLog", "Limits", "flush_access_log"]

access = logging.getLogger("sluicegate.access")

#: How long an access-log line may wait before it is written.
ACCESS_FLUSH_SECONDS = 0.2

#: Larger bodies are refused with 413 before they are read.
MAX_BODY_BYTES = 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AccessLog:
    """One JSON line per request (method, path, status, ms), written to stderr in batches.

    Through the logging module, with a write to stderr per line, the access log cost 15 % of
    a status read's CPU. Lines are formatted like the other log lines and written together
    every :data:`ACCESS_FLUSH_SECONDS` (and at shutdown). It is on when the
    ``sluicegate.access`` logger is enabled for INFO (``serve --log-level info``, the default).
    """

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._on = False

    def add(self, method: str | None, path: str | None, status: int, started: float) -> None:
        """Note one answered request (``started``: its ``time.perf_counter()``)."""
        if not self._on:
            return
        now = time.time()
        ms = round((time.perf_counter() - started) * 1000, 2)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        body = json.dumps({"method": method, "path": path, "status": status, "ms": ms})
        self._lines.append(f"{stamp},{int(now * 1000) % 1000:03d} INFO sluicegate.access {body}\n")
        if len(self._lines) >= 1000:
            self.flush()

    def start(self) -> None:
        """Decide once whether to log (the logger's level is set before the server starts)."""
        self._on = access.isEnabledFor(logging.INFO)

    def flush(self) -> None:
        """Write the lines held so far."""
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        stream = self._stream or sys.stderr
        with contextlib.suppress(OSError, ValueError):  # a closed stderr must not stop serving
            stream.write("".join(lines))
            stream.flush()


async def flush_access_log(log: AccessLog, stop: asyncio.Event) -> None:
    """Flush ``log`` every :data:`ACCESS_FLUSH_SECONDS` until ``stop`` (a background task)."""
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=ACCESS_FLUSH_SECONDS)
        log.flush()


#: On every answer: no browser may guess a type other than the one declared (a JSON answer
#: that echoes a caller's text must never be run as HTML or script).
_NOSNIFF = (b"x-content-type-options", b"nosniff")


def _with_nosniff(message: Message) -> None:
    headers = list(message.get("headers") or ())
    if not any(name.lower() == _NOSNIFF[0] for name, _ in headers):
        headers.append(_NOSNIFF)
    message["headers"] = headers


class Limits:
    """Refuse oversized bodies (413), mark every answer ``nosniff``, and log one structured
    line per request (see the module)."""

    def __init__(self, app: ASGIApp, access_log: AccessLog, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.access_log = access_log
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                _with_nosniff(message)
            await send(message)

        if scope.get("method") in ("GET", "HEAD"):  # no body to limit: straight through
            await self.app(scope, receive, send_logged)
            self._log(scope, status_holder["status"], started)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        try:
            too_big = declared is not None and int(declared) > self.limit
        except ValueError:
            too_big = True
        body = b""
        more = not too_big and scope.get("method") in ("POST", "PUT", "PATCH")
        # Read the body here (it is small by definition), so an oversized one is refused
        # whatever framing the client used, before any route sees it.
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                too_big = True
                break
        if too_big:
            await self._refuse(send_logged)
        else:
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_logged)
        self._log(scope, status_holder["status"], started)

    def _log(self, scope: Scope, status: int, started: float) -> None:
        self.access_log.add(scope.get("method"), scope.get("path"), status, started)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            error_body("too_large", f"the body is larger than {self.limit} bytes")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
