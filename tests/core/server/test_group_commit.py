"""The server's writer: many callers' writes committed together, each one undone on its own.

Run on both databases, through the real Store: what a caller is told must be what was kept,
and the audit chain must verify whatever mixture of successes and failures went into a batch.
Tests of the thread's grouping pass ``inline_when_quiet=False`` where their first call holds
the thread (on SQLite a quiet writer would run that call on the loop instead).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import select

from sluicegate.audit import AuditEvent
from sluicegate.exceptions import NotFoundError
from sluicegate.model import Action, Requester
from sluicegate.policy import load_policy
from sluicegate.server.group_commit import Writer
from sluicegate.store import Store, audit
from sluicegate.store.schema import audit_events
from sluicegate.workflow import Workflow
from tests.core.support.serverproc import PII_EXPORT, POLICY, ROUTINE_READ


class Boom(Exception):
    pass


def _kinds(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(select(audit_events.c.kind).order_by(audit_events.c.seq)).scalars()
        )


async def _gather(writer: Writer, calls: list[Any]) -> list[Any]:
    return await asyncio.gather(*(writer.run(c) for c in calls), return_exceptions=True)


def test_a_batch_keeps_the_good_writes_and_undoes_only_the_failed_one(store: Store) -> None:
    batches: list[int] = []
    writer = Writer(store, on_commit=batches.append, inline_when_quiet=False)
    gate = threading.Event()

    def first() -> str:
        gate.wait(5)  # holds the writer, so that the calls below queue into one batch
        store.record([AuditEvent("test.first")])
        return "first"

    def ok(i: int) -> Any:
        return lambda: store.record([AuditEvent("test.ok", data={"i": i})])[0]

    def fails_after_writing() -> None:
        with store.write() as conn:
            audit.append(conn, [AuditEvent("test.undone")])
            raise Boom("after its audit row")

    async def main() -> list[Any]:
        head = asyncio.ensure_future(writer.run(first))
        await asyncio.sleep(0.05)
        rest = asyncio.ensure_future(
            _gather(writer, [ok(1), fails_after_writing, ok(2), lambda: store.get("x"), ok(3)])
        )
        await asyncio.sleep(0.05)
        gate.set()
        return [await head, *(await rest)]

    try:
        results = asyncio.run(main())
    finally:
        writer.close()
    assert results[0] == "first"
    assert isinstance(results[2], Boom)
    assert isinstance(results[4], NotFoundError)
    seqs = [results[1], results[3], results[5]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    # The failed call's row is gone and the chain has no gap where it was.
    kinds = _kinds(store)
    assert "test.undone" not in kinds
    assert kinds.count("test.ok") == 3
    verified = audit.verify(store.engine)
    assert verified.ok, verified
    # Fewer batches than calls: they were committed together.
    assert sum(batches) == 6 and len(batches) < 6


def test_one_key_opened_many_times_in_one_batch_makes_one_request(store: Store) -> None:
    approvals = Workflow(store, load_policy(POLICY))
    writer = Writer(store)
    requester = Requester(orchestrator="airflow", job="crm.export", owner="carol", principal="p")
    pending = Action.model_validate(PII_EXPORT)
    routine = Action.model_validate(ROUTINE_READ)

    def plan(key: str, action: Action) -> Any:
        return approvals.plan_open(idempotency_key=key, action=action, requester=requester)

    async def main() -> list[Any]:
        plans = [plan("same-key", pending) for _ in range(20)]
        plans += [plan(f"read-{i}", routine) for i in range(20)]
        # As the server opens gates: grouped, one multi-row write per batch.
        return await asyncio.gather(
            *(writer.run_together(approvals.commit_opens, p) for p in plans),
            return_exceptions=True,
        )

    try:
        answers = asyncio.run(main())
    finally:
        writer.close()
    assert not [a for a in answers if isinstance(a, BaseException)], answers
    opened = answers[:20]
    assert sum(a.created for a in opened) == 1
    assert len({str(a.request.id) for a in opened}) == 1
    assert all(a.status == "pending" for a in opened)
    assert all(a.status == "allowed" and a.request is None for a in answers[20:])
    kinds = _kinds(store)
    assert kinds.count("request.created") == 1
    assert kinds.count("policy.allowed") == 20
    assert audit.verify(store.engine).ok


def test_a_failing_group_fails_only_its_callers(store: Store) -> None:
    writer = Writer(store, inline_when_quiet=False)
    gate = threading.Event()

    def hold() -> None:
        gate.wait(5)  # so that everything below lands in one batch

    def good_bulk(items: list[int]) -> list[int]:
        return store.record([AuditEvent("test.bulk", data={"i": i}) for i in items])

    def bad_bulk(items: list[int]) -> list[int]:
        store.record([AuditEvent("test.undone")])
        raise Boom(f"{len(items)} items")

    async def main() -> list[Any]:
        first = asyncio.ensure_future(writer.run(hold))
        await asyncio.sleep(0.05)
        rest = [writer.run_together(good_bulk, i) for i in range(3)]
        rest += [writer.run_together(bad_bulk, i) for i in range(2)]
        rest.append(writer.run(lambda: store.record([AuditEvent("test.single")])[0]))
        later = asyncio.ensure_future(asyncio.gather(*rest, return_exceptions=True))
        await asyncio.sleep(0.05)
        gate.set()
        await first
        return list(await later)

    try:
        results = asyncio.run(main())
    finally:
        writer.close()
    good, bad, single = results[:3], results[3:5], results[5]
    assert all(isinstance(r, int) for r in good) and len(set(good)) == 3
    # The group failed as a whole, then each of its items alone: each caller gets its own.
    assert all(isinstance(r, Boom) and str(r) == "1 items" for r in bad)
    assert isinstance(single, int) and single > max(good)  # groups run first
    kinds = _kinds(store)
    assert kinds == ["test.bulk"] * 3 + ["test.single"]
    assert audit.verify(store.engine).ok


def test_after_commit_calls_run_once_committed_and_never_for_undone_writes(store: Store) -> None:
    writer = Writer(store, inline_when_quiet=False)
    gate = threading.Event()
    seen: list[tuple[str, bool]] = []

    def committed(label: str) -> bool:
        # What an after-commit call sees from another connection: its write is already kept.
        with store.engine.connect() as conn:
            kinds = list(conn.execute(select(audit_events.c.kind)).scalars())
        return f"test.{label}" in kinds

    def write_then_follow(label: str, fail: bool = False) -> Any:
        def call() -> None:
            store.record([AuditEvent(f"test.{label}")])
            store.on_commit(lambda: seen.append((label, committed(label))))
            if fail:
                raise Boom(label)

        return call

    def group(items: list[str]) -> list[None]:
        for label in items:
            write_then_follow(label)()
        raise Boom("the whole group is undone")

    async def main() -> list[Any]:
        first = asyncio.ensure_future(writer.run(gate.wait, 5))
        await asyncio.sleep(0.05)
        rest = [writer.run(write_then_follow("kept")), writer.run_together(group, "grouped")]
        later = asyncio.ensure_future(asyncio.gather(*rest, return_exceptions=True))
        await asyncio.sleep(0.05)
        gate.set()
        await first
        return list(await later)

    try:
        results = asyncio.run(main())
    finally:
        writer.close()
    assert results[0] is None and isinstance(results[1], Boom)
    assert seen == [("kept", True)]  # after the commit, and nothing for the undone group
    # Outside a batch the write has committed when on_commit is called: it runs at once.
    write_then_follow("alone")()
    assert seen[-1] == ("alone", True)


def test_a_commit_that_fails_tells_every_caller(store: Store, monkeypatch: Any) -> None:
    writer = Writer(store, inline_when_quiet=False)
    real_flush = audit.flush_head

    def broken_flush(conn: Any) -> None:
        real_flush(conn)
        raise RuntimeError("disk gone")

    monkeypatch.setattr(audit, "flush_head", broken_flush)

    async def main() -> list[Any]:
        return await _gather(
            writer,
            [lambda i=i: store.record([AuditEvent("test.lost", data={"i": i})]) for i in range(5)],
        )

    try:
        results = asyncio.run(main())
    finally:
        monkeypatch.setattr(audit, "flush_head", real_flush)
        writer.close()
    assert all(isinstance(r, RuntimeError) for r in results), results
    assert "test.lost" not in _kinds(store)
    assert audit.verify(store.engine).ok


@pytest.mark.parametrize("n", [1, 250])
def test_the_writer_answers_in_order_of_queueing_across_batch_limits(store: Store, n: int) -> None:
    writer = Writer(store, max_batch=100)  # on SQLite the first call is committed on the loop

    async def main() -> list[Any]:
        return await _gather(
            writer,
            [lambda i=i: store.record([AuditEvent("test.n", data={"i": i})])[0] for i in range(n)],
        )

    try:
        seqs = asyncio.run(main())
    finally:
        writer.close()
    assert seqs == sorted(seqs) and len(set(seqs)) == n
    assert audit.verify(store.engine).ok


# --------------------------------------------------------------------------- a quiet writer


def test_a_quiet_writer_commits_on_the_loop_and_a_burst_is_still_grouped(
    sqlite_store: Store,
) -> None:
    store = sqlite_store
    batches: list[int] = []
    writer = Writer(store, on_commit=batches.append)
    where: list[str] = []

    def write(i: int) -> Any:
        def call() -> int:
            where.append(threading.current_thread().name)
            return store.record([AuditEvent("test.w", data={"i": i})])[0]

        return call

    async def main() -> tuple[int, list[Any]]:
        first = await writer.run(write(0))  # nothing written before: committed right here
        burst = await _gather(writer, [write(i) for i in range(1, 41)])
        return first, burst

    try:
        first, burst = asyncio.run(main())
    finally:
        writer.close()
    assert where[0] == threading.current_thread().name  # the loop's thread, no hop
    assert set(where[1:]) == {"sluicegate-writer"}  # right behind it: to the thread, grouped
    assert [first, *burst] == sorted([first, *burst]) and len(set(burst)) == 40
    assert sum(batches) == 41 and len(batches) < 20
    assert audit.verify(store.engine).ok


def test_a_quiet_call_that_fails_raises_and_keeps_nothing(sqlite_store: Store) -> None:
    store = sqlite_store
    writer = Writer(store)

    def fails_after_writing() -> None:
        with store.write() as conn:
            audit.append(conn, [AuditEvent("test.undone")])
            raise Boom("after its audit row")

    async def main() -> Any:
        try:
            await writer.run(fails_after_writing)
        except Boom as err:
            return err
        return None

    try:
        err = asyncio.run(main())
        later = asyncio.run(writer.run(lambda: store.record([AuditEvent("test.after")])[0]))
    finally:
        writer.close()
    assert isinstance(err, Boom)
    assert _kinds(store) == ["test.after"]
    assert later == 1  # the undone row left no gap in the chain
    assert audit.verify(store.engine).ok


def test_a_quiet_call_queues_rather_than_wait_for_another_writer(sqlite_url: str) -> None:
    # Another process writing to the same file (here a second Store: its own lock file
    # descriptor) must not stall the loop: the call goes to the writer thread and waits there.
    store, other = Store(sqlite_url), Store(sqlite_url)
    writer = Writer(store)
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with other.batch():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(10)
    where: list[str] = []

    def write() -> int:
        where.append(threading.current_thread().name)
        return store.record([AuditEvent("test.behind")])[0]

    async def main() -> tuple[int, int]:
        ticks = 0
        call = asyncio.ensure_future(writer.run(write))
        while ticks < 5:  # the loop keeps running while the other writer holds the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert not call.done()
        release.set()
        return await call, ticks

    try:
        seq, ticks = asyncio.run(main())
    finally:
        release.set()
        holder.join(10)
        writer.close()
        other.close()
    try:
        assert ticks == 5 and where == ["sluicegate-writer"]
        assert _kinds(store) == ["test.behind"] and seq == 1
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_commits_stay_in_the_writer_thread(pg_url: str) -> None:
    store = Store(pg_url)
    writer = Writer(store)
    where: list[str] = []

    def write() -> int:
        where.append(threading.current_thread().name)
        return store.record([AuditEvent("test.pg")])[0]

    try:
        asyncio.run(writer.run(write))
    finally:
        writer.close()
        store.close()
    assert where == ["sluicegate-writer"]


@pytest.mark.parametrize("inline", [True, False], ids=["on the loop", "in the thread"])
def test_a_group_alone_in_its_batch_keeps_all_or_nothing(sqlite_store: Store, inline: bool) -> None:
    # A group alone in its batch runs without a savepoint: its failure must still undo every
    # row it wrote, and its success keep them.
    store = sqlite_store
    writer = Writer(store, inline_when_quiet=inline)

    def writes_two(items: list[str]) -> list[int]:
        first = store.record([AuditEvent("test.one", data={"item": items[0]})])[0]
        store.record([AuditEvent("test.two")])
        if items[0] == "fail":
            raise Boom("after two rows")
        return [first]

    async def main() -> list[Any]:
        out: list[Any] = []
        for item in ("fail", "keep"):
            try:
                out.append(await writer.run_together(writes_two, item))
            except Boom as err:
                out.append(err)
            await asyncio.sleep(0.03)  # quiet again: each call is alone in its batch
        return out

    try:
        failed, kept = asyncio.run(main())
    finally:
        writer.close()
    assert isinstance(failed, Boom) and kept == 1
    assert _kinds(store) == ["test.one", "test.two"]
    assert audit.verify(store.engine).ok


def test_a_failed_write_that_cannot_be_undone_fails_the_whole_batch(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # If a failed write's savepoint cannot be rolled back, its rows may still be in the
    # transaction: the batch must then keep nothing and tell every caller.
    from sqlalchemy.engine import Connection
    from sqlalchemy.exc import OperationalError

    writer = Writer(store, inline_when_quiet=False)
    gate = threading.Event()
    real = Connection.exec_driver_sql

    def broken_rollback(self: Connection, statement: str, *args: Any, **kw: Any) -> Any:
        if statement.startswith("ROLLBACK TO"):
            raise OperationalError(statement, {}, Exception("connection lost"))
        return real(self, statement, *args, **kw)

    monkeypatch.setattr(Connection, "exec_driver_sql", broken_rollback)

    def fails_after_writing() -> None:
        with store.write() as conn:
            audit.append(conn, [AuditEvent("test.undone")])
            raise Boom("after its audit row")

    async def main() -> list[Any]:
        first = asyncio.ensure_future(writer.run(gate.wait, 5))
        await asyncio.sleep(0.05)
        rest = asyncio.ensure_future(
            _gather(
                writer,
                [
                    lambda: store.record([AuditEvent("test.ok")])[0],
                    fails_after_writing,
                    lambda: store.record([AuditEvent("test.ok")])[0],
                ],
            )
        )
        await asyncio.sleep(0.05)
        gate.set()
        return [await first, *(await rest)]

    try:
        results = asyncio.run(main())
    finally:
        writer.close()
        monkeypatch.setattr(Connection, "exec_driver_sql", real)
    assert results[0] is True  # the batch before, holding the thread
    assert all("could not be undone" in str(r) for r in results[1:]), results
    assert _kinds(store) == []  # neither the good rows nor the undone one
    assert audit.verify(store.engine).ok
