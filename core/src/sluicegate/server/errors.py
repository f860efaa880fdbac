"""One table from exceptions to HTTP status codes, and the JSON error body.

Every error answer is ``{"error": "<code>", "detail": "<one sentence>"}``. Nothing a client
sends can produce a 500: an unexpected exception is logged with its cause and answered 500 with
no internals, and that is a bug to fix. A database failure is answered 503 ``database
unavailable`` and its cause, which names the database, is logged. The review pages answer
these two as HTML pages.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from sluicegate.exceptions import (
    ActionError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PolicyError,
    SluicegateError,
    StoreError,
    TransitionError,
)

__all__ = ["ERROR_PAGE", "UNAVAILABLE", "ApiError", "error_body", "install_error_handlers"]

log = logging.getLogger("sluicegate.server")

#: What a caller is told when the database fails; what failed, and where, goes to the log.
UNAVAILABLE = "database unavailable"

#: ``request.state`` attribute through which a route answers its server errors itself (the
#: review pages: HTML for a browser): ``fn(status, detail) -> Response``.
ERROR_PAGE = "error_page"

# Most specific first: ConflictError is a TransitionError.
_STATUS: list[tuple[type[SluicegateError], int, str]] = [
    (ConflictError, 409, "conflict"),
    (TransitionError, 409, "conflict"),
    (NotFoundError, 404, "not_found"),
    (ForbiddenError, 403, "forbidden"),
    (ActionError, 422, "invalid_request"),
    (PolicyError, 422, "invalid_policy"),
    (ConfigError, 500, "misconfigured"),
    (StoreError, 503, "unavailable"),
]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An HTTP error with its code and sentence (raised by routes and auth)."""

    def __init__(
        self, status: int, error: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


def error_body(error: str, detail: str) -> dict[str, str]:
    """The JSON body of every error answer."""
    return {"error": error, "detail": detail}


def _json(
    status: int, error: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(error, detail), status_code=status, headers=headers)


def status_of(err: SluicegateError) -> tuple[int, str]:
    """The HTTP status and error code for a Sluicegate exception."""
    for cls, status, code in _STATUS:
        if isinstance(err, cls):
            return status, code
    return 400, "bad_request"


def _validation_sentence(err: RequestValidationError) -> tuple[int, str, str]:
    errors: list[dict[str, Any]] = list(err.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return 400, "malformed_json", "the body is not valid JSON"
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body",)]
    where = ".".join(loc) or "body"
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, "invalid_request", f"{where}: {msg}{more}"


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to the JSON error body."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, err: ApiError) -> JSONResponse:
        return _json(err.status, err.error, err.detail, err.headers)

    @app.exception_handler(SluicegateError)
    async def _domain(request: Request, err: SluicegateError) -> Response:
        status, code = status_of(err)
        if isinstance(err, StoreError):
            # The cause names the database (user, host, port, name): it is the operator's to
            # read in the log, never a caller's (the review pages answer anyone).
            log.error("request failed: %s", err)
            return _server_error(request, status, code, UNAVAILABLE)
        if status >= 500:
            log.error("request failed: %s", err)
        return _json(status, code, str(err))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        status, code, detail = _validation_sentence(err)
        return _json(status, code, detail)

    @app.exception_handler(ValidationError)
    async def _model(_: Request, err: ValidationError) -> JSONResponse:
        # A domain model refused a value the request shape let through: still bad input.
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid value"}
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        return _json(422, "invalid_request", f"{where}: {msg}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(err.status_code, "error")
        detail = err.detail if isinstance(err.detail, str) else code.replace("_", " ")
        headers = getattr(err, "headers", None)
        if err.status_code == 405:
            # Starlette names the methods of the first route on the path only; a path served
            # by two routes (GET and POST /api/v1/requests) must be answered with both.
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return _json(err.status_code, code, detail, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        detail = "the server failed unexpectedly; the error was logged"
        return _server_error(request, 500, "internal", detail)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on the request's path."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def _server_error(request: Request, status: int, code: str, detail: str) -> Response:
    """The JSON error body, or the route's own page for it (a browser reads the review pages:
    they set ``request.state.error_page``, a function of the status and the sentence)."""
    page = getattr(request.state, ERROR_PAGE, None)
    if callable(page):
        answer: Response = page(status, detail)
        return answer
    return _json(status, code, detail)
