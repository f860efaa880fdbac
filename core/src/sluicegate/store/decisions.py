"""Deciding and ending requests: reviewers' decisions, cancellation, expiry.

Every status change is a compare-and-set (``UPDATE ... WHERE status = 'pending'``) in the
transaction that appends its audit rows, so concurrent decisions from threads, processes or
server replicas end a request exactly once. A decision first locks its request row (``SELECT
... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises writers), so
two approvals arriving together are counted together.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, text, update

from sluicegate.exceptions import ActionError, ConflictError, ExpiredError, TransitionError
from sluicegate.model import ApprovalRequest, Decision, Status, Verdict, check_transition
from sluicegate.store import audit, requests
from sluicegate.store.gates import request_event
from sluicegate.store.requests import ChangeHook
from sluicegate.store.rows import decision_row
from sluicegate.store.schema import decisions
from sluicegate.store.schema import requests as requests_table
from sluicegate.store.transactions import Transactions, mark_changed

__all__ = ["STATUS_CHANNEL", "DecisionOutcome", "decide", "end", "expire_due", "transition"]

#: PostgreSQL channel on which every status change is announced (payload: the request id),
#: so that a long poll on any replica returns as soon as any replica ends the request.
STATUS_CHANNEL = "sluicegate_status"

_INSERT_DECISION = decisions.insert()
_BUMP_VERSION = (
    update(requests_table)
    .where(requests_table.c.id == bindparam("rid"))
    .values(version=requests_table.c.version + 1)
)
_CAS_STATUS = (
    update(requests_table)
    .where(requests_table.c.id == bindparam("rid"), requests_table.c.status == Status.PENDING.value)
    .values(
        status=bindparam("new"), decided_at=bindparam("now"), version=requests_table.c.version + 1
    )
)
_NOTIFY = text("SELECT pg_notify(:c, :id)")


@dataclass(frozen=True)
class DecisionOutcome:
    """What recording a decision did."""

    request: ApprovalRequest
    #: The terminal status this decision caused, or None if the request still waits.
    ended: Status | None


def end(
    conn: Connection,
    req: ApprovalRequest,
    new: Status,
    now: datetime,
    hooks: Sequence[ChangeHook],
) -> ApprovalRequest:
    """Move pending ``req`` to terminal ``new`` on ``conn`` (compare-and-set), announce it to
    the replicas and hooks; :class:`ConflictError` if another writer ended it first."""
    result = conn.execute(_CAS_STATUS, {"rid": str(req.id), "new": new.value, "now": now})
    if result.rowcount != 1:
        raise ConflictError(f"request {req.id} was ended by someone else first")
    mark_changed(conn, str(req.id))
    if conn.dialect.name == "postgresql":
        # Delivered at commit, to every replica that listens.
        conn.execute(_NOTIFY, {"c": STATUS_CHANNEL, "id": str(req.id)})
    ended = req.transition(new)
    requests.run_hooks(hooks, conn, f"request.{new.value}", ended)
    return ended


def transition(
    tx: Transactions,
    request_id: uuid.UUID | str,
    new: Status,
    hooks: Sequence[ChangeHook],
    *,
    actor: str | None,
    now: datetime,
    data: dict[str, Any],
) -> ApprovalRequest:
    """``Store.transition``: a pending request to ``new``, with its audit row."""
    with tx.write() as conn:
        req = requests.locked(conn, request_id)
        check_transition(req.status, new)
        ended = end(conn, req, new, now, hooks)
        audit.append(
            conn, [request_event(ended, f"request.{new.value}", actor=actor, **data)], now=now
        )
        return ended


def decide(
    tx: Transactions,
    request_id: uuid.UUID | str,
    decision: Decision,
    hooks: Sequence[ChangeHook],
    now: datetime,
) -> DecisionOutcome:
    """``Store.decide``: record one decision, and end the request at a threshold."""
    expired: ApprovalRequest | None = None
    with tx.write() as conn:
        req = requests.locked(conn, request_id)
        if req.status is Status.PENDING and req.is_expired(now):
            # Kept: the expiry commits, and the reviewer hears that the request expired.
            expired = end(conn, req, Status.EXPIRED, now, hooks)
            audit.append(
                conn,
                [request_event(expired, "request.expired", on_timeout=req.on_timeout)],
                now=now,
            )
        else:
            return _record(conn, req, decision, hooks, now)
    raise ExpiredError(
        f"request {expired.id} expired at {expired.expires_at:%Y-%m-%d %H:%M:%S}Z", expired
    )


def _record(
    conn: Connection,
    req: ApprovalRequest,
    decision: Decision,
    hooks: Sequence[ChangeHook],
    now: datetime,
) -> DecisionOutcome:
    """Check ``decision`` against the state of ``req`` (locked), store it, and end ``req``
    when it reaches a threshold."""
    check_transition(req.status, Status.APPROVED)  # raises once terminal
    if decision.fingerprint != req.fingerprint:
        raise ConflictError("the action changed since the reviewer saw it (fingerprint mismatch)")
    if any(d.reviewer == decision.reviewer for d in req.decisions):
        raise ConflictError(f"{decision.reviewer!r} has already decided on this request")
    if decision.verdict is Verdict.DENY and req.comment_on_deny and not decision.comment.strip():
        raise ActionError("the rule requires a comment to deny")
    conn.execute(_INSERT_DECISION, decision_row(req.id, decision))
    req = req.model_copy(update={"decisions": (*req.decisions, decision)})
    requests.run_hooks(hooks, conn, "decision.recorded", req)
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
        req = end(conn, req, ended, now, hooks)
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


def expire_due(
    tx: Transactions, hooks: Sequence[ChangeHook], now: datetime, limit: int
) -> list[ApprovalRequest]:
    """``Store.expire_due``: end every pending request past its deadline (at most ``limit``),
    each in its own transaction; returns the ones this call ended."""
    with tx.read() as conn:
        due = (
            conn.execute(
                select(requests_table.c.id)
                .where(
                    requests_table.c.status == Status.PENDING.value,
                    requests_table.c.expires_at <= now,
                )
                .order_by(requests_table.c.expires_at)
                .limit(limit)
            )
            .scalars()
            .all()
        )
    ended = []
    for request_id in due:
        try:
            req = requests.get(tx, request_id)
            ended.append(
                transition(
                    tx,
                    request_id,
                    Status.EXPIRED,
                    hooks,
                    actor=None,
                    now=now,
                    data={"on_timeout": req.on_timeout},
                )
            )
        except TransitionError:
            continue  # decided or expired by someone else meanwhile: exactly one wins
    return ended
