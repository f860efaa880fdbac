"""Running the app: uvicorn in this process, or ``--workers N`` processes on one socket.

``sluicegate serve`` calls these. Replicas share nothing but the database and the secret key
(never stored in the database: see :mod:`sluicegate.server.keys`); workers on one machine are
replicas too, and share one listening port and a private directory of metrics files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from typing import Any

from fastapi import FastAPI

from sluicegate._listen import listen
from sluicegate.server.app import create_app
from sluicegate.settings import Settings

__all__ = ["run_server", "run_workers"]

log = logging.getLogger("sluicegate.server")


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
            hub.close_soon()
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
