"""The store: requests, decisions and the audit log, on SQLite or PostgreSQL.

Every change is one transaction that also appends its audit rows, and every status change is
a compare-and-set (``UPDATE ... WHERE status = 'pending'``), so concurrent decisions from
threads, processes or server replicas end a request exactly once. A decision first locks its
request row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
serialises writers), so two approvals arriving together are counted together.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

# Imported as a module: sluicegate.audit imports this package's schema, so a from-import
# of its names here would be circular.
from sluicegate import audit
from sluicegate.exceptions import (
    ActionError,
    ConflictError,
    ExpiredError,
    NotFoundError,
    StoreError,
    TransitionError,
)
from sluicegate.model import (
    Action,
    ApprovalRequest,
    Asset,
    Channel,
    ClassificationSource,
    Decision,
    LineageHop,
    ParentRun,
    Requester,
    Status,
    Verdict,
    canonical_json,
    check_transition,
    utcnow,
)
from sluicegate.store.db import READ, WriteLock, describe_db_error, make_engine, migrate
from sluicegate.store.schema import (
    audit_events,
    audit_head,
    decisions,
    request_datasets,
    requests,
    tokens,
    used_links,
)

#: PostgreSQL channel on which every status change is announced (payload: the request id),
#: so that a long poll on any replica returns as soon as any replica ends the request.
STATUS_CHANNEL = "sluicegate_status"
log = logging.getLogger("sluicegate.store")
_CHANGED = "sluicegate_changed"
#: ``conn.info`` key set when a failed write's savepoint could not be rolled back.
_POISONED = "sluicegate_poisoned"
_SAVEPOINT = "SAVEPOINT sluicegate_write"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT sluicegate_write"
_RELEASE = "RELEASE SAVEPOINT sluicegate_write"

# Statements are built once: SQLAlchemy then only binds parameters (building a statement with
# its values on every call cost more than running it). Bind names differ from column names,
# which UPDATE reserves for its SET clause.
_INSERT_REQUEST = requests.insert()
_INSERT_DATASETS = request_datasets.insert()
_INSERT_DECISION = decisions.insert()
_BY_ID = select(requests).where(requests.c.id == bindparam("rid"))
_BY_ID_LOCKED = _BY_ID.with_for_update()
_BY_KEY = select(requests).where(requests.c.idempotency_key == bindparam("key"))
_BY_KEYS = select(requests).where(requests.c.idempotency_key.in_(bindparam("keys", expanding=True)))
# A request with its decisions in one statement: one round trip, and one snapshot without
# a transaction around two queries.
_DECISION_COLUMNS = ("reviewer", "verdict", "comment", "channel", "fingerprint", "decided_at")
_DECISIONS_OF = (
    select(*(decisions.c[name].label(f"d_{name}") for name in _DECISION_COLUMNS))
    .where(decisions.c.request_id == bindparam("rid"))
    .order_by(decisions.c.id)
)
_WITH_DECISIONS = (
    select(requests, *(decisions.c[name].label(f"d_{name}") for name in _DECISION_COLUMNS))
    .select_from(requests.outerjoin(decisions, decisions.c.request_id == requests.c.id))
    .where(requests.c.id == bindparam("rid"))
    .order_by(decisions.c.id)
)
_MANY_WITH_DECISIONS = (
    select(requests, *(decisions.c[name].label(f"d_{name}") for name in _DECISION_COLUMNS))
    .select_from(requests.outerjoin(decisions, decisions.c.request_id == requests.c.id))
    .where(requests.c.id.in_(bindparam("rids", expanding=True)))
    .order_by(requests.c.id, decisions.c.id)
)
_BUMP_VERSION = (
    update(requests).where(requests.c.id == bindparam("rid")).values(version=requests.c.version + 1)
)
_CAS_STATUS = (
    update(requests)
    .where(requests.c.id == bindparam("rid"), requests.c.status == Status.PENDING.value)
    .values(status=bindparam("new"), decided_at=bindparam("now"), version=requests.c.version + 1)
)
_TOKEN = select(tokens.c.id, tokens.c.principal, tokens.c.scope, tokens.c.expires_at).where(
    tokens.c.token_hash == bindparam("h"), tokens.c.revoked_at.is_(None)
)
_TOKEN_COLUMNS = (
    tokens.c.id,
    tokens.c.principal,
    tokens.c.scope,
    tokens.c.created_at,
    tokens.c.expires_at,
    tokens.c.revoked_at,
)
_NOTIFY = text("SELECT pg_notify(:c, :id)")
_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_END_KINDS = frozenset(f"request.{s.value}" for s in Status if s.terminal)
_ENDED_SINCE = (
    select(audit_events.c.seq, audit_events.c.kind, audit_events.c.request_id)
    .where(audit_events.c.seq > bindparam("after"))
    .order_by(audit_events.c.seq)
    .limit(10_000)
)

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
    "request_event",
    "request_key",
]


def hash_token(token: str) -> str:
    """The stored form of an API token (tokens are random, so a plain sha256 is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


#: What a token may do: ``request`` opens and cancels gates, ``review`` decides, ``audit``
#: reads and verifies the audit log.
TOKEN_SCOPES = ("request", "review", "audit")


@dataclass(frozen=True)
class TokenInfo:
    """Who a bearer token belongs to, and until when it holds."""

    principal: str
    scope: str
    id: str = ""
    #: None: until revoked.
    expires_at: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        """True once the token's expiry has passed."""
        return self.expires_at is not None and (now or utcnow()) >= self.expires_at


@dataclass(frozen=True)
class TokenRecord:
    """A token as ``sluicegate token list`` shows it: never the token, nor its hash."""

    id: str
    principal: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def request_event(
    req: ApprovalRequest, kind: str, *, actor: str | None = None, **data: Any
) -> audit.AuditEvent:
    """An audit event about ``req``, carrying its job and datasets so exports can filter."""
    return audit.AuditEvent(
        kind=kind,
        request_id=str(req.id),
        actor=actor,
        job=req.requester.job or None,
        datasets=[str(a) for a in req.action.assets],
        data=data,
    )


@dataclass(frozen=True)
class GateOpen:
    """One gate for :meth:`Store.open_gates` and :meth:`Store.open_gate`.

    ``request`` is the request to create when the policy requires approval (None when it
    allowed or denied the action), ``events`` the audit rows that answer records. ``action``
    and ``requester`` say what is asked and by whom; they default to ``request``'s. A request
    that already holds ``key`` is given back only to the same principal asking for the same
    action (fingerprint); anything else is a conflict.
    """

    key: str
    request: ApprovalRequest | None
    events: Sequence[audit.AuditEvent]
    policy_digest: str | None = None
    action: Action | None = None
    requester: Requester | None = None
    #: ``action``'s fingerprint, when the caller has it already (it is a hash of the action).
    fingerprint: str | None = None

    def claim(self) -> tuple[str | None, str | None]:
        """``(principal, fingerprint)``: who asks, for what; None where nothing says."""
        req = self.request
        requester = self.requester or (req.requester if req is not None else None)
        fingerprint = self.fingerprint or (req.fingerprint if req is not None else None)
        if fingerprint is None and self.action is not None:
            fingerprint = self.action.fingerprint()
        return (requester.principal if requester is not None else None), fingerprint

    def conflict_event(self, existing: ApprovalRequest, reason: str) -> audit.AuditEvent:
        """The ``gate.conflict`` row: who reused ``key``, for which action, and why refused.

        It names the request that holds the key (auditors need it) but records nothing of
        that request's action: the row describes the caller's gate.
        """
        principal, fingerprint = self.claim()
        req = self.request
        action = self.action or (req.action if req is not None else None)
        requester = self.requester or (req.requester if req is not None else None)
        return audit.AuditEvent(
            kind="gate.conflict",
            request_id=str(existing.id),
            actor=principal,
            job=(requester.job or None) if requester is not None else None,
            datasets=[str(a) for a in action.assets] if action is not None else (),
            data={"idempotency_key": self.key, "reason": reason, "fingerprint": fingerprint},
        )


@dataclass(frozen=True)
class GateStored:
    """What opening one gate did (:meth:`Store.open_gates`)."""

    #: The request the gate waits on: new, or the one ``key`` already held (also when that
    #: was a conflict, for the caller to decide what to show); None when the policy answered.
    request: ApprovalRequest | None
    #: True when ``request`` was created by this call.
    created: bool
    #: Why ``key``'s request was not given back: ``principal`` (another principal's key) or
    #: ``fingerprint`` (the same principal, another action); None when there was no conflict.
    conflict: str | None = None


def _check_keys(gates: Sequence[GateOpen]) -> None:
    for gate in gates:
        if gate.request is not None and gate.request.idempotency_key != gate.key:
            raise ActionError("the request's idempotency key differs from the gate's")


def _conflict(existing: ApprovalRequest, gate: GateOpen) -> str | None:
    """Why ``gate`` may not reattach to ``existing``, the request its key holds, or None.

    Fails closed: a gate that does not say who asks or for what never matches.
    """
    principal, fingerprint = gate.claim()
    if principal is None or existing.requester.principal != principal:
        return "principal"
    if fingerprint is None or existing.fingerprint != fingerprint:
        return "fingerprint"
    return None


@dataclass(frozen=True)
class DecisionOutcome:
    """What recording a decision did."""

    request: ApprovalRequest
    #: The terminal status this decision caused, or None if the request still waits.
    ended: Status | None


class WriteBusy(StoreError):
    """``Store.batch(wait=False)`` met a write lock another writer holds; nothing was done."""


@contextmanager
def _holding(lock: WriteLock) -> Iterator[None]:
    """Release ``lock``, already acquired, when the block ends."""
    try:
        yield
    finally:
        lock.release()


class Store:
    """Persistence for Sluicegate. Open it with a SQLAlchemy URL; migrations run on open."""

    def __init__(self, url: str, *, auto_migrate: bool = True, **engine_kwargs: Any) -> None:
        self.engine = make_engine(url, **engine_kwargs)
        self.url = self.engine.url.render_as_string(hide_password=True)
        #: Called with a request id after a transaction that changed its status commits.
        self.listeners: list[Callable[[str], None]] = []
        #: Called inside the write transaction of every change a request goes through, with
        #: that transaction's connection, the change (``request.created``,
        #: ``decision.recorded``, ``request.<terminal status>``) and the request after it: what
        #: is written there (the notification outbox) commits or rolls back with the change.
        self.on_change: list[Callable[[Connection, str, ApprovalRequest], None]] = []
        self._local = threading.local()  # the open batch of this thread, if any
        self._write_lock = WriteLock(self.engine)
        self._autocommit_reads = self.engine.dialect.name == "postgresql"
        if auto_migrate:
            with self._write_lock:  # on SQLite, processes opening a new file migrate in turn
                migrate(self.engine)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; database failures become :class:`StoreError`.

        Inside :meth:`batch` (same thread) it is a savepoint of the batch's transaction
        instead: a failing write undoes only itself, and the batch commits the rest at once.
        """
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
            with self._write_lock, self.engine.begin() as conn:
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
        """Group commit: every write in this thread until the block ends is one transaction.

        The server's writer thread runs many callers' writes inside one batch, so they share
        one commit and one lock of the audit head (SQLite commits, PostgreSQL round trips and
        the head lock were what bounded opens per second). Reads in the block see the batch's
        uncommitted rows. Nothing is announced to listeners before the commit.

        ``wait=False``: :class:`WriteBusy` at once, instead of waiting, when another thread or
        process is writing to this SQLite file (for a caller that must not block).
        """
        if getattr(self._local, "conn", None) is not None:
            raise StoreError("batches do not nest")
        if not self._write_lock.acquire(blocking=wait):
            raise WriteBusy("another writer holds the database's write lock")
        changed: list[str] = []
        after: list[Callable[[], None]] = []
        try:
            with _holding(self._write_lock), self.engine.begin() as conn:
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
        """Run ``fn`` once what this thread wrote is committed: at the commit of the write
        transaction or batch this thread is in, or at once outside both (the write before this
        call has committed). Dropped if the write it follows is undone. For side effects that
        must not announce a write that was not kept (lineage events, the dispatcher's wake-up);
        ``fn``'s failures are logged, never raised."""
        pending = getattr(self._local, "after", None)
        if pending is None:
            _run_all([fn])
        else:
            pending.append(fn)

    def _announce(self, changed: Sequence[str]) -> None:
        for request_id in changed:  # committed: now tell whoever waits
            for listener in self.listeners:
                listener(request_id)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read: a read-only transaction on SQLite (a snapshot beside the writer, as WAL
        allows); on PostgreSQL, autocommit statements, each seeing what was committed when it
        ran (the hot reads are single statements).

        Inside :meth:`batch` it reads on the batch's connection, uncommitted rows included.
        """
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

    # ------------------------------------------------------------------ audit

    def record(self, events: Sequence[audit.AuditEvent]) -> list[int]:
        """Append audit events on their own (facts with no state change, e.g. a rejection)."""
        with self.write() as conn:
            return audit.append(conn, events)

    # ------------------------------------------------------------------ requests

    def create_request(
        self,
        req: ApprovalRequest,
        *,
        policy_digest: str | None = None,
        events: Sequence[audit.AuditEvent] = (),
    ) -> tuple[ApprovalRequest, bool]:
        """Insert ``req`` unless its idempotency key exists; returns (request, created).

        A retried task asks with the same key and gets the first request back, with no new
        audit rows, so nothing downstream (notifications) fires twice.
        """
        # No look-up first: the unique key decides, in one round trip, even between replicas.
        try:
            with self.write() as conn:
                self._insert_request(conn, req, policy_digest, events)
                return req, True
        except IntegrityError:
            return self._existing(req.idempotency_key), False

    def _insert_request(
        self,
        conn: Connection,
        req: ApprovalRequest,
        policy_digest: str | None,
        events: Sequence[audit.AuditEvent],
    ) -> None:
        conn.execute(_INSERT_REQUEST, {**_row_of(req), "policy_digest": policy_digest})
        datasets = _dataset_rows(req)
        if datasets:
            conn.execute(_INSERT_DATASETS, datasets)
        audit.append(conn, events, now=req.created_at)
        self._changed(conn, "request.created", req)

    def _changed(self, conn: Connection, kind: str, req: ApprovalRequest) -> None:
        for hook in self.on_change:
            hook(conn, kind, req)

    def _existing(self, idempotency_key: str) -> ApprovalRequest:
        # The key exists (a retry, or another process got there first): return that request.
        with self.read() as conn:
            existing = self._by_key(conn, idempotency_key)
        if existing is None:
            raise StoreError(f"idempotency key {idempotency_key!r} collided but has no request")
        return existing

    def open_gate(self, gate: GateOpen) -> GateStored:
        """Open one gate in one transaction (:meth:`open_gates` for a single gate).

        The request already opened with ``gate.key`` comes back as it is, with nothing
        recorded, when the same principal asks for the same action (a retry). Any other
        caller of that key is a conflict: a ``gate.conflict`` audit row, and the request is
        not reattached. Otherwise ``gate.request`` is created with ``gate.events``, or, when
        it is None (the policy allowed or denied the action), only the events are recorded.
        """
        _check_keys([gate])
        try:
            with self.write() as conn:
                existing = self._by_key(conn, gate.key)
                if existing is not None:
                    return self._reattach(conn, existing, gate)
                if gate.request is None:
                    audit.append(conn, gate.events)
                    return GateStored(None, False)
                self._insert_request(conn, gate.request, gate.policy_digest, gate.events)
                return GateStored(gate.request, True)
        except IntegrityError as err:
            # Another writer inserted the key after our look-up: settle against its request.
            with self.write() as conn:
                existing = self._by_key(conn, gate.key)
                if existing is None:
                    raise StoreError(
                        f"idempotency key {gate.key!r} collided but has no request"
                    ) from err
                return self._reattach(conn, existing, gate)

    def _reattach(self, conn: Connection, existing: ApprovalRequest, gate: GateOpen) -> GateStored:
        """``existing`` for a retry of its own gate; else the conflict, recorded on ``conn``."""
        why = _conflict(existing, gate)
        if why is not None:
            audit.append(conn, [gate.conflict_event(existing, why)])
        return GateStored(existing, False, why)

    def open_gates(self, gates: Sequence[GateOpen]) -> list[GateStored]:
        """Open many gates at once, in order, as one write; each answer as :meth:`open_gate`.

        One look-up of every key, then one multi-row insert each for the requests, their
        datasets and the audit rows: a few round trips for a whole batch where one gate at a
        time cost six, all of them under the audit head lock (what bounded gates opened per
        second on PostgreSQL). A key that appears twice reattaches the second to the first
        (or is a conflict, by the same rule). A conflict is an answer, not an error: the other
        gates of the batch are opened all the same. Should another writer insert one of the
        keys in between, the batch falls back to one :meth:`open_gate` per gate, which settles
        each key on its own.
        """
        _check_keys(gates)
        keys = sorted({gate.key for gate in gates})
        try:
            with self.write() as conn:
                known = (
                    {
                        row.idempotency_key: self._load(conn, row)
                        for row in conn.execute(_BY_KEYS, {"keys": keys}).all()
                    }
                    if keys
                    else {}
                )
                answers: list[GateStored] = []
                new_rows: list[dict[str, Any]] = []
                datasets: list[dict[str, Any]] = []
                audit_groups: list[tuple[Sequence[audit.AuditEvent], datetime | None]] = []
                for gate in gates:
                    existing = known.get(gate.key)
                    if existing is not None:
                        why = _conflict(existing, gate)
                        if why is not None:
                            audit_groups.append(([gate.conflict_event(existing, why)], None))
                        answers.append(GateStored(existing, False, why))
                        continue
                    if gate.request is None:
                        audit_groups.append((gate.events, None))
                        answers.append(GateStored(None, False))
                        continue
                    req = gate.request
                    known[gate.key] = req
                    new_rows.append({**_row_of(req), "policy_digest": gate.policy_digest})
                    datasets += _dataset_rows(req)
                    audit_groups.append((gate.events, req.created_at))
                    answers.append(GateStored(req, True))
                if new_rows:
                    conn.execute(_INSERT_REQUEST, new_rows)
                if datasets:
                    conn.execute(_INSERT_DATASETS, datasets)
                audit.append_groups(conn, audit_groups)
                if self.on_change:
                    for answer in answers:
                        if answer.created and answer.request is not None:
                            self._changed(conn, "request.created", answer.request)
                return answers
        except IntegrityError:
            return [self.open_gate(g) for g in gates]

    def get(self, request_id: uuid.UUID | str) -> ApprovalRequest:
        """The request with its decisions; :class:`NotFoundError` if there is none."""
        with self.read() as conn:
            rows = conn.execute(_WITH_DECISIONS, {"rid": request_key(request_id)}).all()
        if not rows:
            raise NotFoundError(f"no request {request_id}")
        return _request_with_decisions(rows)

    def get_many(self, request_ids: Sequence[str]) -> dict[str, ApprovalRequest]:
        """The requests among ``request_ids`` that exist, by canonical id, in one query."""
        keys = sorted({request_key(r) for r in request_ids})
        if not keys:
            return {}
        with self.read() as conn:
            rows = conn.execute(_MANY_WITH_DECISIONS, {"rids": keys}).all()
        grouped: dict[str, list[Row[Any]]] = {}
        for row in rows:
            grouped.setdefault(row.id, []).append(row)
        return {rid: _request_with_decisions(group) for rid, group in grouped.items()}

    def find(self, idempotency_key: str) -> ApprovalRequest | None:
        """The request opened with this idempotency key, if any."""
        with self.read() as conn:
            return self._by_key(conn, idempotency_key)

    def list_requests(
        self,
        *,
        status: Status | None = None,
        dataset: str | None = None,
        job: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[ApprovalRequest]:
        """Newest first. ``before`` is the id of the last request of the previous page."""
        stmt = select(requests).order_by(requests.c.id.desc()).limit(max(1, min(limit, 500)))
        if status is not None:
            stmt = stmt.where(requests.c.status == status.value)
        if job:
            stmt = stmt.where(requests.c.job == job)
        if before:
            stmt = stmt.where(requests.c.id < before)
        if dataset:
            ns, sep, name = dataset.partition("::")
            cond = request_datasets.c.name == (name if sep else dataset)
            if sep:
                cond = cond & (request_datasets.c.namespace == ns)
            stmt = stmt.where(requests.c.id.in_(select(request_datasets.c.request_id).where(cond)))
        with self.read() as conn:
            return [self._load(conn, row) for row in conn.execute(stmt).all()]

    def ended_among(self, request_ids: Sequence[str]) -> list[str]:
        """Those of ``request_ids`` that are no longer pending (one query per 500 ids)."""
        ended: list[str] = []
        with self.read() as conn:
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

    def audit_tail(self) -> tuple[int, str]:
        """The newest audit row's seq and hash (0 and the genesis hash when empty)."""
        with self.read() as conn:
            row = conn.execute(_HEAD).one_or_none()
        return (0, audit.GENESIS) if row is None else (int(row.seq), str(row.hash))

    def ended_since(self, seq: int) -> tuple[int, list[str]]:
        """Requests that ended in audit rows after ``seq``, and the newest seq seen."""
        with self.read() as conn:
            rows = conn.execute(_ENDED_SINCE, {"after": seq}).all()
        if not rows:
            return seq, []
        return int(rows[-1].seq), [r.request_id for r in rows if r.kind in _END_KINDS]

    def count(self, status: Status | None = None) -> int:
        """How many requests there are (in ``status``)."""
        stmt = select(func.count()).select_from(requests)
        if status is not None:
            stmt = stmt.where(requests.c.status == status.value)
        with self.read() as conn:
            return int(conn.execute(stmt).scalar_one())

    # ------------------------------------------------------------------ changes

    def transition(
        self,
        request_id: uuid.UUID | str,
        new: Status,
        *,
        actor: str | None = None,
        now: datetime | None = None,
        **data: Any,
    ) -> ApprovalRequest:
        """Move a pending request to ``new`` (cancel, expire), with an audit row.

        Raises :class:`TransitionError` when the request is already terminal, and
        :class:`ConflictError` when another writer ended it between our read and our write.
        """
        now = now or utcnow()
        with self.write() as conn:
            req = self._locked(conn, request_id)
            check_transition(req.status, new)
            ended = self._cas(conn, req, new, now)
            audit.append(
                conn, [request_event(ended, f"request.{new.value}", actor=actor, **data)], now=now
            )
            return ended

    def decide(
        self, request_id: uuid.UUID | str, decision: Decision, *, now: datetime | None = None
    ) -> DecisionOutcome:
        """Record one reviewer's decision and end the request if it reaches a threshold.

        The caller has checked that the reviewer may decide (policy); this enforces what
        depends on the request's state: still pending, not expired, the same action the
        reviewer was shown, one decision per reviewer, a comment on deny where required.
        """
        now = now or utcnow()
        expired: ApprovalRequest | None = None
        with self.write() as conn:
            req = self._locked(conn, request_id)
            if req.status is Status.PENDING and req.is_expired(now):
                expired = self._cas(conn, req, Status.EXPIRED, now)
                audit.append(
                    conn,
                    [request_event(expired, "request.expired", on_timeout=req.on_timeout)],
                    now=now,
                )
            else:
                check_transition(req.status, Status.APPROVED)  # raises once terminal
                if decision.fingerprint != req.fingerprint:
                    raise ConflictError(
                        "the action changed since the reviewer saw it (fingerprint mismatch)"
                    )
                if any(d.reviewer == decision.reviewer for d in req.decisions):
                    raise ConflictError(
                        f"{decision.reviewer!r} has already decided on this request"
                    )
                if (
                    decision.verdict is Verdict.DENY
                    and req.comment_on_deny
                    and not decision.comment.strip()
                ):
                    raise ActionError("the rule requires a comment to deny")
                conn.execute(_INSERT_DECISION, _decision_row(req.id, decision))
                req = req.model_copy(update={"decisions": (*req.decisions, decision)})
                self._changed(conn, "decision.recorded", req)
                events = [
                    request_event(
                        req,
                        "decision.recorded",
                        actor=decision.reviewer,
                        verdict=decision.verdict.value,
                        comment=decision.comment,
                        channel=decision.channel.value,
                        fingerprint=decision.fingerprint,
                        approvals=req.approvals,
                        required=req.required_approvals,
                    )
                ]
                ended: Status | None = None
                if req.denials >= req.required_denials:
                    ended = Status.DENIED
                elif req.approvals >= req.required_approvals:
                    ended = Status.APPROVED
                if ended is not None:
                    req = self._cas(conn, req, ended, now)
                    events.append(
                        request_event(
                            req,
                            f"request.{ended.value}",
                            actor=decision.reviewer,
                            approvals=req.approvals,
                            denials=req.denials,
                        )
                    )
                else:
                    conn.execute(_BUMP_VERSION, {"rid": str(req.id)})
                audit.append(conn, events, now=now)
                return DecisionOutcome(req, ended)
        raise ExpiredError(
            f"request {expired.id} expired at {expired.expires_at:%Y-%m-%d %H:%M:%S}Z", expired
        )

    def expire_due(self, now: datetime | None = None, *, limit: int = 100) -> list[ApprovalRequest]:
        """End every pending request past its deadline; returns the ones this call ended."""
        now = now or utcnow()
        with self.read() as conn:
            due = (
                conn.execute(
                    select(requests.c.id)
                    .where(requests.c.status == Status.PENDING.value, requests.c.expires_at <= now)
                    .order_by(requests.c.expires_at)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
        ended = []
        for request_id in due:
            try:
                req = self.get(request_id)
                ended.append(
                    self.transition(request_id, Status.EXPIRED, now=now, on_timeout=req.on_timeout)
                )
            except TransitionError:
                continue  # decided or expired by someone else meanwhile: exactly one wins
        return ended

    # ------------------------------------------------------------------ tokens, links, values

    def create_token(self, principal: str, scope: str, *, ttl: timedelta | None = None) -> str:
        """A new bearer token for ``principal``, valid until revoked or, with ``ttl``, until
        ``ttl`` from now; only its hash is stored. Returns the token."""
        if scope not in TOKEN_SCOPES:
            raise ActionError(f"scope {scope!r} is not one of {', '.join(TOKEN_SCOPES)}")
        if not principal.strip() or len(principal) > 256 or "\x00" in principal:
            raise ActionError("a principal is 1 to 256 characters")
        if ttl is not None and ttl <= timedelta(0):
            raise ActionError(f"a token's lifetime must be positive, not {ttl}")
        token = f"sg{scope[:3]}_{secrets.token_urlsafe(32)}"
        token_id = str(uuid.uuid4())
        now = utcnow()
        expires = None if ttl is None else now + ttl
        with self.write() as conn:
            conn.execute(
                insert(tokens).values(
                    id=token_id,
                    token_hash=hash_token(token),
                    principal=principal,
                    scope=scope,
                    created_at=now,
                    expires_at=expires,
                )
            )
            data = {"scope": scope, "token_id": token_id}
            if expires is not None:
                data["expires_at"] = audit.format_ts(expires)
            audit.append(conn, [audit.AuditEvent("token.created", actor=principal, data=data)])
        return token

    def token_info(self, token: str) -> TokenInfo | None:
        """The principal and scope of ``token``, or None for an unknown, revoked or expired
        one."""
        with self.read() as conn:
            row = conn.execute(_TOKEN, {"h": hash_token(token)}).one_or_none()
        if row is None:
            return None
        info = TokenInfo(row.principal, row.scope, row.id, row.expires_at)
        return None if info.expired() else info

    def list_tokens(self, principal: str | None = None) -> list[TokenRecord]:
        """Every token (of ``principal``, if given), oldest first, revoked ones included."""
        stmt = select(*_TOKEN_COLUMNS).order_by(tokens.c.created_at, tokens.c.id)
        if principal is not None:
            stmt = stmt.where(tokens.c.principal == principal)
        with self.read() as conn:
            return [TokenRecord(*row) for row in conn.execute(stmt)]

    def revoke_tokens(
        self, *, token_id: str | None = None, principal: str | None = None
    ) -> list[TokenRecord]:
        """Revoke the token ``token_id``, or every token of ``principal``, each with an audit
        row ``token.revoked``. Returns those revoked by this call (not those revoked before);
        :class:`NotFoundError` when no token has that id or principal.

        The sessions signed in with a revoked token end with it (their every page request
        checks the token), and the API refuses it within the token cache's few seconds.
        """
        if (token_id is None) == (principal is None):
            raise ActionError("revoke one token by its id, or all of one principal's")
        match = tokens.c.id == token_id if token_id is not None else tokens.c.principal == principal
        now = utcnow()
        with self.write() as conn:
            found = [
                TokenRecord(*row) for row in conn.execute(select(*_TOKEN_COLUMNS).where(match))
            ]
            if not found:
                what = f"id {token_id}" if token_id is not None else f"principal {principal!r}"
                raise NotFoundError(f"no token with {what}")
            live = [t for t in found if t.revoked_at is None]
            if live:
                conn.execute(
                    update(tokens)
                    .where(tokens.c.id.in_([t.id for t in live]))
                    .values(revoked_at=now)
                )
                audit.append(
                    conn,
                    [
                        audit.AuditEvent(
                            "token.revoked",
                            actor=t.principal,
                            data={"scope": t.scope, "token_id": t.id},
                        )
                        for t in live
                    ],
                )
        return [
            TokenRecord(t.id, t.principal, t.scope, t.created_at, t.expires_at, now) for t in live
        ]

    def use_link(self, nonce: str, request_id: str, reviewer: str) -> bool:
        """Mark a signed link's nonce used; False if it was used before."""
        try:
            with self.write() as conn:
                if conn.execute(
                    select(used_links.c.nonce).where(used_links.c.nonce == nonce)
                ).first():
                    return False
                conn.execute(
                    insert(used_links).values(
                        nonce=nonce, request_id=request_id, reviewer=reviewer, used_at=utcnow()
                    )
                )
                return True
        except IntegrityError:
            return False  # another replica used it at the same moment

    # ------------------------------------------------------------------ helpers

    def _cas(
        self, conn: Connection, req: ApprovalRequest, new: Status, now: datetime
    ) -> ApprovalRequest:
        result = conn.execute(_CAS_STATUS, {"rid": str(req.id), "new": new.value, "now": now})
        if result.rowcount != 1:
            raise ConflictError(f"request {req.id} was ended by someone else first")
        conn.info.setdefault(_CHANGED, []).append(str(req.id))
        if conn.dialect.name == "postgresql":
            # Delivered at commit, to every replica that listens.
            conn.execute(_NOTIFY, {"c": STATUS_CHANNEL, "id": str(req.id)})
        ended = req.transition(new)
        self._changed(conn, f"request.{new.value}", ended)
        return ended

    def _locked(self, conn: Connection, request_id: uuid.UUID | str) -> ApprovalRequest:
        row = conn.execute(_BY_ID_LOCKED, {"rid": request_key(request_id)}).one_or_none()
        if row is None:
            raise NotFoundError(f"no request {request_id}")
        return self._load(conn, row)

    def _by_key(self, conn: Connection, key: str) -> ApprovalRequest | None:
        row = conn.execute(_BY_KEY, {"key": key}).one_or_none()
        return None if row is None else self._load(conn, row)

    @staticmethod
    def _load(conn: Connection, row: Row[Any]) -> ApprovalRequest:
        ds = conn.execute(_DECISIONS_OF, {"rid": row.id}).all()
        return _request_of(row, [_decision_of(d) for d in ds])


def _run_all(calls: Sequence[Callable[[], None]]) -> None:
    for fn in calls:
        try:
            fn()
        except Exception:  # a side effect's failure never fails the committed write
            log.exception("an after-commit call failed")


def _request_with_decisions(rows: Sequence[Row[Any]]) -> ApprovalRequest:
    """A request from the rows of ``_WITH_DECISIONS``: its columns, then one decision each."""
    return _request_of(rows[0], [_decision_of(r) for r in rows if r.d_reviewer is not None])


def _decision_of(row: Row[Any]) -> Decision:
    """A stored decision (trusted, as in ``_request_of``) from ``d_``-labelled columns."""
    return Decision.model_construct(
        reviewer=row.d_reviewer,
        verdict=Verdict(row.d_verdict),
        comment=row.d_comment,
        channel=Channel(row.d_channel),
        fingerprint=row.d_fingerprint,
        decided_at=row.d_decided_at,
    )


def _request_of(row: Row[Any], decided: list[Decision]) -> ApprovalRequest:
    """A request from its stored row and decisions.

    Stored rows were validated on the way in and are written only by this store, so they are
    rebuilt without validating again (which cost more than the query).
    """
    return ApprovalRequest.model_construct(
        id=uuid.UUID(row.id),
        idempotency_key=row.idempotency_key,
        action=_stored_action(row.action),
        requester=_stored_requester(row.requester),
        rule=row.rule,
        required_approvals=row.required_approvals,
        required_denials=row.required_denials,
        groups=tuple(json.loads(row.groups)),
        comment_on_deny=bool(row.comment_on_deny),
        on_timeout=row.on_timeout,
        status=Status(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        fingerprint=row.fingerprint,
        lineage_run_id=uuid.UUID(row.lineage_run_id),
        decisions=tuple(decided),
        classifications=_stored_classifications(row.classifications),
    )


def _stored_requester(text: str) -> Requester:
    d = json.loads(text)
    parent = d.pop("parent", None)
    return Requester.model_construct(
        **d,
        parent=None
        if parent is None
        else ParentRun.model_construct(
            namespace=parent["namespace"], name=parent["name"], run_id=uuid.UUID(parent["run_id"])
        ),
    )


def _stored_classifications(text: str | None) -> dict[str, tuple[ClassificationSource, ...]]:
    if not text or text == "{}":
        return {}
    return {
        key: tuple(
            ClassificationSource.model_construct(
                classification=c["classification"],
                source=c["source"],
                path=tuple(LineageHop.model_construct(**hop) for hop in c.get("path", ())),
            )
            for c in sources
        )
        for key, sources in json.loads(text).items()
    }


def _stored_action(text: str) -> Action:
    """An :class:`Action` from its stored canonical JSON (trusted: see ``Store._load``)."""
    d = json.loads(text)

    def assets(items: list[dict[str, Any]]) -> tuple[Asset, ...]:
        return tuple(
            Asset.model_construct(
                namespace=a["namespace"],
                name=a["name"],
                classifications=tuple(a.get("classifications", ())),
            )
            for a in items
        )

    return Action.model_construct(
        kind=d["kind"],
        summary=d.get("summary", ""),
        inputs=assets(d.get("inputs", [])),
        outputs=assets(d.get("outputs", [])),
        destination=d.get("destination"),
        environment=d.get("environment"),
        context=d.get("context", {}),
    )


def request_key(request_id: uuid.UUID | str) -> str:
    """The canonical form of a request id; :class:`NotFoundError` for one that cannot exist."""
    try:
        return str(uuid.UUID(str(request_id)))
    except ValueError as err:
        raise NotFoundError(f"no request {request_id!r} (not a request id)") from err


def _row_of(req: ApprovalRequest) -> dict[str, Any]:
    return {
        "id": str(req.id),
        "idempotency_key": req.idempotency_key,
        "status": req.status.value,
        "rule": req.rule,
        "required_approvals": req.required_approvals,
        "required_denials": req.required_denials,
        "groups": canonical_json(list(req.groups)),
        "comment_on_deny": req.comment_on_deny,
        "on_timeout": req.on_timeout,
        "fingerprint": req.fingerprint,
        "action": canonical_json(req.action.model_dump(mode="json")),
        "requester": canonical_json(req.requester.model_dump(mode="json")),
        "orchestrator": req.requester.orchestrator,
        "job": req.requester.job,
        "created_at": req.created_at,
        "expires_at": req.expires_at,
        "lineage_run_id": str(req.lineage_run_id),
        "classifications": canonical_json(
            {k: [c.model_dump(mode="json") for c in v] for k, v in req.classifications.items()}
        ),
        "version": 1,
    }


def _dataset_rows(req: ApprovalRequest) -> list[dict[str, Any]]:
    return [
        {"request_id": str(req.id), "role": role, "namespace": a.namespace, "name": a.name}
        for role, assets in (("input", req.action.inputs), ("output", req.action.outputs))
        for a in assets
    ]


def _decision_row(request_id: uuid.UUID, d: Decision) -> dict[str, Any]:
    return {
        "request_id": str(request_id),
        "reviewer": d.reviewer,
        "verdict": d.verdict.value,
        "comment": d.comment,
        "channel": d.channel.value,
        "fingerprint": d.fingerprint,
        "decided_at": d.decided_at,
    }
