"""Group commit: one writer thread that commits every write of the server in groups.

This is the server's one write path: the workflow's calls (gates, decisions, cancels,
releases, the expiry sweep), sessions, refused links, lineage events, all go through
:class:`Writer`. Async callers await :meth:`Writer.run`; threads (a timer, shutdown) call
:meth:`Writer.call`. The thread takes whatever has queued up (up to :data:`MAX_BATCH` calls),
runs the calls one after another inside one :meth:`Store.batch` transaction, each in its own
savepoint, commits once, and only then answers the callers. Under load that turns a thousand
commits (and a thousand acquisitions of the audit head lock) into a few dozen; when idle a
batch is a single call and costs what a plain transaction costs. A call that fails undoes only
its own savepoint; a commit that fails answers every call of the batch with the error, so no
caller is told of a write that was not kept. Calls made with :meth:`Writer.run_together` are
handed over as one list per batch (gate opens: one multi-row insert for all the gates of a
batch instead of six round trips each); if that list fails, each of its items is tried again
alone, so one caller's bad write never fails another's.

A quiet writer is skipped: on SQLite, a call that finds nothing queued and nothing written in
the last :data:`QUIET_S` is committed on the event loop itself, as a batch of one. Handing it
to a thread that has been asleep, and being woken by it again, cost more than the commit (an
allowed gate opened after 50 ms of quiet: 4.65 ms with the hops, 3.97 ms without, p50 by
``bench/bench_idle_open.py``). Calls closer together than that go to the thread and are
grouped as before, so under load nothing changes; nor does it wait: if another thread or
process holds the write lock, the call is queued.

Reads do not queue behind writes: :meth:`Writer.read` runs them on the event loop (SQLite) or
in a thread (PostgreSQL), and :meth:`Writer.get`, the status read every poll makes, is
coalesced by a reader thread the same way writes are grouped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from sluicegate.exceptions import NotFoundError
from sluicegate.model import ApprovalRequest
from sluicegate.store import Store, WriteBusy, request_key

__all__ = ["MAX_BATCH", "QUIET_S", "Writer"]

log = logging.getLogger("sluicegate.server")

T = TypeVar("T")

#: The most calls committed together; bounds how long the first of them waits for the commit.
MAX_BATCH = 200

#: How long the writer must have had nothing to write before a call is committed on the loop.
#: Below 1 / QUIET_S writes per second commits run inline (each blocks the loop about 1 ms);
#: above it they meet each other and are grouped by the thread.
QUIET_S = 0.01

#: How a queued call's caller hears its result: ``reply(ok, result or error)``.
_Reply = Callable[[bool, Any], None]
#: A queued call: (fn, bulk, reply). ``bulk`` False: ``fn()`` is the call. ``bulk`` True:
#: ``fn`` is ``(bulk_fn, item)``, and the items of one batch that share a ``bulk_fn`` go to it
#: together as one list.
_Job = tuple[Any, bool, _Reply]
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


class _Undone(Exception):
    """Carries the error of a batch's only call out of the batch, to roll it back."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():  # the caller went away (cancelled); the write stands all the same
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _on_loop(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any]) -> _Reply:
    """A reply that settles ``fut`` on its event loop (from the writer's thread)."""

    def reply(ok: bool, value: Any) -> None:
        # RuntimeError: that loop has closed (shutdown), nobody is left to answer.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, fut, ok, value)

    return reply


def _to_thread(fut: concurrent.futures.Future[Any]) -> _Reply:
    """A reply that settles a waiting thread's ``fut``."""

    def reply(ok: bool, value: Any) -> None:
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    return reply


class Writer:
    """Group commit for one server process (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        max_batch: int = MAX_BATCH,
        on_commit: Callable[[int], None] | None = None,
        *,
        inline_when_quiet: bool | None = None,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        #: Called with the number of calls after each committed batch (the server's metrics).
        self.on_commit = on_commit
        # Commit a quiet writer's call on the loop (see the module's docstring): SQLite only,
        # where a commit is local work; PostgreSQL commits wait on the network.
        self._inline = (
            store.engine.dialect.name == "sqlite"
            if inline_when_quiet is None
            else inline_when_quiet
        )
        self._last_write = 0.0  # time.monotonic() when the last batch ended (any thread)
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
        call = functools.partial(fn, *args, **kwargs)
        done, value = self._try_inline(call, False)
        if done:
            return value  # type: ignore[no-any-return]
        self._start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((call, False, _on_loop(loop, fut)))
        return await fut

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """:meth:`run` for a thread that is not the event loop's (a timer, shutdown): queues
        ``fn(*args, **kwargs)`` into the next batch and blocks until it is committed."""
        self._start()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((functools.partial(fn, *args, **kwargs), False, _to_thread(fut)))
        return fut.result()

    async def run_together(self, bulk_fn: Callable[[list[Any]], list[T]], item: Any) -> T:
        """``bulk_fn([..., item, ...])[i]``: the items queued with the same ``bulk_fn`` that
        fall in one batch are handed to it together (gate opens: one multi-row insert for the
        lot), before the batch's single calls. ``bulk_fn`` returns one result per item, in
        order; if it raises, it is called again for each item alone (each in its own
        savepoint), and each caller gets its own item's result or error."""
        done, value = self._try_inline((bulk_fn, item), True)
        if done:
            return value  # type: ignore[no-any-return]
        self._start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put(((bulk_fn, item), True, _on_loop(loop, fut)))
        return await fut

    def _try_inline(self, fn: Any, bulk: bool) -> tuple[bool, Any]:
        """``(True, result)`` if the call was committed here, on the caller's thread, as a
        batch of its own (raising its error if it failed); ``(False, None)`` if it must queue:
        the writer is not quiet, or another writer holds the lock."""
        if not self._inline or not self._jobs.empty():
            return False, None
        if time.monotonic() - self._last_write < QUIET_S:
            return False, None
        try:
            ((ok, value),) = self._results([(fn, bulk)], wait=False)
        except WriteBusy:
            return False, None
        if not ok:
            raise value
        return True, value

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
        results = self._results([(fn, bulk) for fn, bulk, _ in jobs])
        for (ok, value), (_, _, reply) in zip(results, jobs, strict=True):
            reply(ok, value)

    def _results(
        self, jobs: list[tuple[Any, bool]], *, wait: bool = True
    ) -> list[tuple[bool, Any]]:
        """Run ``jobs`` (``(fn, bulk)``, as queued) in one batch: ``(ok, result or error)``
        for each. ``wait=False``: :class:`WriteBusy` if the write lock is taken."""
        results: list[tuple[bool, Any]] = [(False, None)] * len(jobs)
        groups: dict[Any, list[int]] = {}
        for i, (fn, bulk) in enumerate(jobs):
            if bulk:
                groups.setdefault(fn[0], []).append(i)
        try:
            with self.store.batch(wait=wait):
                for bulk_fn, members in groups.items():
                    if len(jobs) == 1:
                        # Alone in its batch: if it fails the whole transaction is rolled
                        # back, so it needs no savepoint (two statements fewer for the gate
                        # a quiet server opens).
                        try:
                            results[0] = (True, bulk_fn([jobs[0][0][1]])[0])
                        except Exception as err:
                            raise _Undone(err) from err
                        continue
                    try:
                        # One savepoint for the group: a failure undoes all it wrote, however
                        # many writes it made. (A single call's writes are each their own
                        # savepoint already; one more per call would cost two round trips.)
                        with self.store.write():
                            values = bulk_fn([jobs[i][0][1] for i in members])
                        for i, value in zip(members, values, strict=True):
                            results[i] = (True, value)
                    except Exception as err:
                        # Whose write failed is not known, and one caller's bad write must
                        # never fail another's: each is tried again alone, in its own
                        # savepoint, and only its own failure reaches its caller.
                        if len(members) == 1:
                            results[members[0]] = (False, err)
                            continue
                        for i in members:
                            results[i] = self._alone(bulk_fn, jobs[i][0][1])
                for i, (fn, bulk) in enumerate(jobs):
                    if bulk:
                        continue
                    try:
                        results[i] = (True, fn())
                    except Exception as err:  # that call's own failure: handed to its caller
                        results[i] = (False, err)
        except WriteBusy:
            raise  # nothing was run
        except _Undone as undone:  # the batch's only call failed: nothing of it was kept
            results = [(False, undone.error)]
        except Exception as err:  # the commit failed: nothing of this batch was kept
            log.warning("write batch of %d failed: %s", len(jobs), err)
            results = [(False, err)] * len(jobs)
        else:
            if self.on_commit is not None:
                self.on_commit(len(jobs))
        finally:
            self._last_write = time.monotonic()
        return results

    def _alone(self, bulk_fn: Callable[[list[Any]], list[Any]], item: Any) -> tuple[bool, Any]:
        """``bulk_fn([item])`` in a savepoint of its own, inside the open batch."""
        try:
            with self.store.write():
                return True, bulk_fn([item])[0]
        except Exception as err:  # this item's own failure: handed to its caller alone
            return False, err
