"""Long polls: wake them the moment a request ends, whichever replica ended it.

Every status change calls :meth:`StatusHub.publish` after its transaction commits (the store's
listeners). On PostgreSQL the change is also announced with ``NOTIFY`` and every replica
``LISTEN``\\s, so a waiter on replica A wakes when replica B records the decision. SQLite has
no such channel: there every process follows the tail of the audit log (:func:`follow_sqlite`),
whose rows name each request that ended, so several processes on one file (``serve
--workers N``) also wake each other's waiters, within one follow interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from sqlalchemy import Engine

from sluicegate.store import STATUS_CHANNEL, Store

__all__ = ["FOLLOW_SECONDS", "StatusHub", "follow_sqlite", "listen_postgres"]

#: How often a process on SQLite reads the audit log's tail for requests other processes ended.
FOLLOW_SECONDS = 0.05

# How long one LISTEN wait lasts before the listener checks whether the server is stopping.
_LISTEN_TICK_SECONDS = 1.0

log = logging.getLogger("sluicegate.server")


class StatusHub:
    """Futures keyed by request id, resolved when that request changes."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        # A list, not a set, per request: most requests have one waiter, and a one-item list
        # is a quarter of a one-item set (10,000 waiters, 10,000 of them).
        self._waiters: defaultdict[str, list[asyncio.Future[None]]] = defaultdict(list)
        #: Set when the server stops: long polls answer at once instead of holding it up.
        self.closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the server's event loop (publish may then come from any thread)."""
        self._loop = loop

    @property
    def waiting(self) -> int:
        """How many long polls are waiting now."""
        return sum(len(s) for s in self._waiters.values())

    def publish(self, request_id: str) -> None:
        """Wake everyone waiting on ``request_id``; safe to call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake(request_id)
        else:
            loop.call_soon_threadsafe(self._wake, request_id)

    def waited_ids(self) -> list[str]:
        """The ids someone is waiting on now."""
        return list(self._waiters)

    def close(self) -> None:
        """Wake every waiter (the server is stopping): they answer with the current status."""
        self.closed = True
        for request_id in list(self._waiters):
            self._wake(request_id)

    def close_soon(self) -> None:
        """:meth:`close` from any thread (a signal handler): on the hub's loop, if it runs."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.close)

    def _wake(self, request_id: str) -> None:
        for fut in self._waiters.pop(request_id, ()):
            if not fut.done():
                fut.set_result(None)

    def register(self, request_id: str) -> asyncio.Future[None]:
        """A future resolved on the next change of ``request_id`` (register, then re-check)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[request_id].append(fut)
        return fut

    async def until_changed(self, fut: asyncio.Future[None], timeout: float) -> None:
        """Wait for ``fut`` (from :meth:`register`) or ``timeout`` seconds, whichever is
        first. One timer that settles ``fut`` itself: no task, no second future, no shield
        (``asyncio.wait_for(shield(fut))`` made three more objects per waiter)."""
        if fut.done():
            return
        timer = asyncio.get_running_loop().call_later(max(0.0, timeout), _time_up, fut)
        try:
            await fut
        finally:
            timer.cancel()

    def discard(self, request_id: str, fut: asyncio.Future[None]) -> None:
        """Forget a future whose waiter gave up."""
        waiters = self._waiters.get(request_id)
        if waiters is not None:
            with contextlib.suppress(ValueError):  # woken already: no longer listed
                waiters.remove(fut)
            if not waiters:
                self._waiters.pop(request_id, None)


def _time_up(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def listen_postgres(engine: Engine, hub: StatusHub, stop: asyncio.Event) -> None:
    """LISTEN for status changes from every replica until ``stop``; reconnects with backoff."""
    import psycopg

    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    delay = 0.5
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {STATUS_CHANNEL}")
                delay = 0.5
                while not stop.is_set():
                    # A bounded notifies() ends on its own, so the generator, which holds the
                    # connection's lock while suspended, is never left open: a generator left
                    # suspended at a yield kept the lock, and closing the connection waited for
                    # it for ever. Notifies that arrive between two calls wait in psycopg's
                    # backlog; a stop cancels the wait inside the generator, which lets go.
                    async for notify in conn.notifies(timeout=_LISTEN_TICK_SECONDS):
                        hub.publish(notify.payload)
        except (OSError, psycopg.Error) as err:
            if stop.is_set():
                return
            log.warning(
                "status listener lost its PostgreSQL connection (%s); retrying in %.1fs", err, delay
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 10.0)


async def follow_sqlite(
    store: Store, hub: StatusHub, stop: asyncio.Event, interval: float = FOLLOW_SECONDS
) -> None:
    """Publish every request that another process on this SQLite file ends, until ``stop``.

    One indexed range read of new audit rows per interval, and only while someone waits, so
    an idle server does nothing. Ends this process recorded come through twice (once from
    the store's listener): a waiter woken twice reads once more, nothing else.
    """
    last = store.audit_tail()[0]
    while not stop.is_set():
        try:
            if hub.waiting:
                last, ended = store.ended_since(last)
                for request_id in ended:
                    hub.publish(request_id)
            else:
                last = store.audit_tail()[0]
        except Exception:  # a boundary: a failed read is logged and tried again
            log.exception("following the audit log failed")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
