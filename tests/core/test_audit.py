"""The audit log: the hash chain verifies, tampering is named at its first bad row, exports.

Tampering is done the way an attacker with database access would: plain SQL on
``audit_events`` (and ``audit_head``) through the store's engine. Runs on SQLite and
PostgreSQL (``db_url``).
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from sluicegate import audit
from sluicegate.audit import GENESIS, AuditEvent, ExportFilter, format_ts, row_hash
from sluicegate.exceptions import AuditError
from sluicegate.model import canonical_json, utcnow
from sluicegate.store import Store

COLUMNS = [
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
]
PROD_CUSTOMERS = "postgres://prod:5432::crm.public.customers"
STAGING_CUSTOMERS = "postgres://staging:5432::crm.public.customers"
X_CUSTOMERS = "postgres://prod:5432::x.customers"
BUCKET = "s3://partner-share::exports/customers.csv"
PLUS_TWO = timezone(timedelta(hours=2))

# Hypothesis against a real database: fixed seed (no flakiness), no example database on
# disk, no deadline (a database round trip is not a unit of CPU time).
DB_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def sql(store: Store, statement: str, **params: Any) -> None:
    """Run one tampering statement in its own committed transaction."""
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def rows_of(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        return [
            dict(r._mapping) for r in conn.execute(text("SELECT * FROM audit_events ORDER BY seq"))
        ]


def verify(store: Store, **kw: Any) -> audit.VerifyResult:
    return audit.verify(store.engine, **kw)


def sample_events() -> list[list[AuditEvent]]:
    """Six events in three batches, with and without actor, job, request id and datasets."""
    return [
        [
            AuditEvent(
                kind="request.created",
                request_id="0190b7a0-0000-7000-8000-000000000001",
                actor="airflow-prod",
                job="crm_export.export_customers",
                datasets=[PROD_CUSTOMERS, BUCKET],
                data={"rule": "pii-export", "required_approvals": 2},
            )
        ],
        [
            AuditEvent(
                kind="decision.recorded",
                request_id="0190b7a0-0000-7000-8000-000000000001",
                actor="alice",
                job="crm_export.export_customers",
                datasets=[PROD_CUSTOMERS, BUCKET],
                data={"verdict": "approve", "comment": "ok \u2713"},
            ),
            AuditEvent(
                kind="decision.recorded",
                request_id="0190b7a0-0000-7000-8000-000000000001",
                actor="bob",
                job="crm_export.export_customers",
                datasets=[PROD_CUSTOMERS, BUCKET],
                data={"verdict": "approve", "comment": ""},
            ),
            AuditEvent(
                kind="request.approved",
                request_id="0190b7a0-0000-7000-8000-000000000001",
                actor="bob",
                job="crm_export.export_customers",
                datasets=[PROD_CUSTOMERS, BUCKET],
                data={"approvals": 2},
            ),
        ],
        [
            AuditEvent(kind="policy.allowed", job="reporting.daily", datasets=[X_CUSTOMERS]),
            AuditEvent(kind="gate.released", actor=None, job=None, data={"status": "approved"}),
        ],
    ]


@pytest.fixture
def chain(store: Store) -> list[dict[str, Any]]:
    """A six-row audit log; returns its rows as stored."""
    for batch in sample_events():
        store.record(batch)
    rows = rows_of(store)
    assert len(rows) == 6
    return rows


def assert_bad(result: audit.VerifyResult, bad_seq: int) -> None:
    assert not result.ok, f"tampering not detected: {result}"
    assert result.bad_seq == bad_seq, str(result)
    assert f"row {bad_seq}" in str(result)


def reinsert(store: Store, row: dict[str, Any]) -> None:
    names = ", ".join(COLUMNS)
    params = ", ".join(f":{c}" for c in COLUMNS)
    with store.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO audit_events ({names}) VALUES ({params})"), row)


# ===================================================================== append and verify


def test_empty_log_verifies_with_zero_rows(store: Store) -> None:
    result = verify(store)
    assert result.ok and result.rows == 0 and result.head == GENESIS and result.bad_seq is None
    assert "intact: 0 rows" in str(result)


def test_intact_chain_reports_rows_and_head(store: Store, chain: list[dict[str, Any]]) -> None:
    result = verify(store)
    assert result.ok, str(result)
    assert result.rows == 6
    assert result.head == chain[-1]["hash"]
    assert str(result) == f"audit log intact: 6 rows, head {chain[-1]['hash']}"
    with store.read() as conn:
        head = conn.execute(text("SELECT seq, hash FROM audit_head")).one()
    assert (head.seq, head.hash) == (6, chain[-1]["hash"])


def test_chain_follows_the_documented_formula(store: Store, chain: list[dict[str, Any]]) -> None:
    """An auditor can recompute every hash from the stored values alone."""
    prev = GENESIS
    for i, row in enumerate(chain, start=1):
        assert row["seq"] == i
        assert row["prev_hash"] == prev
        assert row["hash"] == row_hash(
            prev,
            row["seq"],
            row["ts"],
            row["kind"],
            row["request_id"],
            row["actor"],
            row["job"],
            row["datasets"],
            row["data"],
        )
        prev = row["hash"]
    assert chain[0]["datasets"] == canonical_json(sorted([PROD_CUSTOMERS, BUCKET]))
    assert chain[1]["data"] == canonical_json({"verdict": "approve", "comment": "ok \u2713"})
    # One batch shares one timestamp, and timestamps are fixed-width UTC text.
    assert len({chain[i]["ts"] for i in (1, 2, 3)}) == 1
    assert all(len(r["ts"]) == 27 and r["ts"].endswith("Z") for r in chain)


def test_append_returns_consecutive_seqs(store: Store) -> None:
    assert store.record([]) == []
    assert store.record([AuditEvent(kind="a")]) == [1]
    assert store.record([AuditEvent(kind="b"), AuditEvent(kind="c")]) == [2, 3]
    assert verify(store).rows == 3


event_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | event_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(event_text, inner, max_size=3),
    max_leaves=8,
)
events = st.builds(
    AuditEvent,
    kind=st.sampled_from(
        ["request.created", "decision.recorded", "request.approved", "gate.released", "x"]
    ),
    request_id=st.none() | st.uuids().map(str),
    actor=st.none() | event_text,
    job=st.none() | event_text,
    datasets=st.lists(event_text.map(lambda s: f"ns::{s}"), max_size=3),
    data=st.dictionaries(event_text, json_values, max_size=4),
)


@DB_SETTINGS
@given(batches=st.lists(st.lists(events, min_size=1, max_size=4), min_size=1, max_size=4))
def test_any_sequence_of_appends_verifies(store: Store, batches: list[list[AuditEvent]]) -> None:
    # The log grows across examples: each example checks the whole chain so far.
    before = verify(store).rows
    added = 0
    for batch in batches:
        seqs = store.record(batch)
        assert seqs == list(range(before + added + 1, before + added + len(batch) + 1))
        added += len(batch)
    result = verify(store)
    assert result.ok, str(result)
    assert result.rows == before + added


# ===================================================================== tampering


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("data", '{"verdict":"deny","comment":"ok \u2713"}'),
        ("actor", "mallory"),
        ("actor", None),
        ("ts", "2020-01-01T00:00:00.000000Z"),
        ("job", "other.job"),
        ("kind", "request.denied"),
        ("request_id", "0190b7a0-0000-7000-8000-00000000dead"),
        ("datasets", "[]"),
        ("prev_hash", "f" * 64),
        ("hash", "e" * 64),
    ],
)
def test_an_altered_row_is_named(
    store: Store, chain: list[dict[str, Any]], column: str, value: Any
) -> None:
    sql(store, f"UPDATE audit_events SET {column} = :v WHERE seq = 2", v=value)
    result = verify(store)
    assert_bad(result, 2)
    assert result.rows == 1  # the rows before it still verify


def test_a_deleted_middle_row_is_named(store: Store, chain: list[dict[str, Any]]) -> None:
    sql(store, "DELETE FROM audit_events WHERE seq = 3")
    result = verify(store)
    assert_bad(result, 3)
    assert "deleted" in result.problem


def test_a_deleted_first_row_is_named(store: Store, chain: list[dict[str, Any]]) -> None:
    sql(store, "DELETE FROM audit_events WHERE seq = 1")
    assert_bad(verify(store), 1)


def test_a_deleted_middle_row_with_renumbering_is_named(
    store: Store, chain: list[dict[str, Any]]
) -> None:
    """Deleting row 3 and shifting the rest down to close the gap is still caught at 3."""
    sql(store, "DELETE FROM audit_events WHERE seq = 3")
    sql(store, "UPDATE audit_events SET seq = -seq WHERE seq > 3")
    sql(store, "UPDATE audit_events SET seq = -seq - 1 WHERE seq < 0")
    sql(store, "UPDATE audit_head SET seq = 5")
    assert_bad(verify(store), 3)


def test_a_deleted_last_row_is_named(store: Store, chain: list[dict[str, Any]]) -> None:
    sql(store, "DELETE FROM audit_events WHERE seq = 6")
    result = verify(store)
    assert_bad(result, 6)
    assert result.rows == 5
    assert "cut off" in result.problem


def test_an_inserted_row_with_a_garbage_hash_is_named(
    store: Store, chain: list[dict[str, Any]]
) -> None:
    # Shift rows 3.. up by one (through negative seqs: the primary key forbids a collision).
    sql(store, "UPDATE audit_events SET seq = -seq WHERE seq >= 3")
    sql(store, "UPDATE audit_events SET seq = -seq + 1 WHERE seq < 0")
    forged = dict(chain[2], seq=3, actor="mallory", hash="a" * 64, prev_hash=chain[1]["hash"])
    reinsert(store, forged)
    sql(store, "UPDATE audit_head SET seq = 7")
    assert_bad(verify(store), 3)


def test_an_inserted_row_with_a_recomputed_hash_breaks_the_next_row(
    store: Store, chain: list[dict[str, Any]]
) -> None:
    """A forger who knows the formula makes row 3 fit; the row after it no longer does."""
    sql(store, "UPDATE audit_events SET seq = -seq WHERE seq >= 3")
    sql(store, "UPDATE audit_events SET seq = -seq + 1 WHERE seq < 0")
    forged = dict(
        chain[2],
        seq=3,
        actor="alice",
        kind="decision.recorded",
        data='{"verdict":"approve"}',
        prev_hash=chain[1]["hash"],
    )
    forged["hash"] = row_hash(
        forged["prev_hash"],
        3,
        forged["ts"],
        forged["kind"],
        forged["request_id"],
        forged["actor"],
        forged["job"],
        forged["datasets"],
        forged["data"],
    )
    reinsert(store, forged)
    sql(store, "UPDATE audit_head SET seq = 7")
    result = verify(store)
    assert_bad(result, 4)
    assert result.rows == 3


def test_a_row_beyond_the_head_is_named(store: Store, chain: list[dict[str, Any]]) -> None:
    """A well-chained extra row appended without moving the head is still caught."""
    last = chain[-1]
    extra = dict(last, seq=7, kind="request.approved", actor="mallory", prev_hash=last["hash"])
    extra["hash"] = row_hash(
        extra["prev_hash"],
        7,
        extra["ts"],
        extra["kind"],
        extra["request_id"],
        extra["actor"],
        extra["job"],
        extra["datasets"],
        extra["data"],
    )
    reinsert(store, extra)
    result = verify(store)
    assert_bad(result, 7)


def test_swapped_rows_are_named(store: Store, chain: list[dict[str, Any]]) -> None:
    """Two rows' contents swapped (a reorder) is named at the earlier of the two."""
    cols = [c for c in COLUMNS if c != "seq"]
    second, fourth = chain[1], chain[3]
    sets = ", ".join(f"{c} = :{c}" for c in cols)
    sql(store, f"UPDATE audit_events SET {sets} WHERE seq = 2", **{c: fourth[c] for c in cols})
    sql(store, f"UPDATE audit_events SET {sets} WHERE seq = 4", **{c: second[c] for c in cols})
    assert_bad(verify(store), 2)


def test_swapped_adjacent_rows_are_named(store: Store, chain: list[dict[str, Any]]) -> None:
    sql(store, "UPDATE audit_events SET seq = -1 WHERE seq = 5")
    sql(store, "UPDATE audit_events SET seq = 5 WHERE seq = 6")
    sql(store, "UPDATE audit_events SET seq = 6 WHERE seq = -1")
    assert_bad(verify(store), 5)


def test_an_altered_last_row_is_named(store: Store, chain: list[dict[str, Any]]) -> None:
    sql(store, "UPDATE audit_events SET data = :v WHERE seq = 6", v='{"status":"denied"}')
    assert_bad(verify(store), 6)


def test_an_altered_and_rehashed_last_row_is_named(
    store: Store, chain: list[dict[str, Any]]
) -> None:
    """The last row has no successor to break: the head is what catches it, at that row."""
    last = dict(chain[-1], data='{"status":"denied"}')
    new_hash = row_hash(
        last["prev_hash"],
        6,
        last["ts"],
        last["kind"],
        last["request_id"],
        last["actor"],
        last["job"],
        last["datasets"],
        last["data"],
    )
    sql(
        store,
        "UPDATE audit_events SET data = :d, hash = :h WHERE seq = 6",
        d=last["data"],
        h=new_hash,
    )
    result = verify(store)
    assert_bad(result, 6)


def test_an_altered_head_is_detected(store: Store, chain: list[dict[str, Any]]) -> None:
    sql(store, "UPDATE audit_head SET hash = :h", h="b" * 64)
    result = verify(store)
    assert not result.ok, str(result)


def test_a_missing_head_is_detected_and_stops_appends(
    store: Store, chain: list[dict[str, Any]]
) -> None:
    sql(store, "DELETE FROM audit_head")
    result = verify(store)
    assert not result.ok and "head row is missing" in result.problem
    with pytest.raises(AuditError, match="head row is missing"):
        store.record([AuditEvent(kind="x")])


def test_a_cut_tail_with_a_moved_head_is_caught_by_the_anchor(
    store: Store, chain: list[dict[str, Any]]
) -> None:
    """Cutting the last row and moving the head back leaves a consistent chain: only an
    anchor kept elsewhere reveals it."""
    anchor = (6, chain[-1]["hash"])
    sql(store, "DELETE FROM audit_events WHERE seq = 6")
    sql(store, "UPDATE audit_head SET seq = 5, hash = :h", h=chain[4]["hash"])
    assert verify(store).ok
    result = verify(store, anchor=anchor)
    assert_bad(result, 6)
    assert "anchored" in result.problem


# --------------------------------------------------------------------- random tampering

MUTABLE = {  # column -> (nullable, max length on PostgreSQL)
    "ts": (False, 32),
    "kind": (False, 64),
    "request_id": (True, 36),
    "actor": (True, 64),
    "job": (True, 64),
    "datasets": (False, 64),
    "data": (False, 64),
    "prev_hash": (False, 64),
    "hash": (False, 64),
}
plain_text = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


@st.composite
def mutations(draw: st.DrawFn) -> tuple[int, str, Any]:
    seq = draw(st.integers(1, 6))
    what = draw(st.sampled_from([*MUTABLE, "seq", "delete"]))
    if what == "seq":
        return seq, what, draw(st.sampled_from([7, 100, 2**40]))
    if what == "delete":
        return seq, what, None
    nullable, size = MUTABLE[what]
    strategy = st.text(plain_text, max_size=size)
    return seq, what, draw(st.none() | strategy if nullable else strategy)


@DB_SETTINGS
@given(mutation=mutations())
def test_any_single_row_mutation_is_named(
    store: Store, chain: list[dict[str, Any]], mutation: tuple[int, str, Any]
) -> None:
    seq, what, value = mutation
    original = chain[seq - 1]
    if what not in ("seq", "delete"):
        assume(value != original[what])
    try:
        if what == "delete":
            sql(store, "DELETE FROM audit_events WHERE seq = :s", s=seq)
        else:
            sql(store, f"UPDATE audit_events SET {what} = :v WHERE seq = :s", v=value, s=seq)
        assert_bad(verify(store), seq)
    finally:  # put the row back exactly, wherever it went
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": seq})
            if what == "seq":
                conn.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": value})
        reinsert(store, original)
    assert rows_of(store) == chain
    assert verify(store).ok


# ===================================================================== anchor


def test_anchor_on_a_real_head_verifies_and_survives_later_appends(
    store: Store, chain: list[dict[str, Any]]
) -> None:
    head = verify(store)
    anchor = (head.rows, head.head)
    assert verify(store, anchor=anchor).ok
    assert verify(store, anchor=(3, chain[2]["hash"])).ok  # any row on the chain can be an anchor
    store.record([AuditEvent(kind="later")])
    result = verify(store, anchor=anchor)
    assert result.ok and result.rows == 7


def test_anchor_with_a_wrong_hash_fails(store: Store, chain: list[dict[str, Any]]) -> None:
    result = verify(store, anchor=(6, "c" * 64))
    assert_bad(result, 6)
    assert "anchored" in result.problem
    assert_bad(verify(store, anchor=(2, chain[3]["hash"])), 2)


def test_anchor_beyond_the_log_fails(store: Store, chain: list[dict[str, Any]]) -> None:
    result = verify(store, anchor=(9, "c" * 64))
    assert not result.ok and result.bad_seq == 9


def test_a_rewritten_chain_passes_alone_but_not_through_its_anchor(
    store: Store, chain: list[dict[str, Any]]
) -> None:
    """Someone who rewrites every hash from row 2 on fools verify, not an anchor."""
    anchor = (6, chain[-1]["hash"])
    prev = chain[0]["hash"]
    with store.engine.begin() as conn:
        for row in chain[1:]:
            actor = "mallory" if row["seq"] == 2 else row["actor"]
            digest = row_hash(
                prev,
                row["seq"],
                row["ts"],
                row["kind"],
                row["request_id"],
                actor,
                row["job"],
                row["datasets"],
                row["data"],
            )
            conn.execute(
                text(
                    "UPDATE audit_events SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s"
                ),
                {"a": actor, "p": prev, "h": digest, "s": row["seq"]},
            )
            prev = digest
        conn.execute(text("UPDATE audit_head SET hash = :h"), {"h": prev})
    assert verify(store).ok
    assert_bad(verify(store, anchor=anchor), 6)


# ===================================================================== concurrent verify


def test_verify_while_others_append_never_reports_tampering(store: Store) -> None:
    """A verify that runs beside appends sees one consistent log (rows and head together)."""
    store.record([AuditEvent(kind="seed", data={"i": i}) for i in range(200)])
    stop = threading.Event()
    errors: list[BaseException] = []

    def appender() -> None:
        try:
            while not stop.is_set():
                store.record([AuditEvent(kind="tick"), AuditEvent(kind="tock")])
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    thread = threading.Thread(target=appender)
    thread.start()
    results = []
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            results.append(verify(store))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors
    bad = [str(r) for r in results if not r.ok]
    assert not bad, f"{len(bad)} of {len(results)} verifies reported tampering: {bad[0]}"
    assert verify(store).ok


# ===================================================================== export


def parse_jsonl(data: str) -> list[dict[str, Any]]:
    def no_constants(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    assert data.endswith("\n") or data == ""
    return [json.loads(line, parse_constant=no_constants) for line in data.splitlines()]


def export(store: Store, fmt: str = "jsonl", **flt: Any) -> tuple[int, str]:
    out = io.StringIO()
    count = audit.export(store.engine, out, fmt, ExportFilter(**flt))
    return count, out.getvalue()


def test_export_jsonl_has_every_row_in_order(store: Store, chain: list[dict[str, Any]]) -> None:
    count, data = export(store)
    lines = parse_jsonl(data)
    assert count == len(lines) == 6
    assert [r["seq"] for r in lines] == [1, 2, 3, 4, 5, 6]
    for line, row in zip(lines, chain, strict=True):
        assert list(line) == COLUMNS
        assert line["prev_hash"] == row["prev_hash"] and line["hash"] == row["hash"]
        assert line["data"] == json.loads(row["data"])
        assert line["datasets"] == json.loads(row["datasets"])
        for col in ("ts", "kind", "request_id", "actor", "job"):
            assert line[col] == row[col]
        # An auditor re-checks the chain from the export alone.
        assert line["hash"] == row_hash(
            line["prev_hash"],
            line["seq"],
            line["ts"],
            line["kind"],
            line["request_id"],
            line["actor"],
            line["job"],
            canonical_json(line["datasets"]),
            canonical_json(line["data"]),
        )
    assert lines[0]["prev_hash"] == GENESIS


def test_export_csv_has_every_row_in_order(store: Store, chain: list[dict[str, Any]]) -> None:
    count, data = export(store, "csv")
    reader = list(csv.DictReader(io.StringIO(data)))
    assert count == len(reader) == 6
    assert data.splitlines()[0] == ",".join(COLUMNS)
    for line, row in zip(reader, chain, strict=True):
        assert int(line["seq"]) == row["seq"]
        for col in COLUMNS[1:]:
            assert line[col] == ("" if row[col] is None else row[col])


def test_export_of_an_empty_log(store: Store) -> None:
    assert export(store) == (0, "")
    count, data = export(store, "csv")
    assert count == 0 and data == ",".join(COLUMNS) + "\r\n"  # RFC 4180's line ends


def test_export_refuses_an_unknown_format(store: Store) -> None:
    with pytest.raises(AuditError, match="xml"):
        audit.export(store.engine, io.StringIO(), "xml")


@pytest.fixture
def dated(store: Store) -> dict[str, Any]:
    """Five events at three known times, over several datasets, jobs and reviewers."""
    t0 = utcnow().replace(microsecond=0) - timedelta(days=2)
    t1, t2 = t0 + timedelta(days=1), t0 + timedelta(days=1, hours=12)
    with store.write() as conn:
        audit.append(
            conn,
            [
                AuditEvent(
                    kind="request.created",
                    actor="airflow-prod",
                    job="crm.export",
                    datasets=[PROD_CUSTOMERS, BUCKET],
                )
            ],
            now=t0,
        )
        audit.append(
            conn,
            [
                AuditEvent(
                    kind="decision.recorded",
                    actor="alice",
                    job="crm.export",
                    datasets=[PROD_CUSTOMERS, BUCKET],
                ),
                AuditEvent(
                    kind="request.created",
                    actor="airflow-prod",
                    job="staging.export",
                    datasets=[STAGING_CUSTOMERS],
                ),
            ],
            now=t1,
        )
        audit.append(
            conn,
            [
                AuditEvent(
                    kind="decision.recorded", actor="bob", job="reports.x", datasets=[X_CUSTOMERS]
                ),
                AuditEvent(
                    kind="policy.allowed",
                    actor=None,
                    job="misc",
                    datasets=["file://local::customers", "s3://b::a_b%c"],
                ),
            ],
            now=t2,
        )
    return {"t0": t0, "t1": t1, "t2": t2}


def seqs(store: Store, fmt: str = "jsonl", **flt: Any) -> list[int]:
    count, data = export(store, fmt, **flt)
    if fmt == "csv":
        got = [int(r["seq"]) for r in csv.DictReader(io.StringIO(data))]
    else:
        got = [r["seq"] for r in parse_jsonl(data)]
    assert count == len(got)
    return got


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_filters_by_time(store: Store, dated: dict[str, Any], fmt: str) -> None:
    t0, t1, t2 = dated["t0"], dated["t1"], dated["t2"]
    assert seqs(store, fmt, since=t1) == [2, 3, 4, 5]  # since is inclusive
    assert seqs(store, fmt, until=t1) == [1]  # until is exclusive
    assert seqs(store, fmt, since=t0, until=t2) == [1, 2, 3]
    assert seqs(store, fmt, since=t2 + timedelta(microseconds=1)) == []
    assert seqs(store, fmt, since=t1.astimezone(PLUS_TWO)) == [2, 3, 4, 5]  # any zone


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_filters_by_dataset(store: Store, dated: dict[str, Any], fmt: str) -> None:
    assert seqs(store, fmt, dataset="crm.public.customers") == [1, 2, 3]  # by name: any namespace
    assert seqs(store, fmt, dataset=PROD_CUSTOMERS) == [1, 2]
    assert seqs(store, fmt, dataset=STAGING_CUSTOMERS) == [3]
    assert seqs(store, fmt, dataset="x.customers") == [4]
    assert seqs(store, fmt, dataset="customers") == [5]  # not x.customers nor crm.public.customers
    assert seqs(store, fmt, dataset="public.customers") == []
    assert seqs(store, fmt, dataset="crm.public") == []
    assert seqs(store, fmt, dataset="a_b%c") == [5]  # LIKE wildcards are literal
    assert seqs(store, fmt, dataset="aXbYc") == []
    assert seqs(store, fmt, dataset="postgres://other::crm.public.customers") == []


def test_export_filters_by_a_non_ascii_dataset_name(store: Store) -> None:
    store.record(
        [
            AuditEvent(kind="request.created", datasets=["postgres://prod:5432::crm.public.größe"]),
            AuditEvent(
                kind="request.created", datasets=["postgres://prod:5432::crm.public.kunden"]
            ),
        ]
    )
    assert seqs(store, dataset="crm.public.größe") == [1]
    assert seqs(store, dataset="postgres://prod:5432::crm.public.größe") == [1]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_filters_by_job_and_reviewer(store: Store, dated: dict[str, Any], fmt: str) -> None:
    assert seqs(store, fmt, job="crm.export") == [1, 2]
    assert seqs(store, fmt, job="crm") == []
    assert seqs(store, fmt, reviewer="alice") == [2]
    assert seqs(store, fmt, reviewer="bob") == [4]
    assert seqs(store, fmt, reviewer="ali") == []
    assert seqs(
        store,
        fmt,
        job="crm.export",
        reviewer="alice",
        dataset="crm.public.customers",
        since=dated["t1"],
    ) == [2]
    assert seqs(store, fmt, job="crm.export", reviewer="bob") == []


@pytest.mark.parametrize(
    "tampered",
    ['{"broken', "not json at all", '{"a":1}{"b":2}', "", '1, "seq": 99'],
)
def test_export_of_invalid_json_data_stays_valid_jsonl(
    store: Store, chain: list[dict[str, Any]], tampered: str
) -> None:
    sql(store, "UPDATE audit_events SET data = :d WHERE seq = 3", d=tampered)
    count, data = export(store)
    lines = parse_jsonl(data)
    assert count == len(lines) == 6
    assert lines[2]["seq"] == 3
    assert lines[2]["data"] == tampered  # the raw text, as a string
    assert list(lines[2]) == COLUMNS  # nothing smuggled in


@pytest.mark.parametrize("tampered", ['{\n"verdict": "deny"}', "NaN", '{"a": Infinity}'])
def test_export_of_odd_but_parsable_data_stays_valid_jsonl(
    store: Store, chain: list[dict[str, Any]], tampered: str
) -> None:
    """Text Python's json accepts but that is not one strict JSON line must not break the export."""
    sql(store, "UPDATE audit_events SET data = :d WHERE seq = 3", d=tampered)
    count, data = export(store)
    lines = parse_jsonl(data)
    assert count == len(lines) == 6
    assert [r["seq"] for r in lines] == [1, 2, 3, 4, 5, 6]


def test_export_of_invalid_json_datasets_with_a_dataset_filter(
    store: Store, chain: list[dict[str, Any]]
) -> None:
    sql(store, "UPDATE audit_events SET datasets = :d WHERE seq = 2", d=f'["{PROD_CUSTOMERS}"')
    _, data = export(store, dataset="crm.public.customers")
    lines = parse_jsonl(data)
    assert 1 in [r["seq"] for r in lines] and 3 in [r["seq"] for r in lines]
    _, data = export(store)
    assert parse_jsonl(data)[1]["datasets"] == f'["{PROD_CUSTOMERS}"'


class RecordingStream(io.StringIO):
    """A text stream that notes how many lines it held at each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def write(self, s: str) -> int:
        if s:
            self.writes.append(s.count("\n"))
        return super().write(s)


@pytest.fixture
def long_log(store: Store) -> Iterator[int]:
    n = 2500
    store.record([AuditEvent(kind="tick", actor=f"r{i % 7}", data={"i": i}) for i in range(n)])
    yield n


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_streams_to_its_output(store: Store, long_log: int, fmt: str) -> None:
    out = RecordingStream()
    count = audit.export(store.engine, out, fmt)
    assert count == long_log
    header = 1 if fmt == "csv" else 0
    assert sum(out.writes) == long_log + header
    content_writes = [w for w in out.writes if w]
    assert len(content_writes) >= 3, out.writes  # written as it goes, not at the end
    assert max(content_writes) <= 1000 + header


def test_export_to_a_file(store: Store, long_log: int, tmp_path: Any) -> None:
    path = tmp_path / "audit.jsonl"
    with path.open("w", encoding="utf-8") as out:
        assert audit.export(store.engine, out, "jsonl") == long_log
    lines = parse_jsonl(path.read_text(encoding="utf-8"))
    assert [r["seq"] for r in lines] == list(range(1, long_log + 1))
    assert lines[-1]["hash"] == verify(store).head


def test_format_ts_is_fixed_width_utc() -> None:
    when = utcnow().replace(microsecond=0)
    assert format_ts(when) == when.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert format_ts(when.astimezone(PLUS_TWO)) == format_ts(when)
