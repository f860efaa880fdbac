"""The server's writer: one thread that commits every route's writes in groups.

Routes hand their store work to :meth:`Writer.run` and await it. The thread takes whatever
has queued up (up to :data:`MAX_BATCH` calls), runs the calls one after another inside one
:meth:`Store.batch` transaction, each in its own savepoint, commits once, and only then
answers the callers. Under load that turns a thousand commits (and a thousand acquisitions of
the audit head lock) into a few dozen; when idle a batch is a single call and costs what a
plain transaction costs. A call that fails undoes only its own savepoint; a commit that fails
answers every call of the batch with the error, so no caller is told of a write that was not
kept. Calls made with :meth:`Writer.run_together` are handed over as one list per batch (gate
opens: one multi-row insert for all the gates of a batch instead of six round trips each).

Reads do not queue behind writes: :meth:`Writer.read` runs them on the event loop (SQLite) or
in a thread (PostgreSQL), and :meth:`Writer.get`, the status read every poll makes, is
coalesced by a reader thread the same way writes are grouped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from sluicegate.exceptions import NotFoundError
from sluicegate.model import ApprovalRequest
from sluicegate.store import Store
from sluicegate.store.repository import request_key

__all__ = ["MAX_BATCH", "Writer"]

log = logging.getLogger("sluicegate.server")

T = TypeVar("T")

#: The most calls committed together; bounds how long the first of them waits for the commit.
MAX_BATCH = 200

#: A queued call: (fn, bulk, loop, future). ``bulk`` False: ``fn()`` is the call. ``bulk``
#: True: ``fn`` is ``(bulk_fn, item)``, and the items of one batch that share a ``bulk_fn``
#: go to it together as one list.
_Job = tuple[Any, bool, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_Get = tuple[str, asyncio.AbstractEventLoop, "asyncio.Future[ApprovalRequest]"]


def _drain(q: queue.SimpleQueue[Any], limit: int) -> list[Any] | None:
    """The next round: wait for one item, then take what else is queued (up to ``limit``).

    None once the stop mark (``None``) is at the front; a stop mark met while taking the rest
    is put back, so the round in hand is served and the next call stops.
    """
    first = q.get()
    if first is None:
        return None
    items = [first]
    while len(items) < limit:
        try:
            item = q.get_nowait()
        except queue.Empty:
            break
        if item is None:
            q.put(None)
            break
        items.append(item)
    return items


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():  # the caller went away (cancelled); the write stands all the same
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class Writer:
    """Group commit for one server process (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        max_batch: int = MAX_BATCH,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        #: Called with the number of calls after each committed batch (the server's metrics).
        self.on_commit = on_commit
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._gets: queue.SimpleQueue[_Get | None] = queue.SimpleQueue()
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        # SQLite reads are a few tens of microseconds of local work: run them on the loop
        # rather than pay a thread hop. PostgreSQL reads wait on the network: a thread.
        self._inline_reads = store.engine.dialect.name == "sqlite"

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the writer thread, inside the next batch; its result."""
        self._start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((lambda: fn(*args, **kwargs), False, loop, fut))
        return await fut

    async def run_together(self, bulk_fn: Callable[[list[Any]], list[T]], item: Any) -> T:
        """``bulk_fn([..., item, ...])[i]``: the items queued with the same ``bulk_fn`` that
        fall in one batch are handed to it together (gate opens: one multi-row insert for the
        lot), before the batch's single calls. ``bulk_fn`` returns one result per item, in
        order; if it raises, every item of its group gets the error."""
        self._start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put(((bulk_fn, item), True, loop, fut))
        return await fut

    async def get(self, request_id: str) -> ApprovalRequest:
        """``Store.get``, coalesced: the status reads that arrive while one query runs are
        answered together by the next (one query for many readers: on this machine it more
        than doubled status reads per second on both databases)."""
        key = request_key(request_id)
        self._start_reader()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ApprovalRequest] = loop.create_future()
        self._gets.put((key, loop, fut))
        return await fut

    def _start_reader(self) -> None:
        if self._reader is not None:
            return
        with self._lock:
            if self._reader is None:
                self._reader = threading.Thread(
                    target=self._read_loop, name="sluicegate-reader", daemon=True
                )
                self._reader.start()

    def _read_loop(self) -> None:
        while (wanted := _drain(self._gets, self.max_batch)) is not None:
            try:
                found: dict[str, ApprovalRequest] | Exception = self.store.get_many(
                    [key for key, _, _ in wanted]
                )
            except Exception as err:  # every reader of this round hears it
                found = err
            for key, loop, fut in wanted:
                value: Any
                if isinstance(found, Exception):
                    ok, value = False, found
                elif key in found:
                    ok, value = True, found[key]
                else:
                    ok, value = False, NotFoundError(f"no request {key}")
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, fut, ok, value)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, a store read: on the event loop on SQLite, else in a thread."""
        if self._inline_reads:
            return fn(*args)
        return await anyio.to_thread.run_sync(fn, *args)

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        thread = self._thread
        if thread is not None:
            self._jobs.put(None)
            thread.join(timeout=30)
            self._thread = None
        reader = self._reader
        if reader is not None:
            self._gets.put(None)
            reader.join(timeout=30)
            self._reader = None

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="sluicegate-writer", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while (jobs := _drain(self._jobs, self.max_batch)) is not None:
            self._commit(jobs)

    def _commit(self, jobs: list[_Job]) -> None:
        results: list[tuple[bool, Any]] = [(False, None)] * len(jobs)
        groups: dict[Any, list[int]] = {}
        for i, (fn, bulk, _, _) in enumerate(jobs):
            if bulk:
                groups.setdefault(fn[0], []).append(i)
        try:
            with self.store.batch():
                for bulk_fn, members in groups.items():
                    try:
                        # One savepoint for the group: a failure undoes all it wrote, however
                        # many writes it made. (A single call's writes are each their own
                        # savepoint already; one more per call would cost two round trips.)
                        with self.store.write():
                            values = bulk_fn([jobs[i][0][1] for i in members])
                        for i, value in zip(members, values, strict=True):
                            results[i] = (True, value)
                    except Exception as err:  # that group's failure: handed to its callers
                        for i in members:
                            results[i] = (False, err)
                for i, (fn, bulk, _, _) in enumerate(jobs):
                    if bulk:
                        continue
                    try:
                        results[i] = (True, fn())
                    except Exception as err:  # that call's own failure: handed to its caller
                        results[i] = (False, err)
        except Exception as err:  # the commit failed: nothing of this batch was kept
            log.warning("write batch of %d failed: %s", len(jobs), err)
            results = [(False, err)] * len(jobs)
        else:
            if self.on_commit is not None:
                self.on_commit(len(jobs))
        for (ok, value), (_, _, loop, fut) in zip(results, jobs, strict=True):
            # RuntimeError: that loop has closed (shutdown), nobody is left to answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, fut, ok, value)
