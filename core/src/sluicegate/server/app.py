"""The app factory: :func:`create_app` builds the ASGI application from settings.

It wires the parts (:mod:`sluicegate.server.wiring`), the middleware
(:mod:`sluicegate.server.middleware`), the error table (:mod:`sluicegate.server.errors`), the
start and stop (:mod:`sluicegate.server.lifespan`), the channels' routes (``api/``,
``pages/``, ``slack/``) and the operations endpoints (``/healthz``, ``/readyz``,
``/metrics``). ``sluicegate serve`` runs it (:mod:`sluicegate.server.run`).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.engine import make_url

from sluicegate import __version__
from sluicegate.exceptions import ConfigError
from sluicegate.policy import Policy, load_policy
from sluicegate.server._openapi import install_openapi
from sluicegate.server.errors import UNAVAILABLE, error_body, install_error_handlers
from sluicegate.server.keys import signing_keys
from sluicegate.server.lifespan import lifespan_of
from sluicegate.server.metrics import CONTENT_TYPE
from sluicegate.server.middleware import MAX_BODY_BYTES, AccessLog, Limits
from sluicegate.server.wiring import ServerState, state_of
from sluicegate.settings import Settings, load_settings
from sluicegate.store import Store
from sluicegate.store.db import describe_db_error

__all__ = ["MAX_BODY_BYTES", "create_app"]

log = logging.getLogger("sluicegate.server")


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    policy: Policy | None = None,
) -> FastAPI:
    """The Sluicegate server. Without arguments, everything comes from :func:`load_settings`."""
    settings = settings or load_settings()
    if policy is None:
        if settings.policy is None:
            raise ConfigError("no policy file: pass --policy FILE or set SLUICEGATE_POLICY")
        policy = load_policy(settings.policy)
    # The key first: a PostgreSQL server without one stops before it touches the database.
    keys = signing_keys(settings, store.engine.url if store else make_url(settings.db_url))
    store = store or Store(settings.db_url)
    st = ServerState.build(settings, store, policy, keys)

    access_log = AccessLog()
    app = FastAPI(
        title="Sluicegate",
        version=__version__,
        summary="Action-level approvals for data pipelines.",
        lifespan=lifespan_of(st, access_log),
    )
    app.state.sluicegate = st
    app.add_middleware(Limits, access_log=access_log)
    install_error_handlers(app)

    from sluicegate.server.api.audit import router as audit_router
    from sluicegate.server.api.lineage import router as lineage_router
    from sluicegate.server.api.requests import router as requests_router
    from sluicegate.server.pages.review import router as review_router
    from sluicegate.server.pages.sign_in import router as sign_in_router
    from sluicegate.server.slack.interactions import router as slack_router

    documented = [requests_router, audit_router, lineage_router, slack_router]
    for router in (*documented, review_router, sign_in_router):
        app.include_router(router)
    install_openapi(app, settings, documented)
    _operations(app)
    return app


def _operations(app: FastAPI) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics``: for the operator's probes and scrapers."""

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={503: {"description": "the database does not answer (`unavailable`)"}},
    )
    def readyz(request: Request) -> Response:
        """Readiness: the database answers."""
        store = state_of(request).store
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as err:  # any failure means: not ready
            # Unauthenticated callers ask: what failed and where (user, host, port, database)
            # goes to the log only, without the password.
            log.warning("not ready: %s", describe_db_error(err, store.url))
            return JSONResponse(error_body("unavailable", UNAVAILABLE), status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}},
            503: {"description": "the database does not answer (`unavailable`)"},
        },
    )
    def metrics(request: Request) -> Response:
        """Prometheus metrics."""
        return Response(state_of(request).metrics.render(), media_type=CONTENT_TYPE)
