"""Requests in the database: inserting them, looking them up, listing and counting them.

Opening gates is :mod:`sluicegate.store.gates`, deciding and ending requests
:mod:`sluicegate.store.decisions`; both build on the look-ups here. A request is always read
with its decisions, in one statement where it can be (one round trip, and one snapshot without
a transaction around two queries).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Row, Select, bindparam, func, select

from sluicegate.exceptions import NotFoundError, StoreError
from sluicegate.model import ApprovalRequest, Status
from sluicegate.store import audit
from sluicegate.store.rows import (
    DECISION_COLUMNS,
    dataset_rows,
    decision_of,
    request_key,
    request_of,
    request_row,
    request_with_decisions,
)
from sluicegate.store.schema import audit_events, decisions, request_datasets, requests
from sluicegate.store.transactions import Transactions

__all__ = [
    "INSERT_REQUEST",
    "ChangeHook",
    "by_key",
    "by_keys",
    "count",
    "ended_among",
    "ended_since",
    "existing",
    "find",
    "get",
    "get_many",
    "insert",
    "insert_many",
    "list_requests",
    "load",
    "locked",
    "page_ids",
    "run_hooks",
]

#: Called inside the write transaction of every change a request goes through: see
#: ``Store.on_change``.
ChangeHook = Callable[[Connection, str, ApprovalRequest], None]

# Statements are built once: SQLAlchemy then only binds parameters (building a statement with
# its values on every call cost more than running it). Bind names differ from column names,
# which UPDATE reserves for its SET clause.
INSERT_REQUEST = requests.insert()
_INSERT_DATASETS = request_datasets.insert()
_BY_ID_LOCKED = select(requests).where(requests.c.id == bindparam("rid")).with_for_update()
_BY_KEY = select(requests).where(requests.c.idempotency_key == bindparam("key"))
_BY_KEYS = select(requests).where(requests.c.idempotency_key.in_(bindparam("keys", expanding=True)))
_DECISIONS = tuple(decisions.c[name].label(f"d_{name}") for name in DECISION_COLUMNS)
_DECISIONS_OF = (
    select(*_DECISIONS).where(decisions.c.request_id == bindparam("rid")).order_by(decisions.c.id)
)
_WITH_DECISIONS = (
    select(requests, *_DECISIONS)
    .select_from(requests.outerjoin(decisions, decisions.c.request_id == requests.c.id))
    .where(requests.c.id == bindparam("rid"))
    .order_by(decisions.c.id)
)
_MANY_WITH_DECISIONS = (
    select(requests, *_DECISIONS)
    .select_from(requests.outerjoin(decisions, decisions.c.request_id == requests.c.id))
    .where(requests.c.id.in_(bindparam("rids", expanding=True)))
    .order_by(requests.c.id, decisions.c.id)
)
_END_KINDS = frozenset(f"request.{s.value}" for s in Status if s.terminal)
_ENDED_SINCE = (
    select(audit_events.c.seq, audit_events.c.kind, audit_events.c.request_id)
    .where(audit_events.c.seq > bindparam("after"))
    .order_by(audit_events.c.seq)
    .limit(10_000)
)


# ---------------------------------------------------------------- on a connection


def run_hooks(
    hooks: Sequence[ChangeHook], conn: Connection, kind: str, req: ApprovalRequest
) -> None:
    """Tell every hook of ``kind`` of change to ``req``, inside the change's transaction."""
    for hook in hooks:
        hook(conn, kind, req)


def insert(
    conn: Connection,
    req: ApprovalRequest,
    policy_digest: str | None,
    events: Sequence[audit.AuditEvent],
    hooks: Sequence[ChangeHook],
) -> None:
    """Insert ``req``, its datasets and ``events`` on ``conn``; :class:`IntegrityError` when
    its idempotency key is taken."""
    conn.execute(INSERT_REQUEST, {**request_row(req), "policy_digest": policy_digest})
    datasets = dataset_rows(req)
    if datasets:
        conn.execute(_INSERT_DATASETS, datasets)
    audit.append(conn, events, now=req.created_at)
    run_hooks(hooks, conn, "request.created", req)


def insert_many(
    conn: Connection, rows: list[dict[str, Any]], datasets: list[dict[str, Any]]
) -> None:
    """Insert prepared ``requests`` and ``request_datasets`` rows, each kind in one statement."""
    if rows:
        conn.execute(INSERT_REQUEST, rows)
    if datasets:
        conn.execute(_INSERT_DATASETS, datasets)


def load(conn: Connection, row: Row[Any]) -> ApprovalRequest:
    """The request of a ``requests`` row, with its decisions read on ``conn``."""
    ds = conn.execute(_DECISIONS_OF, {"rid": row.id}).all()
    return request_of(row, [decision_of(d) for d in ds])


def by_key(conn: Connection, key: str) -> ApprovalRequest | None:
    """The request opened with idempotency key ``key``, if any."""
    row = conn.execute(_BY_KEY, {"key": key}).one_or_none()
    return None if row is None else load(conn, row)


def by_keys(conn: Connection, keys: Sequence[str]) -> dict[str, ApprovalRequest]:
    """The requests opened with any of ``keys``, by key, in one query (plus their decisions)."""
    if not keys:
        return {}
    rows = conn.execute(_BY_KEYS, {"keys": list(keys)}).all()
    return {row.idempotency_key: load(conn, row) for row in rows}


def locked(conn: Connection, request_id: uuid.UUID | str) -> ApprovalRequest:
    """The request, its row locked until the transaction ends (``FOR UPDATE`` on PostgreSQL;
    SQLite's write lock already serialises writers); :class:`NotFoundError` if none."""
    row = conn.execute(_BY_ID_LOCKED, {"rid": request_key(request_id)}).one_or_none()
    if row is None:
        raise NotFoundError(f"no request {request_id}")
    return load(conn, row)


# ---------------------------------------------------------------- whole reads


def existing(tx: Transactions, idempotency_key: str) -> ApprovalRequest:
    """The request a colliding key holds (a retry, or another process got there first)."""
    with tx.read() as conn:
        found = by_key(conn, idempotency_key)
    if found is None:
        raise StoreError(f"idempotency key {idempotency_key!r} collided but has no request")
    return found


def get(tx: Transactions, request_id: uuid.UUID | str) -> ApprovalRequest:
    """The request with its decisions; :class:`NotFoundError` if there is none."""
    with tx.read() as conn:
        rows = conn.execute(_WITH_DECISIONS, {"rid": request_key(request_id)}).all()
    if not rows:
        raise NotFoundError(f"no request {request_id}")
    return request_with_decisions(rows)


def get_many(tx: Transactions, request_ids: Sequence[str]) -> dict[str, ApprovalRequest]:
    """The requests among ``request_ids`` that exist, by canonical id, in one query."""
    keys = sorted({request_key(r) for r in request_ids})
    if not keys:
        return {}
    with tx.read() as conn:
        rows = conn.execute(_MANY_WITH_DECISIONS, {"rids": keys}).all()
    grouped: dict[str, list[Row[Any]]] = {}
    for row in rows:
        grouped.setdefault(row.id, []).append(row)
    return {rid: request_with_decisions(group) for rid, group in grouped.items()}


def find(tx: Transactions, idempotency_key: str) -> ApprovalRequest | None:
    """The request opened with this idempotency key, if any."""
    with tx.read() as conn:
        return by_key(conn, idempotency_key)


def list_requests(
    tx: Transactions,
    *,
    status: Status | None,
    dataset: str | None,
    job: str | None,
    limit: int,
    before: str | None,
) -> list[ApprovalRequest]:
    """Newest first, at most ``limit`` (1 to 500); ``before``: the last id of the previous
    page; ``dataset``: a name, or ``namespace::name``.

    One statement: the page's ids (a range read of an index ending in id: see
    :func:`page_ids`), joined with their rows and decisions. No OFFSET and no count, so page
    1,000 costs what page 1 costs.
    """
    page = page_ids(
        status=status, dataset=dataset, job=job, limit=max(1, min(limit, 500)), before=before
    ).subquery("page")
    stmt = (
        select(requests, *_DECISIONS)
        .select_from(
            page.join(requests, requests.c.id == page.c.id).outerjoin(
                decisions, decisions.c.request_id == requests.c.id
            )
        )
        .order_by(requests.c.id.desc(), decisions.c.id)
    )
    with tx.read() as conn:
        rows = conn.execute(stmt).all()
    grouped: dict[str, list[Row[Any]]] = {}
    for row in rows:
        grouped.setdefault(row.id, []).append(row)
    return [request_with_decisions(group) for group in grouped.values()]


def page_ids(
    *,
    limit: int,
    status: Status | None = None,
    dataset: str | None = None,
    job: str | None = None,
    before: str | None = None,
) -> Select[tuple[str]]:
    """The ids of one page of a listing, newest first: each combination of filters reads an
    index whose last column is the id (schema: ``ix_requests_status_id``, ``..._job_id``,
    ``..._job_status_id``, ``ix_request_datasets_name_request_id``), from ``before`` down."""
    if not dataset:
        stmt = select(requests.c.id)
        if before:
            stmt = stmt.where(requests.c.id < before)
        key = requests.c.id
    else:
        # Driven by the dataset's index, in request order; a request naming the dataset
        # twice (as input and output, or in two namespaces) is one entry of the page.
        ns, sep, name = dataset.partition("::")
        stmt = select(request_datasets.c.request_id.label("id")).where(
            request_datasets.c.name == (name if sep else dataset)
        )
        if sep:
            stmt = stmt.where(request_datasets.c.namespace == ns)
        if before:
            stmt = stmt.where(request_datasets.c.request_id < before)
        if status is not None or job:
            stmt = stmt.join(requests, requests.c.id == request_datasets.c.request_id)
            if before:
                # Said of both sides: PostgreSQL does not carry the bound across the join,
                # and merged it with every request newer than ``before`` (209 ms at 100k).
                stmt = stmt.where(requests.c.id < before)
        key = request_datasets.c.request_id
        stmt = stmt.group_by(key)
    if status is not None:
        stmt = stmt.where(requests.c.status == status.value)
    if job:
        stmt = stmt.where(requests.c.job == job)
    return stmt.order_by(key.desc()).limit(limit)


def ended_among(tx: Transactions, request_ids: Sequence[str]) -> list[str]:
    """Those of ``request_ids`` that are no longer pending (one query per 500 ids)."""
    ended: list[str] = []
    with tx.read() as conn:
        for i in range(0, len(request_ids), 500):
            chunk = list(request_ids[i : i + 500])
            ended += (
                conn.execute(
                    select(requests.c.id).where(
                        requests.c.id.in_(chunk), requests.c.status != Status.PENDING.value
                    )
                )
                .scalars()
                .all()
            )
    return ended


def ended_since(tx: Transactions, seq: int) -> tuple[int, list[str]]:
    """Requests that ended in audit rows after ``seq``, and the newest seq seen."""
    with tx.read() as conn:
        rows = conn.execute(_ENDED_SINCE, {"after": seq}).all()
    if not rows:
        return seq, []
    return int(rows[-1].seq), [r.request_id for r in rows if r.kind in _END_KINDS]


def count(tx: Transactions, status: Status | None) -> int:
    """How many requests there are (in ``status``)."""
    stmt = select(func.count()).select_from(requests)
    if status is not None:
        stmt = stmt.where(requests.c.status == status.value)
    with tx.read() as conn:
        return int(conn.execute(stmt).scalar_one())
