"""Persistence: SQLAlchemy 2 Core over SQLite (WAL, the default) or PostgreSQL (psycopg 3).

Alembic migrations are applied automatically when a :class:`Store` opens.
"""

from __future__ import annotations

from sluicegate.store.db import make_engine, migrate
from sluicegate.store.repository import (
    DecisionOutcome,
    GateOpen,
    GateStored,
    Store,
    WriteBusy,
    request_event,
)

__all__ = [
    "DecisionOutcome",
    "GateOpen",
    "GateStored",
    "Store",
    "WriteBusy",
    "make_engine",
    "migrate",
    "request_event",
]
