"""Transactions: writes, group-committed batches, reads, and what runs once a write commits.

Every write transaction takes the write lock (:class:`~sluicegate.store.db.WriteLock` on
SQLite; PostgreSQL's row locks queue on their own) and then locks the audit head, so that all
writers take their locks in one order and the audit chain has one end. Inside a batch a write
is a savepoint of the batch's transaction, so a failing write undoes only itself.

Listeners hear of a request whose status changed only after the commit that changed it, and
calls registered with :meth:`Transactions.on_commit` run only once what they follow is kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from sluicegate.exceptions import StoreError

# The module, not its names: a test replaces audit.flush_head to make a commit fail.
from sluicegate.store import audit
from sluicegate.store.db import READ, WriteLock, describe_db_error

__all__ = ["Transactions", "WriteBusy", "mark_changed"]

log = logging.getLogger("sluicegate.store")

#: ``conn.info`` key: the ids of the requests whose status this transaction changed.
_CHANGED = "sluicegate_changed"
#: ``conn.info`` key set when a failed write's savepoint could not be rolled back.
_POISONED = "sluicegate_poisoned"
_SAVEPOINT = "SAVEPOINT sluicegate_write"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT sluicegate_write"
_RELEASE = "RELEASE SAVEPOINT sluicegate_write"


class WriteBusy(StoreError):
    """``Store.batch(wait=False)`` met a write lock another writer holds; nothing was done."""


def mark_changed(conn: Connection, request_id: str) -> None:
    """Note that the write on ``conn`` changed ``request_id``'s status: the listeners hear of
    it once the transaction commits."""
    conn.info.setdefault(_CHANGED, []).append(request_id)


class Transactions:
    """The transactions of one engine: see the module. ``Store`` hands these out as its own
    :meth:`~sluicegate.store.Store.write`, :meth:`~sluicegate.store.Store.batch` and
    :meth:`~sluicegate.store.Store.read`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: Called with a request id after a transaction that changed its status commits.
        self.listeners: list[Callable[[str], None]] = []
        #: The lock writers take turns on (SQLite); held by ``Store`` while it migrates.
        self.lock = WriteLock(engine)
        self._local = threading.local()  # the open batch of this thread, if any
        self._autocommit_reads = engine.dialect.name == "postgresql"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, or a savepoint of this thread's batch: see ``Store.write``."""
        batch = getattr(self._local, "conn", None)
        if batch is not None:
            head = list(batch.info[audit.HEAD])
            mark = len(self._local.after)
            # A savepoint in plain SQL: SQLAlchemy's begin_nested() compiles a new statement
            # for each savepoint (each has its own name), about 100 us a pair against 20-30
            # here (bench/bench_idle_open.py --micro), and a batch holds one per write.
            # Savepoints of one name nest: RELEASE and ROLLBACK TO take the innermost (SQLite
            # and PostgreSQL alike).
            batch.exec_driver_sql(_SAVEPOINT)
            try:
                yield batch
            except BaseException:
                try:
                    batch.exec_driver_sql(_ROLLBACK_TO)
                    batch.exec_driver_sql(_RELEASE)
                except DBAPIError:  # the writes could not be undone: the batch must not commit
                    batch.info[_POISONED] = True
                batch.info[audit.HEAD][:] = head  # the undone appends never happened
                del self._local.after[mark:]  # nor did what was to follow them
                raise
            batch.exec_driver_sql(_RELEASE)
            return
        changed: list[str] = []
        after: list[Callable[[], None]] = []
        try:
            with self.lock, self.engine.begin() as conn:
                conn.info[_CHANGED] = changed
                self._local.after = after
                try:
                    audit.lock_head(conn)
                    yield conn
                    audit.flush_head(conn)
                finally:
                    self._local.after = None
                    conn.info.pop(_CHANGED, None)
                    conn.info.pop(audit.HEAD, None)
        except DBAPIError as err:
            if isinstance(err, IntegrityError):
                raise
            raise StoreError(describe_db_error(err, str(self.engine.url))) from err
        self._announce(changed)
        _run_all(after)

    @contextmanager
    def batch(self, *, wait: bool = True) -> Iterator[None]:
        """Group commit of this thread's writes: see ``Store.batch``."""
        if getattr(self._local, "conn", None) is not None:
            raise StoreError("batches do not nest")
        if not self.lock.acquire(blocking=wait):
            raise WriteBusy("another writer holds the database's write lock")
        changed: list[str] = []
        after: list[Callable[[], None]] = []
        try:
            with _holding(self.lock), self.engine.begin() as conn:
                conn.info[_CHANGED] = changed
                audit.lock_head(conn)
                self._local.conn = conn
                self._local.after = after
                try:
                    yield
                    if conn.info.pop(_POISONED, False):
                        raise StoreError("a failed write could not be undone; nothing was kept")
                    audit.flush_head(conn)
                finally:
                    self._local.conn = None
                    self._local.after = None
                    conn.info.pop(_CHANGED, None)
                    conn.info.pop(audit.HEAD, None)
        except DBAPIError as err:
            raise StoreError(describe_db_error(err, str(self.engine.url))) from err
        self._announce(changed)
        _run_all(after)

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once what this thread wrote is committed: see ``Store.on_commit``."""
        pending = getattr(self._local, "after", None)
        if pending is None:
            _run_all([fn])
        else:
            pending.append(fn)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read, on the batch's connection inside a batch: see ``Store.read``."""
        batch = getattr(self._local, "conn", None)
        if batch is not None:
            yield batch
            return
        try:
            if self._autocommit_reads:
                # PostgreSQL: no BEGIN and COMMIT round trips around what is mostly one query.
                with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    yield conn
                return
            with self.engine.connect().execution_options(**{READ: True}) as conn, conn.begin():
                yield conn
        except SQLAlchemyError as err:
            raise StoreError(describe_db_error(err, str(self.engine.url))) from err

    def _announce(self, changed: Sequence[str]) -> None:
        for request_id in changed:  # committed: now tell whoever waits
            for listener in self.listeners:
                listener(request_id)


@contextmanager
def _holding(lock: WriteLock) -> Iterator[None]:
    """Release ``lock``, already acquired, when the block ends."""
    try:
        yield
    finally:
        lock.release()


def _run_all(calls: Sequence[Callable[[], None]]) -> None:
    for fn in calls:
        try:
            fn()
        except Exception:  # a side effect's failure never fails the committed write
            log.exception("an after-commit call failed")
