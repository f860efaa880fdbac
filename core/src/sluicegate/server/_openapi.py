"""The OpenAPI document as the server behaves: who may call each operation, and every error.

FastAPI documents what a route declares. What the server does around the routes is added
here, from the same code that does it, so the two cannot drift apart: the bearer token (and
the SSO header, when one is configured) from each route's auth dependency, with the scope it
needs; 401 and 403 from that dependency; 400 and 413 for a body (the body limit and the JSON
parser answer those); 422 as the body the error handler really sends, not FastAPI's list of
validation errors; 503 when the database is down. Every error answer is one shared component,
:class:`sluicegate.wire.ErrorOut`. Routes add their own (404, 409, 429) with ``responses=``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from sluicegate.server import auth
from sluicegate.settings import Settings
from sluicegate.wire import ErrorOut

__all__ = ["install_openapi"]

_ERROR = "ErrorOut"
_ERROR_REF = {"$ref": f"#/components/schemas/{_ERROR}"}

#: The description of an error answer a route did not describe itself.
_DESCRIPTIONS = {
    400: "the body is not valid JSON, or not the shape this operation reads (`malformed_json`, "
    "`bad_request`)",
    401: "no bearer token, or one that is unknown, expired or revoked (`unauthorized`)",
    403: "the token's scope may not do this (`forbidden`)",
    404: "not found (`not_found`)",
    409: "the request is in a state that does not allow this (`conflict`)",
    413: "the body is larger than 1 MiB (`too_large`)",
    422: "a parameter or a field of the body is invalid; the detail names it and says why "
    "(`invalid_request`)",
    429: "too many at once; retry after the `Retry-After` seconds (`too_many_requests`)",
    503: "the database does not answer; retry later (`unavailable`)",
}

_SCOPES = """\
A bearer token made with `sluicegate token create --scope SCOPE` (`Authorization: Bearer
<token>`). Each operation names the scope it needs, if any (any scope otherwise):

- `request`: a pipeline. Opens its gates, cancels and releases them; reads requests.
- `review`: a reviewer named in the policy. Decides; reads requests.
- `audit`: an auditor. Exports and verifies the audit log (and only this scope may); reads
  requests.

Lineage (`/api/v1/lineage`) takes a token of any scope."""

#: Each auth dependency: the scope it needs (None: any), and whether the SSO header counts.
_AUTH: dict[Callable[..., Any], tuple[str | None, bool]] = {
    auth.require_any: (None, True),
    auth.require_request: ("request", False),
    auth.require_review: ("review", True),
    auth.require_audit: ("audit", False),
}


def install_openapi(app: FastAPI, settings: Settings, routers: Sequence[APIRouter]) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) the completed document, built once.

    ``routers`` are those ``app`` includes: their routes (and the app's own) are where each
    operation's dependencies are read.
    """
    generate = app.openapi
    done: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not done:
            routes = [*app.routes, *(route for r in routers for route in r.routes)]
            done.update(_complete(routes, generate(), settings.sso_header))
            app.openapi_schema = done
        return done

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(
    routes: Sequence[object], doc: dict[str, Any], sso_header: str | None
) -> dict[str, Any]:
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas[_ERROR] = ErrorOut.model_json_schema()
    schemes: dict[str, Any] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": _SCOPES}
    }
    if sso_header:
        schemes["sso"] = {
            "type": "apiKey",
            "in": "header",
            "name": sso_header,
            "description": "the user name a trusted single-sign-on proxy sets: a reviewer",
        }
    components["securitySchemes"] = schemes
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            op = doc["paths"].get(route.path_format, {}).get(method.lower())
            if op is not None:
                _describe(route, method, op, sso_header is not None)
    # FastAPI's own validation error shapes are never sent: nothing may refer to them.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def _describe(route: APIRoute, method: str, op: dict[str, Any], sso: bool) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    needs = [_AUTH[d.call] for d in _dependencies(route.dependant) if d.call in _AUTH]
    if needs:
        scope, by_sso = needs[0]
        bearer = {"bearer": [scope] if scope else []}
        op["security"] = [bearer, {"sso": []}] if sso and by_sso else [bearer]
        responses.setdefault("401", {}).setdefault(
            "headers",
            {
                "WWW-Authenticate": {
                    "description": 'always `Bearer realm="sluicegate"`',
                    "schema": {"type": "string"},
                }
            },
        )
        if scope:
            responses.setdefault("403", {})
        responses.setdefault("503", {})  # a token is checked against the database
    if method == "POST":
        # The body limit answers before any route (even one that reads no body).
        responses.setdefault("413", {})
    if route.body_field is not None or "requestBody" in op:
        responses.setdefault("400", {})
    for status, answer in responses.items():
        code = int(status) if status.isdigit() else 0
        if code < 400:
            continue
        if answer.get("description") in (None, "", "Validation Error"):
            answer["description"] = _DESCRIPTIONS.get(code, "an error")
        answer["content"] = {"application/json": {"schema": _ERROR_REF}}
    op["responses"] = dict(sorted(responses.items()))


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _dependencies(dep)
