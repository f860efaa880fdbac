"""The notifications table (the outbox): rows planned with a change, claimed, settled.

This is the table's access only: what to send, to whom and how is :mod:`sluicegate.notify`'s.
A row is inserted in the transaction of the change that causes it (:meth:`OutboxTable.enqueue`
on that transaction's connection), so a notification exists exactly when its change does.
Dispatchers claim due rows under a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
replicas never take the same row; SQLite's single writer gives the same), send them, and
settle each in one transaction with its audit row. A lease must outlive the send it covers, and
a send lasts as long as the channel takes to answer, so the holder renews it (:meth:`renew`)
for as long as it sends; see :class:`~sluicegate.notify.dispatch.Dispatcher`. A dispatcher
that dies mid-send stops renewing; when the lease runs out another dispatcher takes its row,
so nothing is lost. The one window left is a crash (or a holder cut off from the database for
most of a lease) between the channel's answer and the settling commit: that message is sent
again, with the same :attr:`OutboxRow.delivery_id`, so a receiver can drop the copy (at least
once; the rest of the time, exactly once).

Rows of one request and target go out in order: a row is not claimed while an older row of the
same request and target is unsettled (Slack's update needs the ``ts`` of the first post).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from sluicegate.model import utcnow
from sluicegate.store import audit
from sluicegate.store.facade import Store
from sluicegate.store.schema import outbox

__all__ = ["OutboxRow", "OutboxTable"]

_older = outbox.alias()  # SQLAlchemy Core's alias: the ORM is not needed for one self-join
#: Names the delivery ids of rows planned before rows carried one (see ``delivery_id``).
_LEGACY_DELIVERY = uuid.UUID("5b1e4c2a-3f0d-4c7e-9a51-6d2f1e0b8c47")


@dataclass(frozen=True)
class OutboxRow:
    """One claimed notification."""

    id: int
    request_id: str
    target: str
    kind: str
    payload: Mapping[str, Any]
    attempts: int

    @property
    def delivery_id(self) -> str:
        """The id every send of this notification carries, the same on each resend, so that
        a receiver can recognise a copy: a random UUID planned with the row (random, so a
        forged header cannot name a delivery its forger has not seen)."""
        planned = self.payload.get("delivery_id")
        if isinstance(planned, str) and planned:
            return planned
        # A row planned before rows carried an id: one derived from the row, as stable.
        return str(uuid.uuid5(_LEGACY_DELIVERY, f"{self.id}:{self.request_id}:{self.target}"))


class OutboxTable:
    """The outbox of one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pg = store.engine.dialect.name == "postgresql"
        dialect = postgresql if self._pg else sqlite
        self._insert = dialect.insert(outbox).on_conflict_do_nothing(index_elements=["dedupe_key"])

    # ---- planning (inside the change's transaction)

    def enqueue(
        self,
        conn: Connection,
        request_id: str,
        rows: Sequence[tuple[str, str, str, dict[str, Any]]],
    ) -> None:
        """Plan ``(dedupe_key, target, kind, payload)`` rows for ``request_id`` on ``conn``."""
        if not rows:
            return
        now = utcnow()
        conn.execute(
            self._insert,
            [
                {
                    "dedupe_key": key[:300],
                    "request_id": request_id,
                    "target": target,
                    "kind": kind,
                    "payload": json.dumps(payload, sort_keys=True),
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for key, target, kind, payload in rows
            ],
        )

    def targets_of(self, conn: Connection, request_id: str) -> list[str]:
        """The targets a request's creation was announced to (its later events go there)."""
        stmt = (
            select(outbox.c.target)
            .where(outbox.c.request_id == request_id, outbox.c.kind == "request.created")
            .order_by(outbox.c.id)
        )
        return list(conn.execute(stmt).scalars())

    # ---- dispatching

    def claim(
        self, worker: str, *, limit: int = 20, lease: timedelta = timedelta(seconds=60)
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows to ``worker`` for ``lease`` (each attempt counted).

        The dispatcher claims one row at a time (``limit=1``): a row claimed with others would
        wait for their sends while its lease ran, and no other replica could send it meanwhile.
        """
        now = utcnow()
        due = (
            select(outbox.c.id)
            .where(
                outbox.c.status == "pending",
                outbox.c.next_attempt_at <= now,
                or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
                ~exists().where(
                    and_(
                        _older.c.request_id == outbox.c.request_id,
                        _older.c.target == outbox.c.target,
                        _older.c.id < outbox.c.id,
                        _older.c.status == "pending",
                    )
                ),
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if self._pg:
            due = due.with_for_update(skip_locked=True, of=outbox)
        with self.store.write() as conn:
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            rows = conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids))
                .values(
                    claimed_by=worker,
                    claimed_until=now + lease,
                    attempts=outbox.c.attempts + 1,
                )
                .returning(
                    outbox.c.id,
                    outbox.c.request_id,
                    outbox.c.target,
                    outbox.c.kind,
                    outbox.c.payload,
                    outbox.c.attempts,
                )
            ).all()
        return sorted(
            (
                OutboxRow(r.id, r.request_id, r.target, r.kind, json.loads(r.payload), r.attempts)
                for r in rows
            ),
            key=lambda r: r.id,
        )

    def renew(self, row: OutboxRow, worker: str, lease: timedelta) -> bool:
        """Extend ``worker``'s lease of ``row`` to ``lease`` from now; False if the row is not
        (or no longer) held by ``worker``: settled, released after a failure, or taken over."""
        with self.store.write() as conn:
            kept = conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == row.id,
                    outbox.c.claimed_by == worker,
                    outbox.c.status == "pending",
                    # failed() releases a row for its retry: renewing would hold it back.
                    outbox.c.claimed_until.is_not(None),
                )
                .values(claimed_until=utcnow() + lease)
            ).rowcount
        return bool(kept == 1)

    def sent(self, row: OutboxRow, worker: str, *, result: Mapping[str, Any] | None = None) -> bool:
        """Settle ``row`` as sent, with its audit row; False if the lease was lost meanwhile
        (another dispatcher took the row over: it settles it)."""
        now = utcnow()
        with self.store.write() as conn:
            done = conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == row.id,
                    outbox.c.claimed_by == worker,
                    outbox.c.status == "pending",
                )
                .values(
                    status="sent",
                    sent_at=now,
                    claimed_until=None,
                    result=json.dumps(dict(result or {}), sort_keys=True),
                    last_error=None,
                )
            ).rowcount
            if done != 1:
                return False
            _audit(conn, row, "notification.sent")
            return True

    def failed(
        self,
        row: OutboxRow,
        worker: str,
        error: str,
        *,
        retry_at: datetime | None,
    ) -> None:
        """Record a failed attempt: retried at ``retry_at``, or given up (None, audited)."""
        values: dict[str, Any] = {"claimed_until": None, "last_error": error[:2000]}
        if retry_at is None:
            values["status"] = "failed"
        else:
            values["next_attempt_at"] = retry_at
        with self.store.write() as conn:
            done = conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == row.id,
                    outbox.c.claimed_by == worker,
                    outbox.c.status == "pending",
                )
                .values(**values)
            ).rowcount
            if done == 1 and retry_at is None:
                _audit(conn, row, "notification.failed", error=error[:500])

    def result_of(self, request_id: str, target: str, kind: str = "request.created") -> Any:
        """What the channel answered to a sent row (Slack's channel and ts), or None."""
        stmt = select(outbox.c.result).where(
            outbox.c.request_id == bindparam("rid"),
            outbox.c.target == bindparam("target"),
            outbox.c.kind == bindparam("kind"),
            outbox.c.status == "sent",
        )
        with self.store.read() as conn:
            found = conn.execute(stmt, {"rid": request_id, "target": target, "kind": kind})
            text = found.scalar()
        return None if text is None else json.loads(text)

    def rows(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """Every row (of one request), oldest first: for tests and operators."""
        stmt = select(outbox).order_by(outbox.c.id)
        if request_id is not None:
            stmt = stmt.where(outbox.c.request_id == request_id)
        with self.store.read() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]


def _audit(conn: Connection, row: OutboxRow, kind: str, **extra: Any) -> None:
    """The audit row of a delivery (or of giving up on one)."""
    data = {"target": row.target, "event": row.kind, "attempts": row.attempts, "outbox_id": row.id}
    event = audit.AuditEvent(kind, request_id=row.request_id, data={**data, **extra})
    audit.append(conn, [event])
