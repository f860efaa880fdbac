"""The tamper-evident audit log: one append-only row per fact, chained by hashes.

Each row carries the hash of the row before it::

    hash(n) = sha256( hash(n-1) + "\\n" + canonical_json([seq, ts, kind, request_id,
                                                           actor, job, datasets, data]) )

so altering, deleting, inserting or reordering a row breaks the chain from that row on, and
:func:`verify` names the first row that no longer fits. Rows are appended in the same
transaction as the change they record (the store passes its connection to :func:`append`),
so a change without its audit row, or an audit row without its change, cannot exist.

The CSV export is meant for spreadsheets, so a cell that one would evaluate as a formula
(actors, job names and dataset names come from pipelines) is written with a leading ``'``
(:func:`csv_cell`); the JSON Lines export carries every value exactly as stored and hashed.

A chain proves order and integrity against edits that do not recompute every later hash.
Someone who can rewrite the whole table can recompute it too: keep the head hash that
``sluicegate audit verify`` prints somewhere else (a ticket, a log bucket), and verify
later that the chain still passes through it (``--anchor SEQ:HASH``).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO

from sqlalchemy import Connection, Engine, bindparam, select, update

from sluicegate.exceptions import AuditError
from sluicegate.model import canonical_json, utcnow
from sluicegate.store.db import READ
from sluicegate.store.schema import audit_events, audit_head

__all__ = [
    "GENESIS",
    "HEAD",
    "AuditEvent",
    "ExportFilter",
    "VerifyResult",
    "append",
    "append_groups",
    "csv_cell",
    "export",
    "flush_head",
    "format_ts",
    "lock_head",
    "row_hash",
    "verify",
]

# The same text as model.canonical_json, with one encoder made once: verify hashes a million
# rows, and json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _str_or_null(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


#: The "previous hash" of the first row.
GENESIS = "0" * 64
_BATCH = 10_000
_COLUMNS = (
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


# Built once (see the store): appends run on every gate.
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


def _stream(conn: Connection, stmt: Any) -> Iterator[Any]:
    result = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(stmt)
    for part in result.partitions():
        yield from part


def verify(engine: Engine, *, anchor: tuple[int, str] | None = None) -> VerifyResult:
    """Walk the chain in seq order and report the first row that breaks it.

    Memory stays flat: rows are streamed in batches, and only the running hash is kept.
    ``anchor`` (seq, hash) additionally requires the chain to pass through a head recorded
    earlier.
    """
    cols = [audit_events.c[name] for name in _COLUMNS]
    expected_seq = 1
    prev = GENESIS
    anchor_seen = anchor is None
    options: dict[str, Any] = {READ: True}
    if engine.dialect.name == "postgresql":
        # Rows and head must come from one snapshot, or an append committed between the two
        # reads (READ COMMITTED) would look like rows cut off the end.
        options["isolation_level"] = "REPEATABLE READ"
    with engine.connect().execution_options(**options) as conn, conn.begin():
        for seq, ts, kind, request_id, actor, job, datasets, data, prev_hash, digest in _stream(
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
        head = conn.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        ).one_or_none()
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


@dataclass(frozen=True)
class ExportFilter:
    """Which rows to export; every field given must hold."""

    since: datetime | None = None
    until: datetime | None = None
    dataset: str | None = None  # a dataset name, or namespace::name
    job: str | None = None
    reviewer: str | None = None


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _rows(engine: Engine, flt: ExportFilter) -> Iterator[tuple[Any, ...]]:
    t = audit_events
    stmt = select(*[t.c[name] for name in _COLUMNS]).order_by(t.c.seq)
    if flt.since:
        stmt = stmt.where(t.c.ts >= format_ts(flt.since))
    if flt.until:
        stmt = stmt.where(t.c.ts < format_ts(flt.until))
    if flt.job:
        stmt = stmt.where(t.c.job == flt.job)
    if flt.reviewer:
        stmt = stmt.where(t.c.actor == flt.reviewer)
    wanted = flt.dataset
    if wanted:
        # The SQL narrows; the exact check below decides (a name may also be a suffix of another).
        needle = wanted if "::" in wanted else f"::{wanted}"
        quoted = json.dumps(needle, ensure_ascii=False)  # as canonical_json stored it
        stmt = stmt.where(t.c.datasets.like(f"%{_like_escape(quoted[1:])}%", escape="\\"))
    with engine.connect().execution_options(**{READ: True}) as conn, conn.begin():
        for row in _stream(conn, stmt):
            if wanted:
                try:
                    names = json.loads(row[6])
                except ValueError:
                    names = None
                if not isinstance(names, list):
                    # Tampered beyond JSON: the SQL text match chose it; show it to the auditor.
                    yield tuple(row)
                    continue
                if wanted not in names and not any(
                    isinstance(n, str) and n.split("::", 1)[-1] == wanted for n in names
                ):
                    continue
            yield tuple(row)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_or_string(text: str) -> str:
    """``text`` as is when it is one strict JSON value on one line, else as a JSON string.

    Untampered rows always are; anything else (a line break that would split the record, NaN,
    text that is not JSON at all) is exported as a quoted string, so every line stays exactly
    one valid record. (Whether the content is genuine is verify's job, not export's.)
    """
    if "\n" not in text and "\r" not in text:
        try:
            json.loads(text, parse_constant=_refuse_constant)
        except ValueError:
            pass
        else:
            return text
    return json.dumps(text)


#: What makes a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a formula when
#: it comes first, once leading blanks and quote characters are passed over (OWASP, "CSV
#: Injection").
_FORMULA_START = frozenset("=+-@")
#: Control characters that start a formula, or hide one, when a cell begins with them.
_CONTROL_START = frozenset("\t\r\n\x00")
#: What a spreadsheet may pass over before the character it checks.
_PASSED_OVER = frozenset("'\"")


def csv_cell(value: Any) -> Any:
    """``value`` as a CSV cell that no spreadsheet evaluates: text a spreadsheet would take
    for a formula gets a leading ``'`` (OWASP's CSV-injection advice); anything else as is.

    A cell that already starts with ``'`` gets one too, so the escape can always be undone:
    the stored value is the cell with one leading ``'`` removed, if it has one.
    """
    if not isinstance(value, str) or not value:
        return value
    first = value[0]
    if first == "'" or first in _CONTROL_START:
        return "'" + value
    for ch in value:
        if ch.isspace() or ch in _PASSED_OVER:
            continue
        return "'" + value if ch in _FORMULA_START else value
    return value


def export(engine: Engine, out: TextIO, fmt: str = "jsonl", flt: ExportFilter | None = None) -> int:
    """Stream matching rows to ``out`` as JSON Lines or CSV; returns how many were written.

    Each row keeps ``prev_hash`` and ``hash``, so an auditor can re-check a full export
    (from JSON Lines as is; from CSV once :func:`csv_cell`'s leading ``'`` is removed).
    """
    flt = flt or ExportFilter()
    count = 0
    if fmt == "jsonl":
        q = _str_or_null
        buf: list[str] = []
        for seq, ts, kind, request_id, actor, job, datasets, data, prev_hash, digest in _rows(
            engine, flt
        ):
            # data and datasets are stored as canonical JSON: embed them as they are, once
            # checked to be JSON, so that a tampered value cannot smuggle extra fields in.
            buf.append(
                f'{{"seq":{seq},"ts":{q(ts)},"kind":{q(kind)},"request_id":{q(request_id)},'
                f'"actor":{q(actor)},"job":{q(job)},"datasets":{_json_or_string(datasets)},'
                f'"data":{_json_or_string(data)},"prev_hash":{q(prev_hash)},"hash":{q(digest)}}}\n'
            )
            count += 1
            if len(buf) >= 1000:
                out.write("".join(buf))
                buf.clear()
        out.write("".join(buf))
    elif fmt == "csv":
        # RFC 4180's CRLF: the csv module quotes a cell holding any character of the line
        # terminator, so a carriage return in a value (which a reader takes for the end of
        # the record) can never start a new row or hide a formula at the start of a cell.
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(_COLUMNS)
        for row in _rows(engine, flt):
            writer.writerow([csv_cell(cell) for cell in row])
            count += 1
    else:
        raise AuditError(f"export format {fmt!r} is not one of jsonl, csv")
    out.flush()
    return count
