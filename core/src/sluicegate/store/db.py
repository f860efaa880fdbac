"""Engines and migrations: SQLite (WAL) by default, PostgreSQL (psycopg 3) by URL.

On SQLite every write transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock
up front, so a transaction that reads and then writes can never fail half-way on an upgrade
from a read lock (the classic ``database is locked`` deadlock), and writers simply queue.
Reads use a plain deferred ``BEGIN`` and run beside the writer, as WAL allows.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from sluicegate.exceptions import MigrationError, StoreError
from sluicegate.settings import normalise_db_url

__all__ = ["READ", "WriteLock", "describe_db_error", "make_engine", "migrate"]

#: Execution option marking a read-only transaction (a deferred BEGIN on SQLite).
READ = "sluicegate_read"

_MIGRATION_LOCK = 7_355_001  # any fixed int64: names our advisory lock
SQLITE_BUSY_TIMEOUT_S = 30


def describe_db_error(err: BaseException, url: str) -> str:
    """One line saying what went wrong with the database, without its password."""
    safe = make_url(url).render_as_string(hide_password=True)
    orig = getattr(err, "orig", None) or err
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return f"database {safe}: {first}"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with Sluicegate's connection settings."""
    try:
        url = normalise_db_url(url)
        parsed = make_url(url)
    except (ValueError, ArgumentError) as err:
        raise StoreError(str(err)) from err
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"database {url}: folder {parent} does not exist")
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            **kwargs,
        )
        _sqlite_hooks(engine)
        return engine
    # No pre-ping: it cost a round trip on every checkout (a quarter of a status read). A
    # connection the server dropped fails its statement instead; the caller gets a StoreError
    # (503) and retries, and connections are renewed every few minutes anyway.
    options: dict[str, Any] = {"pool_size": 10, "max_overflow": 10, "pool_recycle": 300}
    return create_engine(url, **{**options, **kwargs})


class WriteLock:
    """Writers to one SQLite file take turns here, across threads and processes, in order.

    SQLite's own busy handler polls with growing sleeps and is unfair: under load one process
    could wait seconds while another kept winning the write lock. A blocking ``flock`` on a
    file beside the database is handed over by the kernel the moment it is released, so
    writers (``serve --workers``, the CLI) queue instead of polling. PostgreSQL needs none of
    this (its row locks queue): there the lock does nothing.
    """

    def __init__(self, engine: Engine) -> None:
        self._thread_lock = threading.Lock()
        self._path: str | None = None
        self._fd: int | None = None
        database = engine.url.database or ""
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            self._path = f"{Path(database).expanduser().resolve()}-lock"
        self.enabled = engine.dialect.name == "sqlite"

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` only if no thread or process holds it now
        (False: it was taken, and nothing is held)."""
        if not self.enabled:
            return True
        if not self._thread_lock.acquire(blocking):
            return False
        if self._path is not None:
            try:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._thread_lock.release()
                return False
            except BaseException:
                self._thread_lock.release()
                raise
        return True

    def release(self) -> None:
        if self.enabled:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._thread_lock.release()

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite, so that BEGIN is ours to emit.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(READ, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to call from many processes at once."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    try:
        with engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                # Held to the end of this transaction: a second process waits, then finds
                # the schema already at head.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except DBAPIError as err:
        raise StoreError(describe_db_error(err, str(engine.url))) from err
    except SQLAlchemyError as err:
        raise MigrationError(f"migrating {engine.url.render_as_string()}: {err}") from err
