"""An idempotency key gives its request back only to a retry of the same gate.

The way it was found: a second pipeline token reusing an approved PII export's key went on as
approved and received the first request's action and context; the same token reusing it with
an action the policy denies outright went on too. Here against ``sluicegate serve`` in a
subprocess, over real HTTP, with the real client; and, for the writer's batches, the gates of
one batch opened together as the server opens them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from sluicegate import audit
from sluicegate.client import SluicegateClient
from sluicegate.exceptions import ClientError
from sluicegate.model import Action, Requester
from sluicegate.policy import load_policy
from sluicegate.server.group_commit import Writer
from sluicegate.store import Store
from sluicegate.store.schema import audit_events
from sluicegate.workflow import Workflow
from tests.core.support.serverproc import (
    PII_EXPORT,
    POLICY,
    ROUTINE_READ,
    SECRET_EXPORT,
    ServerProcess,
)

REQUESTER = {"orchestrator": "airflow", "job": "crm_export.export_customers", "owner": "carol"}
OWNER = "airflow-prod"
INTRUDER = "etl-sandbox"


class Setup:
    """A server, the tokens of two pipelines and two reviewers, and an approved PII export."""

    def __init__(self, db_url: str, server: ServerProcess) -> None:
        self.db_url = db_url
        self.server = server
        with Store(db_url) as store:
            self.tokens = {
                OWNER: store.create_token(OWNER, "request"),
                INTRUDER: store.create_token(INTRUDER, "request"),
                "alice": store.create_token("alice", "review"),
                "bob": store.create_token("bob", "review"),
            }
        self.key = f"airflow:crm_export:{uuid.uuid4().hex}:export"
        opened = self.open(OWNER, PII_EXPORT)
        assert opened.status_code == 201, opened.text
        self.request_id: str = opened.json()["id"]
        for reviewer in ("alice", "bob"):
            with server.client(self.tokens[reviewer]) as c:
                r = c.post(
                    f"/api/v1/requests/{self.request_id}/decisions", json={"verdict": "approve"}
                )
            assert r.status_code == 200, r.text
        assert r.json()["status"] == "approved"

    def open(
        self, principal: str, action: dict[str, Any], key: str | None = None
    ) -> httpx.Response:
        body = {"idempotency_key": key or self.key, "action": action, "requester": REQUESTER}
        with self.server.client(self.tokens[principal]) as c:
            return c.post("/api/v1/requests", json=body)

    def rows(self, kind: str) -> list[Any]:
        """The audit rows of ``kind``, read from the database itself."""
        with Store(self.db_url) as store, store.read() as conn:
            stmt = select(audit_events).where(audit_events.c.kind == kind)
            return list(conn.execute(stmt.order_by(audit_events.c.seq)).all())


@pytest.fixture
def approved(sqlite_url: str, tmp_path: Path) -> Iterator[Setup]:
    Store(sqlite_url).close()  # migrated before the server and the tokens use it
    server = ServerProcess(sqlite_url, POLICY, tmp_path, name="idempotency").start()
    try:
        yield Setup(sqlite_url, server)
    except BaseException:
        print(server.stderr())
        raise
    finally:
        server.stop()


def assert_conflict(r: httpx.Response) -> str:
    assert r.status_code == 409, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == "conflict", body
    detail: str = body["detail"]
    return detail


def test_another_token_reusing_an_approved_key_is_refused_shown_nothing_and_audited(
    approved: Setup,
) -> None:
    r = approved.open(INTRUDER, PII_EXPORT)
    detail = assert_conflict(r)
    # Nothing of the request the key holds: not its id, its action, its context or requester.
    for secret in (approved.request_id, "Export customers", "SELECT", "partner-share", OWNER):
        assert secret not in r.text, (secret, r.text)
    assert "another principal" in detail

    # The real client, as every adapter uses it: a 409 is final, not retried until a deadline.
    started = time.monotonic()
    with (
        SluicegateClient(approved.server.url, approved.tokens[INTRUDER]) as client,
        pytest.raises(ClientError) as refused,
    ):
        client.gate(approved.key, PII_EXPORT, REQUESTER, timeout=30)
    assert refused.value.status == 409 and refused.value.error == "conflict"
    assert time.monotonic() - started < 5

    conflicts = approved.rows("gate.conflict")
    assert len(conflicts) == 2
    for row in conflicts:
        assert row.actor == INTRUDER and row.request_id == approved.request_id
        data = json.loads(row.data)
        assert data["reason"] == "principal" and data["idempotency_key"] == approved.key
        assert data["fingerprint"] == Action.model_validate(PII_EXPORT).fingerprint()

    # Nor can the other token record the step as released on that approval.
    with approved.server.client(approved.tokens[INTRUDER]) as c:
        released = c.post(f"/api/v1/requests/{approved.request_id}/release")
    assert released.status_code == 403, released.text
    assert [row.actor for row in approved.rows("release.rejected")] == [INTRUDER]
    assert approved.rows("gate.released") == []

    # The pipeline that opened it still reattaches on a retry, and releases it.
    again = approved.open(OWNER, PII_EXPORT)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == approved.request_id and again.json()["status"] == "approved"
    with SluicegateClient(approved.server.url, approved.tokens[OWNER]) as client:
        assert client.gate(approved.key, PII_EXPORT, REQUESTER, timeout=30).status == "approved"
    assert [row.actor for row in approved.rows("gate.released")] == [OWNER]
    assert len(approved.rows("request.created")) == 1


def test_the_same_token_with_an_action_the_policy_denies_is_never_approved(
    approved: Setup,
) -> None:
    r = approved.open(OWNER, SECRET_EXPORT)
    detail = assert_conflict(r)
    assert approved.request_id in detail and "different action" in detail  # its own request

    # A PII export to somewhere else under the old key: asked about again, not inherited.
    elsewhere = {**PII_EXPORT, "destination": "s3://attacker/exports/customers.csv"}
    assert_conflict(approved.open(OWNER, elsewhere))
    with (
        SluicegateClient(approved.server.url, approved.tokens[OWNER]) as client,
        pytest.raises(ClientError) as refused,
    ):
        client.gate(approved.key, SECRET_EXPORT, REQUESTER, timeout=30)
    assert refused.value.status == 409

    conflicts = approved.rows("gate.conflict")
    assert [json.loads(row.data)["reason"] for row in conflicts] == ["fingerprint"] * 3
    assert {row.actor for row in conflicts} == {OWNER}
    assert json.loads(conflicts[0].data)["fingerprint"] == (
        Action.model_validate(SECRET_EXPORT).fingerprint()
    )
    assert approved.rows("gate.released") == []

    # Under a key of its own the denied action gets its own answer: denied by the policy.
    own = approved.open(OWNER, SECRET_EXPORT, key=f"airflow:keys:{uuid.uuid4().hex}:export")
    assert own.status_code == 200 and own.json()["status"] == "denied", own.text


def test_a_conflict_in_a_writer_batch_leaves_the_other_gates_of_the_batch_opened(
    sqlite_url: str,
) -> None:
    """As the server opens gates under load: many callers' gates in one batch, one write."""
    policy = load_policy(POLICY)
    pii, routine = Action.model_validate(PII_EXPORT), Action.model_validate(ROUTINE_READ)
    owner = Requester(orchestrator="airflow", job="crm.export", owner="carol", principal=OWNER)
    intruder = owner.model_copy(update={"principal": INTRUDER})
    with Store(sqlite_url) as store, Store(sqlite_url) as other:
        approvals = Workflow(store, policy)
        held = approvals.open(idempotency_key="held", action=pii, requester=owner)
        assert held.created and held.request is not None
        batches: list[int] = []
        writer = Writer(store, on_commit=batches.append)

        def plan(key: str, action: Action, requester: Requester) -> Any:
            return approvals.plan_open(idempotency_key=key, action=action, requester=requester)

        plans = [
            plan("new-1", pii, owner),
            plan("held", pii, intruder),  # another principal's key
            plan("held", routine, owner),  # the same principal, another action
            plan("read-1", routine, intruder),
            plan("held", pii, owner),  # a retry: reattaches
            plan("new-2", pii, intruder),
        ]
        # Another writer holds the database while the gates queue up, so that the writer's
        # thread takes them in one batch (or the first alone, if it was quick, and the rest).
        holding, release = threading.Event(), threading.Event()

        def hold_the_lock() -> None:
            with other.batch():
                holding.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        assert holding.wait(10)

        async def main() -> list[Any]:
            calls = [
                asyncio.ensure_future(writer.run_together(approvals.commit_opens, p)) for p in plans
            ]
            await asyncio.sleep(0.3)
            release.set()
            return await asyncio.gather(*calls, return_exceptions=True)

        try:
            answers = asyncio.run(main())
        finally:
            release.set()
            holder.join(10)
            writer.close()
        assert sum(batches) == 6 and len(batches) <= 2, batches  # conflicts amid the others
        assert not [a for a in answers if isinstance(a, BaseException)], answers
        assert [a.status for a in answers] == [
            "pending",
            "conflict",
            "conflict",
            "allowed",
            "pending",
            "pending",
        ]
        assert [a.created for a in answers] == [True, False, False, False, False, True]
        assert answers[1].request is None and answers[2].request is None
        assert answers[4].request is not None and answers[4].request.id == held.request.id
        assert store.count() == 3  # held, new-1, new-2
        assert store.find("new-2") is not None
        with store.read() as conn:
            rows = conn.execute(select(audit_events).order_by(audit_events.c.seq)).all()
        kinds = [row.kind for row in rows]
        assert kinds.count("request.created") == 3 and kinds.count("policy.allowed") == 1
        conflicts = [row for row in rows if row.kind == "gate.conflict"]
        assert [(row.actor, json.loads(row.data)["reason"]) for row in conflicts] == [
            (INTRUDER, "principal"),
            (OWNER, "fingerprint"),
        ]
        assert audit.verify(store.engine).ok
