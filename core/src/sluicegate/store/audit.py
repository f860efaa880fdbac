"""The tamper-evident audit log: one append-only row per fact, chained by hashes.

Each row carries the hash of the row before it::

    hash(n) = sha256( hash(n-1) + "\\n" + canonical_json([seq, ts, kind, request_id,
                                                           actor, job, datasets, data]) )

so altering, deleting, inserting or reordering a row breaks the chain from that row on, and
:func:`verify` names the first row that no longer fits. Rows are appended in the same
transaction as the change they record (the store passes its connection to :func:`append`),
so a change without its audit row, or an audit row without its change, cannot exist.

Exports live in :mod:`sluicegate.store.audit_export`; :mod:`sluicegate.audit` is the public
face of both (what the CLI and the server's audit routes use).

A chain proves order and integrity against edits that do not recompute every later hash.
Someone who can rewrite the whole table can recompute it too: keep the head hash that
``sluicegate audit verify`` prints somewhere else (a ticket, a log bucket), and verify
later that the chain still passes through it (``--anchor SEQ:HASH``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, update

from sluicegate.exceptions import AuditError
from sluicegate.model import canonical_json, utcnow
from sluicegate.store.db import READ
from sluicegate.store.schema import audit_events, audit_head

__all__ = [
    "COLUMNS",
    "GENESIS",
    "HEAD",
    "AuditEvent",
    "VerifyResult",
    "append",
    "append_groups",
    "flush_head",
    "format_ts",
    "lock_head",
    "row_hash",
    "stream",
    "tail",
    "verify",
]

# The same text as model.canonical_json, with one encoder made once: verify hashes a million
# rows, and json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


#: The "previous hash" of the first row.
GENESIS = "0" * 64
_BATCH = 10_000
#: The stored columns of a row, in the order verify and the exports read them.
COLUMNS = (
    "seq",
    "ts",
    "kind",
    "request_id",
    "actor",
    "job",
    "datasets",
    "data",
    "prev_hash",
    "hash",
)


# Built once (SQLAlchemy then only binds parameters): appends run on every gate.
_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_HEAD_LOCKED = (
    select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
)
_INSERT_ROWS = audit_events.insert()
_MOVE_HEAD = (
    update(audit_head)
    .where(audit_head.c.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


def format_ts(when: datetime) -> str:
    """UTC, microseconds, ``Z``: a fixed width, so text order is time order on any database."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(
    prev_hash: str,
    seq: int,
    ts: str,
    kind: str,
    request_id: str | None,
    actor: str | None,
    job: str | None,
    datasets: str,
    data: str,
) -> str:
    """The hash of one row, given the previous row's hash and this row's stored values."""
    body = _encode([seq, ts, kind, request_id, actor, job, datasets, data])
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class AuditEvent:
    """One fact to record. ``datasets`` are ``namespace::name`` strings."""

    kind: str
    request_id: str | None = None
    actor: str | None = None
    job: str | None = None
    datasets: Sequence[str] = ()
    data: Mapping[str, Any] = field(default_factory=dict)


#: ``conn.info`` key under which a write transaction keeps the audit head it locked, as
#: ``[seq, hash, moved]``: the store locks the head once per transaction (:func:`lock_head`),
#: any number of appends advance it in memory, and :func:`flush_head` writes it back once.
HEAD = "sluicegate_audit_head"


def lock_head(conn: Connection) -> None:
    """Lock the head row until the transaction ends and remember it on ``conn``.

    Taken first in every write transaction (on PostgreSQL a row lock, on SQLite the write lock
    is already held), so all writers take their locks in one order and cannot deadlock.
    """
    head = conn.execute(_HEAD_LOCKED).one_or_none()
    if head is None:
        raise AuditError("the audit head row is missing: the audit log was tampered with")
    conn.info[HEAD] = [int(head.seq), str(head.hash), False]


def flush_head(conn: Connection) -> None:
    """Write the remembered head back if appends moved it (before commit), and forget it."""
    state = conn.info.pop(HEAD, None)
    if state is not None and state[2]:
        conn.execute(_MOVE_HEAD, {"new_seq": state[0], "new_hash": state[1]})


def tail(conn: Connection) -> tuple[int, str]:
    """The newest row's seq and hash as the head records them (0 and :data:`GENESIS` when
    the log is empty)."""
    row = conn.execute(_HEAD).one_or_none()
    return (0, GENESIS) if row is None else (int(row.seq), str(row.hash))


def append(
    conn: Connection, events: Iterable[AuditEvent], *, now: datetime | None = None
) -> list[int]:
    """Append ``events`` on ``conn`` inside its open transaction; returns their seq numbers.

    The head row is locked first (``FOR UPDATE`` on PostgreSQL; SQLite's write lock is already
    held), so concurrent appenders from any number of processes form one chain. Inside a
    store transaction the head is already locked and remembered (:func:`lock_head`).
    """
    return append_groups(conn, [(list(events), now)])


def append_groups(
    conn: Connection, groups: Iterable[tuple[Sequence[AuditEvent], datetime | None]]
) -> list[int]:
    """:func:`append` for several groups of events, each stamped with its own time (None:
    now), chained in order and inserted in one statement (the server's bulk gate opens)."""
    batch = [(events, now) for events, now in groups if events]
    if not batch:
        return []
    state = conn.info.get(HEAD)
    if state is None:
        head = conn.execute(_HEAD_LOCKED).one_or_none()
        if head is None:
            raise AuditError("the audit head row is missing: the audit log was tampered with")
        seq, prev = int(head.seq), str(head.hash)
    else:
        seq, prev = state[0], state[1]
    first = seq + 1
    rows = []
    for events, now in batch:
        ts = format_ts(now or utcnow())
        for event in events:
            seq += 1
            datasets = canonical_json(sorted(set(event.datasets)))
            data = canonical_json(dict(event.data))
            digest = row_hash(
                prev, seq, ts, event.kind, event.request_id, event.actor, event.job, datasets, data
            )
            rows.append(
                {
                    "seq": seq,
                    "ts": ts,
                    "kind": event.kind,
                    "request_id": event.request_id,
                    "actor": event.actor,
                    "job": event.job,
                    "datasets": datasets,
                    "data": data,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
    conn.execute(_INSERT_ROWS, rows)
    if state is None:
        conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev})
    else:
        state[:] = [seq, prev, True]
    return list(range(first, seq + 1))


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify` found."""

    ok: bool
    rows: int
    head: str
    bad_seq: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.rows} rows, head {self.head}"
        return f"audit log tampered: row {self.bad_seq}: {self.problem}"


def stream(conn: Connection, stmt: Any) -> Iterator[Any]:
    """The rows of ``stmt`` fetched in batches, so that memory stays flat on any log size."""
    result = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(stmt)
    for part in result.partitions():
        yield from part


def verify(engine: Engine, *, anchor: tuple[int, str] | None = None) -> VerifyResult:
    """Walk the chain in seq order and report the first row that breaks it.

    Memory stays flat: rows are streamed in batches, and only the running hash is kept.
    ``anchor`` (seq, hash) additionally requires the chain to pass through a head recorded
    earlier.
    """
    cols = [audit_events.c[name] for name in COLUMNS]
    expected_seq = 1
    prev = GENESIS
    anchor_seen = anchor is None
    options: dict[str, Any] = {READ: True}
    if engine.dialect.name == "postgresql":
        # Rows and head must come from one snapshot, or an append committed between the two
        # reads (READ COMMITTED) would look like rows cut off the end.
        options["isolation_level"] = "REPEATABLE READ"
    with engine.connect().execution_options(**options) as conn, conn.begin():
        for seq, ts, kind, request_id, actor, job, datasets, data, prev_hash, digest in stream(
            conn, select(*cols).order_by(audit_events.c.seq)
        ):
            if seq != expected_seq:
                if seq > expected_seq:
                    problem = f"expected seq {expected_seq}, found {seq}: rows were deleted"
                    return VerifyResult(False, expected_seq - 1, prev, expected_seq, problem)
                return VerifyResult(False, expected_seq - 1, prev, seq, "seq out of order")
            if prev_hash != prev:
                return VerifyResult(
                    False,
                    seq - 1,
                    prev,
                    seq,
                    "its previous-hash does not match the row before it "
                    "(a row was removed, inserted or moved)",
                )
            if row_hash(prev, seq, ts, kind, request_id, actor, job, datasets, data) != digest:
                return VerifyResult(
                    False, seq - 1, prev, seq, "its content does not match its hash (altered)"
                )
            if anchor is not None and seq == anchor[0]:
                if digest != anchor[1]:
                    return VerifyResult(
                        False, seq - 1, prev, seq, "its hash is not the anchored one"
                    )
                anchor_seen = True
            prev = digest
            expected_seq += 1
        count = expected_seq - 1
        head = conn.execute(_HEAD).one_or_none()
    if head is None:
        return VerifyResult(False, count, prev, count + 1, "the head row is missing")
    if int(head.seq) != count or head.hash != prev:
        if int(head.seq) > count:
            return VerifyResult(
                False,
                count,
                prev,
                count + 1,
                f"the log ends at row {count} but its head says {head.seq}: "
                "rows were cut off the end",
            )
        if int(head.seq) == count:
            # Same length, other hash: the last row was altered and rehashed, or the head was.
            return VerifyResult(
                False, count - 1, prev, count, "its hash does not match the log's head (altered)"
            )
        return VerifyResult(
            False,
            count,
            prev,
            int(head.seq) + 1,
            f"row {int(head.seq) + 1} onwards were added outside the log's head",
        )
    if not anchor_seen:
        assert anchor is not None
        return VerifyResult(False, count, prev, anchor[0], "the anchored row no longer exists")
    return VerifyResult(True, count, prev)
