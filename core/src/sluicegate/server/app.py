"""The ASGI application: routes, error handling, background sweeps, operations endpoints.

``create_app`` builds one from settings; ``sluicegate serve`` runs it with uvicorn. Replicas
share nothing but the database and the secret key (never stored in the database: see
:mod:`sluicegate.server.keys`): the status hub hears other replicas through PostgreSQL
``LISTEN``, and every replica sweeps expired requests (the store's compare-and-set lets
exactly one of them end each).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.engine import make_url

from sluicegate import __version__
from sluicegate._listen import listen
from sluicegate.exceptions import ConfigError, StoreError
from sluicegate.policy import Policy, load_policy
from sluicegate.server._openapi import install_openapi
from sluicegate.server.errors import UNAVAILABLE, error_body, install_error_handlers
from sluicegate.server.hub import follow_sqlite, listen_postgres
from sluicegate.server.keys import signing_keys
from sluicegate.server.metrics import CONTENT_TYPE
from sluicegate.server.state import ServerState, state_of
from sluicegate.settings import Settings, load_settings
from sluicegate.store import Store
from sluicegate.store.db import describe_db_error

__all__ = ["MAX_BODY_BYTES", "create_app", "run_server", "run_workers"]

log = logging.getLogger("sluicegate.server")
access = logging.getLogger("sluicegate.access")

# How often waited-on requests are checked for changes this process did not hear about.
_LOST_NOTIFY_SWEEP_SECONDS = 5.0

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
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        stream = self._stream or sys.stderr
        with contextlib.suppress(OSError, ValueError):  # a closed stderr must not stop serving
            stream.write("".join(lines))
            stream.flush()


async def _flush_access(log_: AccessLog, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=ACCESS_FLUSH_SECONDS)
        log_.flush()


#: On every answer: no browser may guess a type other than the one declared (a JSON answer
#: that echoes a caller's text must never be run as HTML or script).
_NOSNIFF = (b"x-content-type-options", b"nosniff")


def _with_nosniff(message: Message) -> None:
    headers = list(message.get("headers") or ())
    if not any(name.lower() == _NOSNIFF[0] for name, _ in headers):
        headers.append(_NOSNIFF)
    message["headers"] = headers


class _Limits:
    """Refuse oversized bodies (413), mark every answer ``nosniff``, and log one structured
    line per request. One pure ASGI layer for all three: the allowed gate's path is
    measured in microseconds, and each extra middleware costs a few."""

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


async def _sweep_expired(st: ServerState, stop: asyncio.Event) -> None:
    """End overdue requests even when nobody is watching them.

    The same sweep is the long polls' safety net: one query finds waited-on requests that
    ended without this process hearing of it (a NOTIFY lost while the listener reconnected),
    so no waiter has to poll the database itself.
    """
    beat = 0
    while not stop.is_set():
        try:
            ended = await st.writer.run(st.approvals.expire_due)
            for req in ended:
                st.metrics.ended.labels("expired").inc()
                log.info(json.dumps({"event": "request.expired", "request_id": str(req.id)}))
            beat += 1
            waited = st.hub.waited_ids()
            if waited and beat * st.settings.expiry_interval >= _LOST_NOTIFY_SWEEP_SECONDS:
                beat = 0
                for request_id in await st.writer.read(st.store.ended_among, waited):
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
    # The key first: a PostgreSQL server without one stops before it touches the database.
    keys = signing_keys(settings, store.engine.url if store else make_url(settings.db_url))
    store = store or Store(settings.db_url)
    st = ServerState.build(settings, store, policy, keys)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        st.hub.bind(asyncio.get_running_loop())
        # The lineage graph is built before the first gate asks (100,000 edges: about a second).
        # Without a database the server still starts (readyz says so); every gate then tries
        # again before it classifies, and fails (503) rather than classify without lineage.
        try:
            await anyio.to_thread.run_sync(st.lineage.refresh, 0.0)
        except StoreError as err:
            log.warning("lineage graph not loaded at start: %s", err)
        stop = asyncio.Event()
        access_log.start()
        st.dispatcher.start()
        tasks = [
            asyncio.create_task(_sweep_expired(st, stop), name="expiry-sweep"),
            asyncio.create_task(_flush_access(access_log, stop), name="access-log"),
        ]
        if store.engine.dialect.name == "postgresql":
            tasks.append(
                asyncio.create_task(listen_postgres(store.engine, st.hub, stop), name="pg-listen")
            )
        else:
            tasks.append(asyncio.create_task(follow_sqlite(store, st.hub, stop), name="follow"))
        # Everything built so far lives as long as the server: move it out of the collector's
        # way, and collect less often (a request allocates many short-lived objects, and the
        # default threshold ran a collection every few requests).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        log.info(
            json.dumps(
                {
                    "event": "server.started",
                    "version": __version__,
                    "db": store.url,
                    "policy": policy.source,
                    "policy_digest": policy.digest,
                    "lineage_graph": {
                        "datasets": st.lineage.graph.dataset_count,
                        "edges": st.lineage.graph.edge_count,
                    },
                    "lineage_out": (
                        st.approvals.lineage.emitter.transport_kind
                        if st.approvals.lineage and st.approvals.lineage.enabled
                        else "off"
                    ),
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
            access_log.flush()
            await anyio.to_thread.run_sync(st.refused_links.close)
            await anyio.to_thread.run_sync(st.writer.close)
            await anyio.to_thread.run_sync(st.dispatcher.stop)
            # What the lineage backend has not taken within 2 s is counted as dropped.
            if st.approvals.lineage is not None:
                await anyio.to_thread.run_sync(st.approvals.lineage.emitter.close, 2.0)

    app = FastAPI(
        title="Sluicegate",
        version=__version__,
        summary="Action-level approvals for data pipelines.",
        lifespan=lifespan,
    )
    app.state.sluicegate = st
    access_log = AccessLog()
    app.add_middleware(_Limits, access_log=access_log)
    install_error_handlers(app)

    from sluicegate.server.api import router as api_router
    from sluicegate.server.lineage_api import router as lineage_router
    from sluicegate.server.pages import router as pages_router
    from sluicegate.server.slack_api import router as slack_router

    app.include_router(api_router)
    app.include_router(lineage_router)
    app.include_router(slack_router)
    app.include_router(pages_router)
    install_openapi(app, settings, [api_router, lineage_router, slack_router])

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

    return app


def run_server(
    app: FastAPI,
    *,
    host: str,
    port: int,
    log_level: str = "info",
    sockets: list[socket.socket] | None = None,
) -> None:
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
    _Server(config).run(sockets=sockets)


def _worker(settings: Settings, sock: socket.socket, log_level: str) -> None:
    """One of ``run_workers``' processes: its own app on the shared listening socket."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        run_server(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            sockets=[sock],
        )


def run_workers(
    settings: Settings, *, log_level: str = "info", sockets: list[socket.socket] | None = None
) -> None:
    """Serve with ``settings.workers`` processes on one listening socket, until a signal.

    Each process is a whole server (its own writer, hub and sweeps) and shares nothing with
    the others but the database, exactly as replicas on several machines would; the kernel
    spreads connections over them. A process that dies is started again; SIGINT or SIGTERM
    stops them all (each answers its open long polls first). ``sockets``: the listening
    sockets, one per worker, made by :func:`listen` (by default, here).

    The one other thing they share is a private directory of metrics files, made here and
    removed on the way out, so that whichever process answers ``/metrics`` reports them all.
    """
    import multiprocessing
    import shutil
    import signal
    import tempfile

    from prometheus_client.multiprocess import mark_process_dead

    from sluicegate.server.metrics import MULTIPROC_ENV

    ctx = multiprocessing.get_context("spawn")
    socks = (
        sockets if sockets is not None else listen(settings.host, settings.port, settings.workers)
    )
    stopping = False

    def start(k: int) -> Any:
        proc = ctx.Process(target=_worker, args=(settings, socks[k], log_level), daemon=False)
        proc.start()
        return proc

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    # Fresh and private (0700): never files a previous run or another server left behind,
    # whatever PROMETHEUS_MULTIPROC_DIR this process was given. The workers inherit it.
    metrics_dir = tempfile.mkdtemp(prefix="sluicegate-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        procs = [start(k) for k in range(settings.workers)]
        log.info(json.dumps({"event": "workers.started", "pids": [p.pid for p in procs]}))
        while True:
            for i, proc in enumerate(procs):
                proc.join(timeout=0.5 / len(procs))
                if not proc.is_alive() and not stopping:
                    log.warning(
                        json.dumps({"event": "worker.died", "pid": proc.pid, "code": proc.exitcode})
                    )
                    # Its counts stay in the totals; its live gauges (long polls) go.
                    if proc.pid is not None:
                        mark_process_dead(proc.pid, metrics_dir)  # type: ignore[no-untyped-call]
                    time.sleep(1.0)  # a worker that dies at once must not spin
                    procs[i] = start(i)
            if stopping and not any(p.is_alive() for p in procs):
                break
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        for sock in socks:
            sock.close()
