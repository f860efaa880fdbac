"""The ASGI application: routes, error handling, background sweeps, operations endpoints.

``create_app`` builds one from settings; ``sluicegate serve`` runs it with uvicorn. Replicas
share nothing but the database: the secret key lives there, the status hub hears other
replicas through PostgreSQL ``LISTEN``, and every replica sweeps expired requests (the store's
compare-and-set lets exactly one of them end each).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from sluicegate import __version__
from sluicegate.exceptions import ConfigError
from sluicegate.policy import Policy, load_policy
from sluicegate.server.errors import error_body, install_error_handlers
from sluicegate.server.hub import listen_postgres
from sluicegate.server.metrics import CONTENT_TYPE
from sluicegate.server.state import ServerState, state_of
from sluicegate.settings import Settings, load_settings
from sluicegate.store import Store

__all__ = ["MAX_BODY_BYTES", "create_app", "run_server"]

log = logging.getLogger("sluicegate.server")
access = logging.getLogger("sluicegate.access")

# How often waited-on requests are checked for changes this process did not hear about.
_LOST_NOTIFY_SWEEP_SECONDS = 5.0

#: Larger bodies are refused with 413 before they are read.
MAX_BODY_BYTES = 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Limits:
    """Refuse oversized bodies (413) and log one structured line per request."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
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
            await send(message)

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
        if access.isEnabledFor(logging.INFO):
            access.info(
                json.dumps(
                    {
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status_holder["status"],
                        "ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                )
            )

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


async def _sweep_expired(st: ServerState, stop: asyncio.Event) -> None:
    """End overdue requests even when nobody is watching them.

    The same sweep is the long polls' safety net: one query finds waited-on requests that
    ended without this process hearing of it (a NOTIFY lost while the listener reconnected),
    so no waiter has to poll the database itself.
    """
    beat = 0
    while not stop.is_set():
        try:
            ended = await anyio.to_thread.run_sync(st.store.expire_due)
            for req in ended:
                st.metrics.ended.labels("expired").inc()
                log.info(json.dumps({"event": "request.expired", "request_id": str(req.id)}))
            beat += 1
            waited = st.hub.waited_ids()
            if waited and beat * st.settings.expiry_interval >= _LOST_NOTIFY_SWEEP_SECONDS:
                beat = 0
                for request_id in await anyio.to_thread.run_sync(st.store.ended_among, waited):
                    st.hub.publish(request_id)
        except Exception:  # a boundary: a failed sweep is logged and tried again
            log.exception("expiry sweep failed")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=st.settings.expiry_interval)


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
    store = store or Store(settings.db_url)
    st = ServerState.build(settings, store, policy)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        st.hub.bind(asyncio.get_running_loop())
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_sweep_expired(st, stop), name="expiry-sweep")]
        if store.engine.dialect.name == "postgresql":
            tasks.append(
                asyncio.create_task(listen_postgres(store.engine, st.hub, stop), name="pg-listen")
            )
        log.info(
            json.dumps(
                {
                    "event": "server.started",
                    "version": __version__,
                    "db": store.url,
                    "policy": policy.source,
                    "policy_digest": policy.digest,
                }
            )
        )
        try:
            yield
        finally:
            st.hub.close()
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(
        title="Sluicegate",
        version=__version__,
        summary="Action-level approvals for data pipelines.",
        lifespan=lifespan,
    )
    app.state.sluicegate = st
    app.add_middleware(_Limits)
    install_error_handlers(app)

    from sluicegate.server.api import router as api_router
    from sluicegate.server.pages import router as pages_router

    app.include_router(api_router)
    app.include_router(pages_router)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz(request: Request) -> Response:
        """Readiness: the database answers."""
        try:
            with state_of(request).store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as err:  # any failure means: not ready
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            return JSONResponse(error_body("unavailable", f"database: {detail}"), status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics(request: Request) -> Response:
        """Prometheus metrics."""
        return Response(state_of(request).metrics.render(), media_type=CONTENT_TYPE)

    return app


def run_server(app: FastAPI, *, host: str, port: int, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn until SIGINT or SIGTERM.

    On the signal, open long polls answer at once with the current status (their clients poll
    again, and reattach when the server is back) instead of holding the shutdown up for as long
    as their timeout.
    """
    import uvicorn

    hub = app.state.sluicegate.hub

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            loop = hub._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(hub.close)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    _Server(config).run()
