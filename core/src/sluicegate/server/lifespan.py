"""The server's start and stop, and the work it does in the background meanwhile.

At start: the lineage graph is loaded, the notification dispatcher starts, and three tasks
run until the server stops: the expiry sweep (:func:`sweep_expired`), the access log's
flush, and the status follower (PostgreSQL ``LISTEN``, or the SQLite audit tail: see
:mod:`sluicegate.server.long_polls`). At stop: long polls answer at once, the tasks end, and
what is still held (refused-link counts, queued writes, notifications, lineage events) is
written or sent, in that order.

Every replica sweeps expired requests: the store's compare-and-set lets exactly one of them
end each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import anyio
from fastapi import FastAPI

from sluicegate import __version__
from sluicegate.exceptions import StoreError
from sluicegate.server.long_polls import follow_sqlite, listen_postgres
from sluicegate.server.middleware import AccessLog, flush_access_log
from sluicegate.server.wiring import ServerState

__all__ = ["lifespan_of", "sweep_expired"]

log = logging.getLogger("sluicegate.server")

# How often waited-on requests are checked for changes this process did not hear about.
_LOST_NOTIFY_SWEEP_SECONDS = 5.0

# How long a stop waits for the background tasks to end once they are cancelled.
_STOP_TASKS_SECONDS = 5.0


async def sweep_expired(st: ServerState, stop: asyncio.Event) -> None:
    """End overdue requests even when nobody is watching them, until ``stop``.

    The same sweep is the long polls' safety net: one query finds waited-on requests that
    ended without this process hearing of it (a NOTIFY lost while the listener reconnected),
    so no waiter has to poll the database itself.
    """
    beat = 0
    while not stop.is_set():
        try:
            for req in await st.gates.expire_due():
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


def lifespan_of(
    st: ServerState, access_log: AccessLog
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: start the background work, and stop it cleanly."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        st.hub.bind(asyncio.get_running_loop())
        # The lineage graph is built before the first gate asks (100,000 edges: about a
        # second). Without a database the server still starts (readyz says so); every gate
        # then tries again before it classifies, and fails (503) rather than classify
        # without lineage.
        try:
            await anyio.to_thread.run_sync(st.lineage.refresh, 0.0)
        except StoreError as err:
            log.warning("lineage graph not loaded at start: %s", err)
        stop = asyncio.Event()
        access_log.start()
        st.dispatcher.start()
        if st.store.engine.dialect.name == "postgresql":
            follow = listen_postgres(st.store.engine, st.hub, stop)
        else:
            follow = follow_sqlite(st.store, st.hub, stop)
        tasks = [
            asyncio.create_task(sweep_expired(st, stop), name="expiry-sweep"),
            asyncio.create_task(flush_access_log(access_log, stop), name="access-log"),
            asyncio.create_task(follow, name="status-follow"),
        ]
        _log_started(st)
        try:
            yield
        finally:
            st.hub.close()
            stop.set()
            for task in tasks:
                task.cancel()
            # Bounded: a background task that will not end must not keep the server up.
            _ended, stuck = await asyncio.wait(tasks, timeout=_STOP_TASKS_SECONDS)
            for task in stuck:
                log.warning("%s did not stop within %.0f s", task.get_name(), _STOP_TASKS_SECONDS)
            access_log.flush()
            await anyio.to_thread.run_sync(st.refused_links.close)
            await anyio.to_thread.run_sync(st.writer.close)
            await anyio.to_thread.run_sync(st.dispatcher.stop)
            # What the lineage backend has not taken within 2 s is counted as dropped.
            if st.workflow.lineage is not None:
                await anyio.to_thread.run_sync(st.workflow.lineage.emitter.close, 2.0)

    return lifespan


def _log_started(st: ServerState) -> None:
    runs = st.workflow.lineage
    log.info(
        json.dumps(
            {
                "event": "server.started",
                "version": __version__,
                "db": st.store.url,
                "policy": st.policy.source,
                "policy_digest": st.policy.digest,
                "lineage_graph": {
                    "datasets": st.lineage.graph.dataset_count,
                    "edges": st.lineage.graph.edge_count,
                },
                "lineage_out": runs.emitter.transport_kind if runs and runs.enabled else "off",
            }
        )
    )
