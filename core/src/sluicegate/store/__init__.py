"""Persistence: SQLAlchemy 2 Core over SQLite (WAL, the default) or PostgreSQL (psycopg 3).

:class:`Store` is the facade (:mod:`sluicegate.store.facade` lists the modules behind it).
Alembic migrations are applied automatically when a :class:`Store` opens.
"""

from __future__ import annotations

from sluicegate.store.db import make_engine, migrate
from sluicegate.store.decisions import STATUS_CHANNEL, DecisionOutcome
from sluicegate.store.facade import Store
from sluicegate.store.gates import GateOpen, GateStored, request_event
from sluicegate.store.rows import request_key
from sluicegate.store.tokens import TOKEN_SCOPES, TokenInfo, TokenRecord, hash_token
from sluicegate.store.transactions import WriteBusy

__all__ = [
    "STATUS_CHANNEL",
    "TOKEN_SCOPES",
    "DecisionOutcome",
    "GateOpen",
    "GateStored",
    "Store",
    "TokenInfo",
    "TokenRecord",
    "WriteBusy",
    "hash_token",
    "make_engine",
    "migrate",
    "request_event",
    "request_key",
]
