"""The store, as a user of it sees it: requests, decisions, transitions and their audit rows.

Every test runs on SQLite and on PostgreSQL (``db_url``) unless it says otherwise. The
concurrency tests race threads and spawned processes on one request and check that it ends
exactly once, with exactly one terminal audit row, and that the audit chain still verifies.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import sqlite3
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, text

from sluicegate import audit
from sluicegate.audit import AuditEvent
from sluicegate.exceptions import ActionError, ConflictError, NotFoundError, TransitionError
from sluicegate.model import ApprovalRequest, Asset, Decision, Status, Verdict, utcnow, uuid7
from sluicegate.store import DecisionOutcome, GateOpen, Store, request_event

APPROVE, DENY = Verdict.APPROVE, Verdict.DENY
TERMINAL_KINDS = {"request.approved", "request.denied", "request.expired", "request.cancelled"}


def _head_revision() -> str:
    """The newest migration, as Alembic sees the package's migrations folder."""
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import sluicegate.store.db as db

    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


HEAD_REVISION = _head_revision()


def decision(
    req: ApprovalRequest, reviewer: str, verdict: Verdict = APPROVE, comment: str = "", **kw: Any
) -> Decision:
    return Decision(
        reviewer=reviewer,
        verdict=verdict,
        comment=comment,
        fingerprint=kw.pop("fingerprint", req.fingerprint),
        **kw,
    )


def kinds(rows: list[Any]) -> list[str]:
    return [r.kind for r in rows]


def assert_intact(store: Store, rows: int | None = None) -> None:
    result = audit.verify(store.engine)
    assert result.ok, str(result)
    if rows is not None:
        assert result.rows == rows


# ===================================================================== opening the store


def test_sqlite_file_is_in_wal_mode(sqlite_url: str, tmp_path: Any) -> None:
    with Store(sqlite_url) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    raw = sqlite3.connect(tmp_path / "sluicegate.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_opening_migrates_and_opening_twice_is_harmless(
    db_url: str, make_request: Callable[..., ApprovalRequest]
) -> None:
    with Store(db_url) as first:
        tables = set(inspect(first.engine).get_table_names())
        assert {
            "requests",
            "request_datasets",
            "decisions",
            "audit_events",
            "audit_head",
            "alembic_version",
        } <= tables
        req = make_request()
        first.create_request(req, events=[request_event(req, "request.created")])
    with Store(db_url) as second, Store(db_url) as third:
        assert second.get(req.id).id == req.id
        assert third.count() == 1
        with second.read() as conn:
            assert conn.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalars().all() == [HEAD_REVISION]
            assert conn.execute(text("SELECT count(*) FROM audit_head")).scalar_one() == 1
        assert_intact(third, rows=1)


# ===================================================================== creating requests


def test_create_request_is_idempotent_on_its_key(
    store: Store, make_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    first = make_request(key="airflow:crm_export:run-1:export")
    stored, created = store.create_request(first, events=[request_event(first, "request.created")])
    assert created and stored.id == first.id

    # A retried task: a new object, the same key.
    retry = make_request(key="airflow:crm_export:run-1:export")
    assert retry.id != first.id
    again, created = store.create_request(retry, events=[request_event(retry, "request.created")])
    assert not created
    assert again.id == first.id
    assert again.status is Status.PENDING
    assert kinds(audit_rows()) == ["request.created"]  # no second audit row
    assert store.count() == 1

    other = make_request(key="airflow:crm_export:run-2:export")
    stored, created = store.create_request(other, events=[request_event(other, "request.created")])
    assert created and stored.id == other.id != first.id
    assert store.count() == 2
    assert kinds(audit_rows()) == ["request.created", "request.created"]
    assert_intact(store, rows=2)


def test_concurrent_creation_with_one_key_makes_one_request(
    store: Store, make_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    key = "airflow:crm_export:run-7:export"
    barrier = threading.Barrier(8)

    def create(_: int) -> tuple[str, bool]:
        req = make_request(key=key)
        barrier.wait(timeout=30)
        stored, created = store.create_request(req, events=[request_event(req, "request.created")])
        return str(stored.id), created

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, range(8)))

    assert len({rid for rid, _ in results}) == 1, results
    assert sum(created for _, created in results) == 1, results
    assert store.count() == 1
    assert store.find(key) is not None and str(store.find(key).id) == results[0][0]  # type: ignore[union-attr]
    assert kinds(audit_rows()) == ["request.created"]
    assert_intact(store, rows=1)


def test_opening_many_gates_at_once_answers_each_as_one_at_a_time_would(
    store: Store, make_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    earlier = make_request(key="k-earlier")
    store.create_request(earlier, events=[request_event(earlier, "request.created")])
    a, a_again, b = make_request(key="k-a"), make_request(key="k-a"), make_request(key="k-b")
    retry = make_request(key="k-earlier")
    allowed = AuditEvent("policy.allowed", actor="etl", data={"idempotency_key": "k-free"})

    answers = store.open_gates(
        [
            GateOpen("k-a", a, [request_event(a, "request.created")]),
            GateOpen("k-free", None, [allowed]),
            GateOpen("k-a", a_again, [request_event(a_again, "request.created")]),
            GateOpen("k-earlier", retry, [request_event(retry, "request.created")]),
            GateOpen("k-b", b, [request_event(b, "request.created")]),
        ]
    )

    assert [(None if g.request is None else g.request.id, g.created) for g in answers] == [
        (a.id, True),
        (None, False),
        (a.id, False),  # the same key twice in one batch: one request
        (earlier.id, False),  # a key stored before: reattached, nothing recorded
        (b.id, True),
    ]
    assert store.count() == 3
    assert store.get(a.id).action.inputs == a.action.inputs  # datasets stored with it
    assert store.list_requests(dataset=str(a.action.inputs[0]))  # and indexed
    assert kinds(audit_rows()) == [
        "request.created",
        "request.created",
        "policy.allowed",
        "request.created",
    ]
    assert [r.request_id for r in audit_rows()][1:] == [str(a.id), None, str(b.id)]
    assert_intact(store, rows=4)


@pytest.mark.postgres
def test_opening_many_gates_keeps_a_key_another_writer_committed_meanwhile(
    pg_url: str, make_request: Callable[..., ApprovalRequest]
) -> None:
    # A writer that skips the audit head lock (none of Sluicegate's do) commits "k-race"
    # after the batch looked its keys up: the multi-row insert then fails on the unique key,
    # and the batch settles each gate on its own. The rival's request is the one kept.
    from sqlalchemy import event

    from sluicegate.store import requests, rows

    rival, mine, other = (make_request(key=k) for k in ("k-race", "k-race", "k-other"))
    fired: list[bool] = []
    with Store(pg_url) as store, Store(pg_url) as rival_store:

        @event.listens_for(store.engine, "after_cursor_execute")
        def rival_commits(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "idempotency_key IN" in statement and not fired:
                fired.append(True)
                with rival_store.engine.begin() as other_conn:
                    row = {**rows.request_row(rival), "policy_digest": None}
                    other_conn.execute(requests.INSERT_REQUEST, row)

        answers = store.open_gates(
            [
                GateOpen("k-race", mine, [request_event(mine, "request.created")]),
                GateOpen("k-other", other, [request_event(other, "request.created")]),
            ]
        )
        assert fired
        assert [(g.request.id if g.request else None, g.created) for g in answers] == [
            (rival.id, False),
            (other.id, True),
        ]
        assert store.count() == 2
        assert kinds(_rows(store)) == ["request.created"]
        assert_intact(store, rows=1)


def _rows(store: Store) -> list[Any]:
    from sqlalchemy import select

    from sluicegate.store.schema import audit_events

    with store.read() as conn:
        return list(conn.execute(select(audit_events).order_by(audit_events.c.seq)).all())


# ===================================================================== reading requests


def test_get_and_find_give_back_what_was_stored(
    store: Store, open_request: Callable[..., ApprovalRequest]
) -> None:
    req = open_request(approvals=2, comment_on_deny=True, timeout=timedelta(hours=24))
    got = store.get(req.id)
    assert got == req  # every field survives the round trip, timestamps included
    assert got.expires_at is not None and got.expires_at.tzinfo is not None
    assert store.get(str(req.id)) == req
    assert store.find(req.idempotency_key) == req
    assert store.find("no-such-key") is None


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1234", "../../etc/passwd"])
def test_malformed_id_is_not_found(
    store: Store, bad_id: str, open_request: Callable[..., ApprovalRequest]
) -> None:
    req = open_request()
    with pytest.raises(NotFoundError):
        store.get(bad_id)
    with pytest.raises(NotFoundError):
        store.decide(bad_id, decision(req, "alice"))
    with pytest.raises(NotFoundError):
        store.transition(bad_id, Status.CANCELLED)


def test_unknown_id_is_not_found(
    store: Store, open_request: Callable[..., ApprovalRequest]
) -> None:
    req = open_request()
    unknown = uuid7()
    with pytest.raises(NotFoundError, match=str(unknown)):
        store.get(unknown)
    with pytest.raises(NotFoundError):
        store.decide(unknown, decision(req, "alice"))
    with pytest.raises(NotFoundError):
        store.transition(unknown, Status.CANCELLED)
    assert_intact(store, rows=1)


def test_list_requests_filters_and_pages(
    store: Store, open_request: Callable[..., ApprovalRequest]
) -> None:
    staging = Asset(namespace="postgres://staging:5432", name="crm.public.customers")
    orders = Asset(namespace="postgres://prod:5432", name="sales.public.orders")
    a = open_request(job="crm_export.a")
    b = open_request(job="crm_export.b", inputs=(staging,))
    c = open_request(job="sales.c", inputs=(orders,))
    d = open_request(job="crm_export.a")
    e = open_request(
        job="x.customers", inputs=(Asset(namespace="postgres://prod:5432", name="x.customers"),)
    )
    store.transition(d.id, Status.CANCELLED)

    def ids(reqs: list[ApprovalRequest]) -> list[str]:
        return [str(r.id) for r in reqs]

    everything = [e, d, c, b, a]  # newest first
    assert ids(store.list_requests()) == ids(everything)
    assert ids(store.list_requests(status=Status.PENDING)) == ids([e, c, b, a])
    assert ids(store.list_requests(status=Status.CANCELLED)) == ids([d])
    assert store.list_requests(status=Status.APPROVED) == []
    assert ids(store.list_requests(job="crm_export.a")) == ids([d, a])
    assert store.list_requests(job="crm_export") == []  # a job is matched exactly, not by prefix
    # By name: every namespace; by namespace::name: that one only. Outputs count too.
    assert ids(store.list_requests(dataset="crm.public.customers")) == ids([d, b, a])
    assert ids(store.list_requests(dataset="postgres://staging:5432::crm.public.customers")) == ids(
        [b]
    )
    assert ids(store.list_requests(dataset="postgres://prod:5432::crm.public.customers")) == ids(
        [d, a]
    )
    assert ids(store.list_requests(dataset="exports/customers.csv")) == ids(everything)
    assert ids(store.list_requests(dataset="customers")) == []  # no suffix matches
    assert ids(store.list_requests(dataset="x.customers")) == ids([e])
    assert ids(store.list_requests(dataset="crm.public.customers", job="crm_export.b")) == ids([b])
    assert ids(store.list_requests(dataset="crm.public.customers", status=Status.PENDING)) == ids(
        [b, a]
    )
    assert store.count() == 5
    assert store.count(Status.PENDING) == 4
    assert store.count(Status.CANCELLED) == 1

    pages, before = [], None
    while True:
        page = store.list_requests(limit=2, before=before)
        if not page:
            break
        assert len(page) <= 2
        pages.append(ids(page))
        before = str(page[-1].id)
    assert pages == [ids([e, d]), ids([c, b]), ids([a])]
    assert ids(store.list_requests(status=Status.PENDING, limit=1, before=str(c.id))) == ids([b])


# ===================================================================== deciding


def test_quorum_of_two_needs_two_distinct_reviewers(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    req = open_request(approvals=2)
    first = store.decide(req.id, decision(req, "alice"))
    assert first.ended is None
    assert first.request.status is Status.PENDING
    assert store.get(req.id).status is Status.PENDING
    assert store.get(req.id).approvals == 1

    with pytest.raises(ConflictError, match="already decided"):
        # The same reviewer through another channel.
        store.decide(req.id, decision(req, "alice", channel="slack"))
    assert store.get(req.id).approvals == 1  # counted once
    assert len(store.get(req.id).decisions) == 1

    second = store.decide(req.id, decision(req, "bob"))
    assert second.ended is Status.APPROVED
    got = store.get(req.id)
    assert got.status is Status.APPROVED
    assert [d.reviewer for d in got.decisions] == ["alice", "bob"]
    assert kinds(audit_rows(req.id)) == [
        "request.created",
        "decision.recorded",
        "decision.recorded",
        "request.approved",
    ]
    assert [r.actor for r in audit_rows(req.id)][1:] == ["alice", "bob", "bob"]
    assert_intact(store, rows=4)


def test_one_deny_ends_the_request(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    req = open_request(approvals=2)
    store.decide(req.id, decision(req, "alice"))
    out = store.decide(req.id, decision(req, "bob", DENY, "not to that bucket"))
    assert out.ended is Status.DENIED
    got = store.get(req.id)
    assert got.status is Status.DENIED
    assert got.decisions[-1].comment == "not to that bucket"
    assert kinds(audit_rows(req.id)) == [
        "request.created",
        "decision.recorded",
        "decision.recorded",
        "request.denied",
    ]
    assert_intact(store)


def test_two_required_denials_need_two_reviewers(
    store: Store, open_request: Callable[..., ApprovalRequest]
) -> None:
    req = open_request(approvals=3, denials=2)
    assert store.decide(req.id, decision(req, "alice", DENY, "no")).ended is None
    assert store.get(req.id).status is Status.PENDING
    assert store.decide(req.id, decision(req, "bob", DENY, "no")).ended is Status.DENIED
    assert store.get(req.id).denials == 2


def test_a_nul_character_is_handled_alike_on_both_databases(
    store: Store, open_request: Callable[..., ApprovalRequest]
) -> None:
    """A comment is untrusted text: either both databases keep it, or both refuse it clearly.

    PostgreSQL text cannot hold NUL; SQLite can. A store error (a 5xx) is the wrong answer.
    """
    req = open_request(approvals=2)
    try:
        dec = decision(req, "alice", DENY, "no\x00way")
    except ValueError:
        return  # refused by the model, before any database: fine on both
    try:
        store.decide(req.id, dec)
    except ActionError:
        return  # refused with a clear error: fine on both
    assert store.get(req.id).decisions[0].comment == "no\x00way"


def test_comment_required_on_deny_records_nothing_without_one(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    req = open_request(approvals=2, comment_on_deny=True)
    for blank in ("", "   "):
        with pytest.raises(ActionError, match="comment"):
            store.decide(req.id, decision(req, "alice", DENY, blank))
    got = store.get(req.id)
    assert got.status is Status.PENDING and got.decisions == ()
    assert kinds(audit_rows()) == ["request.created"]
    # Approving needs no comment; denying with one works.
    assert store.decide(req.id, decision(req, "alice")).ended is None
    assert (
        store.decide(req.id, decision(req, "bob", DENY, "PII may not leave")).ended is Status.DENIED
    )
    assert_intact(store, rows=4)


def test_wrong_fingerprint_is_a_conflict(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    req = open_request()
    with pytest.raises(ConflictError, match="fingerprint"):
        store.decide(req.id, decision(req, "alice", fingerprint="sha256:" + "0" * 64))
    got = store.get(req.id)
    assert got.status is Status.PENDING and got.decisions == ()
    assert kinds(audit_rows()) == ["request.created"]


@pytest.mark.parametrize("verdict", [APPROVE, DENY])
def test_deciding_a_terminal_request_is_refused(
    store: Store,
    open_request: Callable[..., ApprovalRequest],
    audit_rows: Callable[..., list[Any]],
    verdict: Verdict,
) -> None:
    req = open_request()
    assert store.decide(req.id, decision(req, "alice")).ended is Status.APPROVED
    before = audit_rows()
    with pytest.raises(TransitionError, match="already approved"):
        store.decide(req.id, decision(req, "bob", verdict, "late"))
    with pytest.raises(TransitionError):
        store.decide(req.id, decision(req, "alice", verdict, "again"))
    with pytest.raises(TransitionError):
        store.transition(req.id, Status.CANCELLED)
    got = store.get(req.id)
    assert got.status is Status.APPROVED
    assert [d.reviewer for d in got.decisions] == ["alice"]
    assert audit_rows() == before
    assert_intact(store, rows=3)


def test_deciding_after_the_deadline_expires_the_request(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    start = utcnow()
    req = open_request(timeout=timedelta(hours=1), now=start)
    late = start + timedelta(hours=1, seconds=1)
    with pytest.raises(TransitionError, match="expired"):
        store.decide(req.id, decision(req, "alice"), now=late)
    got = store.get(req.id)
    assert got.status is Status.EXPIRED  # persisted, although the call raised
    assert got.decisions == ()
    assert kinds(audit_rows(req.id)) == ["request.created", "request.expired"]
    assert audit_rows(req.id)[-1].ts == audit.format_ts(late)
    with pytest.raises(TransitionError):
        store.decide(req.id, decision(req, "bob"), now=late)
    assert kinds(audit_rows(req.id)) == ["request.created", "request.expired"]
    assert_intact(store, rows=2)


def test_deciding_just_before_the_deadline_still_counts(
    store: Store, open_request: Callable[..., ApprovalRequest]
) -> None:
    start = utcnow()
    req = open_request(timeout=timedelta(hours=1), now=start)
    out = store.decide(req.id, decision(req, "alice"), now=start + timedelta(minutes=59))
    assert out.ended is Status.APPROVED


def test_expire_due_ends_only_overdue_pending_requests(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    start = utcnow()
    overdue = open_request(timeout=timedelta(minutes=5), now=start)
    overdue2 = open_request(timeout=timedelta(minutes=10), now=start)
    not_yet = open_request(timeout=timedelta(hours=2), now=start)
    no_deadline = open_request(timeout=None, now=start)
    decided = open_request(timeout=timedelta(minutes=5), now=start)
    store.decide(decided.id, decision(decided, "alice"), now=start)

    now = start + timedelta(hours=1)
    ended = store.expire_due(now)
    assert sorted(str(r.id) for r in ended) == sorted([str(overdue.id), str(overdue2.id)])
    assert all(r.status is Status.EXPIRED for r in ended)
    assert store.get(overdue.id).status is Status.EXPIRED
    assert store.get(overdue2.id).status is Status.EXPIRED
    assert store.get(not_yet.id).status is Status.PENDING
    assert store.get(no_deadline.id).status is Status.PENDING
    assert store.get(decided.id).status is Status.APPROVED
    assert kinds(audit_rows(overdue.id)) == ["request.created", "request.expired"]
    assert store.expire_due(now) == []  # nothing left to do: no second audit row
    assert kinds(audit_rows(overdue.id)) == ["request.created", "request.expired"]
    assert_intact(store, rows=5 + 2 + 2)


def test_cancel_works_once(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    req = open_request()
    cancelled = store.transition(
        req.id, Status.CANCELLED, actor="airflow-prod", reason="run cleared"
    )
    assert cancelled.status is Status.CANCELLED
    assert store.get(req.id).status is Status.CANCELLED
    with pytest.raises(TransitionError, match="already cancelled"):
        store.transition(req.id, Status.CANCELLED, actor="airflow-prod")
    with pytest.raises(TransitionError):
        store.decide(req.id, decision(req, "alice"))
    rows = audit_rows(req.id)
    assert kinds(rows) == ["request.created", "request.cancelled"]
    assert rows[-1].actor == "airflow-prod"
    assert '"reason":"run cleared"' in rows[-1].data
    assert_intact(store, rows=2)


def test_every_status_change_leaves_its_audit_rows(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    start = utcnow()
    approved = open_request(approvals=1)
    denied = open_request(approvals=2)
    expired = open_request(timeout=timedelta(minutes=1), now=start)
    cancelled = open_request()
    store.decide(approved.id, decision(approved, "alice"))
    store.decide(denied.id, decision(denied, "bob", DENY, "no"))
    store.expire_due(start + timedelta(minutes=2))
    store.transition(cancelled.id, Status.CANCELLED)
    store.record([request_event(approved, "gate.released", actor="airflow-prod")])

    expected = {
        approved.id: ["request.created", "decision.recorded", "request.approved", "gate.released"],
        denied.id: ["request.created", "decision.recorded", "request.denied"],
        expired.id: ["request.created", "request.expired"],
        cancelled.id: ["request.created", "request.cancelled"],
    }
    for rid, want in expected.items():
        rows = audit_rows(rid)
        assert kinds(rows) == want
        # Each row carries the request's job and datasets, so exports can filter on them.
        assert {r.job for r in rows} == {"crm_export.export_customers"}
        assert all("postgres://prod:5432::crm.public.customers" in r.datasets for r in rows)
    statuses = {rid: store.get(rid).status.value for rid in expected}
    assert statuses == {
        approved.id: "approved",
        denied.id: "denied",
        expired.id: "expired",
        cancelled.id: "cancelled",
    }
    assert_intact(store, rows=11)


# ===================================================================== concurrency: threads


def _race(n: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(0..n-1)`` on n threads released together; exceptions come back as values."""
    barrier = threading.Barrier(n)

    def one(i: int) -> Any:
        barrier.wait(timeout=30)
        try:
            return call(i)
        except Exception as err:
            return err

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_racing_reviewers_end_a_request_exactly_once(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    rounds = 4
    for _ in range(rounds):
        req = open_request(approvals=1)
        results = _race(
            8,
            lambda i, req=req: store.decide(
                req.id, decision(req, f"reviewer{i}", APPROVE if i % 2 == 0 else DENY, "racing")
            ),
        )

        winners = [r for r in results if isinstance(r, DecisionOutcome) and r.ended is not None]
        losers = [r for r in results if not isinstance(r, DecisionOutcome)]
        assert len(winners) == 1, results
        assert len(losers) == 7, results
        # TransitionError, or its subclass ConflictError.
        assert all(isinstance(r, TransitionError) for r in losers), results
        final = store.get(req.id)
        assert final.status is winners[0].ended
        assert len(final.decisions) == 1
        rows = audit_rows(req.id)
        assert Counter(kinds(rows)) == Counter(
            {"request.created": 1, "decision.recorded": 1, f"request.{final.status.value}": 1}
        )
    assert_intact(store, rows=3 * rounds)


def test_two_approvals_at_once_are_both_counted(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    rounds = 5
    for _ in range(rounds):
        req = open_request(approvals=2)
        results = _race(
            2, lambda i, req=req: store.decide(req.id, decision(req, ("alice", "bob")[i]))
        )
        assert all(isinstance(r, DecisionOutcome) for r in results), results
        assert sorted(str(r.ended) for r in results) == sorted([str(None), str(Status.APPROVED)])
        final = store.get(req.id)
        assert final.status is Status.APPROVED
        assert sorted(d.reviewer for d in final.decisions) == ["alice", "bob"]
        assert kinds(audit_rows(req.id)).count("request.approved") == 1
    assert_intact(store, rows=4 * rounds)


def test_three_approvals_at_once_on_a_quorum_of_two(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    req = open_request(approvals=2)
    results = _race(3, lambda i: store.decide(req.id, decision(req, ("alice", "bob", "carol")[i])))
    outcomes = [r for r in results if isinstance(r, DecisionOutcome)]
    assert sorted(str(r.ended) for r in outcomes) == sorted([str(None), str(Status.APPROVED)]), (
        results
    )
    assert [type(r) for r in results if not isinstance(r, DecisionOutcome)] in (
        [TransitionError],
        [ConflictError],
    )
    final = store.get(req.id)
    assert final.status is Status.APPROVED and len(final.decisions) == 2
    assert kinds(audit_rows(req.id)).count("request.approved") == 1
    assert_intact(store, rows=4)


def test_same_reviewer_twice_at_once_counts_once(
    store: Store, open_request: Callable[..., ApprovalRequest]
) -> None:
    req = open_request(approvals=2)
    results = _race(
        4,
        lambda i: store.decide(
            req.id, decision(req, "alice", channel=("web", "slack", "cli", "api")[i])
        ),
    )
    assert sum(isinstance(r, DecisionOutcome) for r in results) == 1, results
    assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, DecisionOutcome))
    final = store.get(req.id)
    assert final.status is Status.PENDING and final.approvals == 1 and len(final.decisions) == 1
    assert_intact(store, rows=2)


def test_expiry_racing_decisions_ends_once(
    store: Store, open_request: Callable[..., ApprovalRequest], audit_rows: Callable[..., list[Any]]
) -> None:
    start = utcnow()
    req = open_request(timeout=timedelta(minutes=5), now=start)

    def call(i: int) -> Any:
        if i % 2:
            return store.expire_due(start + timedelta(minutes=6))
        return store.decide(req.id, decision(req, f"r{i}"), now=start + timedelta(minutes=1))

    results = _race(6, call)
    assert not [
        r for r in results if isinstance(r, Exception) and not isinstance(r, TransitionError)
    ], results
    expirations = sum(len(r) for r in results if isinstance(r, list))
    approvals = sum(1 for r in results if isinstance(r, DecisionOutcome) and r.ended)
    assert expirations + approvals == 1, results
    final = store.get(req.id)
    assert final.status is (Status.EXPIRED if expirations else Status.APPROVED)
    assert len([k for k in kinds(audit_rows(req.id)) if k in TERMINAL_KINDS]) == 1
    assert_intact(store)


# ===================================================================== concurrency: processes
#
# Workers live at module level so that a fresh process can import them by name.


def _decide_worker(url: str, jobs: list[tuple[str, str, str]], barrier: Any, results: Any) -> None:
    out: list[tuple[str, str]] = []
    try:
        with Store(url) as store:
            for request_id, fingerprint, verdict in jobs:
                barrier.wait(timeout=60)
                reviewer = "alice" if verdict == "approve" else "bob"
                dec = Decision(
                    reviewer=reviewer,
                    verdict=Verdict(verdict),
                    comment="racing",
                    fingerprint=fingerprint,
                )
                try:
                    ended = store.decide(request_id, dec).ended
                    out.append((request_id, ended.value if ended else "pending"))
                except TransitionError as err:
                    out.append((request_id, type(err).__name__))
        results.put(("ok", out))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _append_worker(url: str, tag: str, count: int, barrier: Any, results: Any) -> None:
    try:
        with Store(url) as store:
            barrier.wait(timeout=60)
            written = 0
            while written < count:
                size = 1 + written % 3  # batches of 1, 2 and 3 events
                size = min(size, count - written)
                store.record(
                    [
                        AuditEvent(kind="test.tick", actor=tag, data={"i": written + k})
                        for k in range(size)
                    ]
                )
                written += size
        results.put(("ok", written))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _open_worker(url: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=60)
        with Store(url) as store:
            results.put(("ok", store.count()))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _run_processes(
    target: Callable[..., None], args: list[tuple[Any, ...]], timeout: float = 90
) -> list[Any]:
    """Start one process per args tuple (sharing a Barrier); return what each put.

    Each is a fresh process forked from multiprocessing's fork server, never from this one:
    it inherits no connection, lock or thread of the test, as a spawned one would not, and
    the server imported pytest and the store once, instead of each process again (this
    module is imported in each: Python 3.11's fork server does not see the tests' sys.path).
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pytest", "sluicegate.store", "sluicegate.audit"])
    results = ctx.Queue()
    barrier = ctx.Barrier(len(args))
    procs = [ctx.Process(target=target, args=(*a, barrier, results), daemon=True) for a in args]
    for p in procs:
        p.start()
    try:
        answers = []
        for _ in procs:
            try:
                answers.append(results.get(timeout=timeout))
            except queue_module.Empty:
                pytest.fail(f"a worker process did not answer within {timeout}s")
        for p in procs:
            p.join(timeout=30)
        errors = [body for status, body in answers if status == "error"]
        assert not errors, "\n".join(errors)
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        return [body for _, body in answers]
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)


def test_two_processes_deciding_opposite_verdicts_end_each_request_once(
    db_url: str,
    store: Store,
    open_request: Callable[..., ApprovalRequest],
    audit_rows: Callable[..., list[Any]],
) -> None:
    reqs = [open_request(approvals=1) for _ in range(10)]
    jobs = [(str(r.id), r.fingerprint) for r in reqs]
    answers = _run_processes(
        _decide_worker,
        [
            (db_url, [(rid, fp, "approve") for rid, fp in jobs]),
            (db_url, [(rid, fp, "deny") for rid, fp in jobs]),
        ],
    )
    by_request: dict[str, list[str]] = {}
    for out in answers:
        for rid, what in out:
            by_request.setdefault(rid, []).append(what)
    for req in reqs:
        seen = by_request[str(req.id)]
        assert len(seen) == 2
        ended = [s for s in seen if s in ("approved", "denied")]
        assert len(ended) == 1, seen  # exactly one process ended it
        assert [s for s in seen if s not in ended] in (["TransitionError"], ["ConflictError"]), seen
        final = store.get(req.id)
        assert final.status.value == ended[0]
        assert len(final.decisions) == 1
        terminal = [k for k in kinds(audit_rows(req.id)) if k in TERMINAL_KINDS]
        assert terminal == [f"request.{ended[0]}"]
    assert_intact(store, rows=10 * 3)


def test_two_processes_appending_form_one_chain(
    db_url: str, store: Store, audit_rows: Callable[..., list[Any]]
) -> None:
    per_process = 150
    answers = _run_processes(
        _append_worker, [(db_url, "p1", per_process), (db_url, "p2", per_process)]
    )
    assert answers == [per_process, per_process]
    rows = audit_rows()
    assert [r.seq for r in rows] == list(range(1, 2 * per_process + 1))
    assert Counter(r.actor for r in rows) == {"p1": per_process, "p2": per_process}
    for tag in ("p1", "p2"):  # each process's own events keep their order
        mine = [r.data for r in rows if r.actor == tag]
        assert mine == [f'{{"i":{i}}}' for i in range(per_process)]
    assert_intact(store, rows=2 * per_process)


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(db_url: str) -> None:
    answers = _run_processes(_open_worker, [(db_url,), (db_url,)])
    assert answers == [0, 0]
    with Store(db_url) as store:
        with store.read() as conn:
            assert conn.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalars().all() == [HEAD_REVISION]
        assert_intact(store, rows=0)


def test_the_store_imports_neither_the_audit_face_nor_lineage() -> None:
    # sluicegate.audit and sluicegate.lineage import the store; the store importing either
    # back would be a cycle. Module-level imports only: what runs when the store is imported.
    import ast
    from pathlib import Path

    import sluicegate.store

    found = []
    for path in sorted(Path(sluicegate.store.__file__).parent.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found += [
                (path.name, name)
                for name in names
                if name == "sluicegate.audit" or name.startswith("sluicegate.lineage")
            ]
    assert found == []
