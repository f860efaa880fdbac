"""A local HTTP server for fakes of remote services: pytest-httpserver, one handler for all.

:class:`LocalHTTPServer` listens on a free port of 127.0.0.1 and answers every request in its
own thread (a fake's hanging answer must not hold the others up) with one function that takes
a werkzeug ``Request`` and gives a ``Response``. It stops within 50 ms rather than
pytest-httpserver's half second, which a test suite that starts one per test notices, and logs
no line per request (a failing test shows what the fake recorded instead).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response
from werkzeug.serving import WSGIRequestHandler

__all__ = ["LocalHTTPServer"]


class _Quiet(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as werkzeug's threaded server has it

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LocalHTTPServer(HTTPServer):
    """Serves ``handler`` for every method and path (see the module's docstring)."""

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        super().__init__("127.0.0.1", 0, threaded=True)
        self.expect_request(re.compile("/")).respond_with_handler(handler)

    def begin(self) -> LocalHTTPServer:
        """Start serving; returns the server."""
        self.start()
        assert self.server is not None
        self.server.RequestHandlerClass = _Quiet  # before any request: none can be made yet
        return self

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.05)

    def end(self) -> None:
        """Stop serving, if it still does."""
        if self.is_running():
            self.stop()
