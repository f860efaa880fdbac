"""One bad gate never fails another: gates batched by the writer succeed or fail alone.

The server's writer commits many callers' gate opens as one multi-row write. A gate whose
write fails in the store (on main: a context nested some 300 levels deep, which validation let
through and the store could not serialize) must fail alone, and a malformed gate must be
refused at the edge (422) before it reaches the writer at all; the good gates sent with it
are opened as if it had never come. Run on SQLite and PostgreSQL, through the real app and
the real writer, with the batch made certain by holding the write lock while the gates queue.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from sluicegate import audit
from sluicegate.client import SluicegateClient
from sluicegate.exceptions import ActionError, ClientError
from sluicegate.model import Action, Requester
from sluicegate.policy import load_policy
from sluicegate.server import create_app
from sluicegate.server import group_commit as writer_module
from sluicegate.server.group_commit import Writer
from sluicegate.settings import load_settings
from sluicegate.store import Store
from sluicegate.workflow import Workflow
from tests.core.support.serverproc import PII_EXPORT, POLICY, ROUTINE_READ, ThreadServer

#: Deeper than the store can serialize (the context that exposed the bug nested 256 levels).
DEEP = 300
GOOD_PENDING, GOOD_ALLOWED, BAD = 16, 16, 8


def nested(depth: int) -> dict[str, Any]:
    """A context whose objects nest ``depth`` levels deep."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


pytestmark = pytest.mark.usefixtures("isolated")  # none of the developer's settings leaks in


@pytest.fixture
def app(db_url: str) -> Iterator[Any]:
    """The real app on ``db_url``, its lifespan running."""
    extra = {} if db_url.startswith("sqlite") else {"secret_key": "test-key-" + "k" * 40}
    application = create_app(load_settings(db_url=db_url, policy=str(POLICY), **extra))
    try:
        yield application
    finally:
        application.state.sluicegate.store.close()


def _held(store: Store, release: threading.Event, holding: threading.Event) -> None:
    # Another writer's transaction: the server's writer waits for it while the gates queue.
    with store.write():
        holding.set()
        release.wait(30)


def test_good_gates_batched_with_malformed_ones_all_open(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = app.state.sluicegate
    # How many gates the writer has taken from its queue: the rounds it takes while the lock
    # is held wait in its hands, to be committed with whatever else came.
    taken: list[int] = []
    drain = writer_module._drain

    def counted(q: Any, limit: int) -> Any:
        items = drain(q, limit)
        if q is st.writer._jobs and items:
            taken.append(len(items))
        return items

    monkeypatch.setattr(writer_module, "_drain", counted)
    with TestClient(app, raise_server_exceptions=False) as client:
        headers = {"Authorization": f"Bearer {st.store.create_token('airflow-prod', 'request')}"}
        bodies: list[tuple[str, dict[str, Any]]] = []
        for i in range(GOOD_PENDING + GOOD_ALLOWED + BAD):
            key = f"batch:{uuid.uuid4().hex}"
            if i % 5 == 4 and sum(kind == "bad" for kind, _ in bodies) < BAD:
                action = {**PII_EXPORT, "context": nested(DEEP)}
                bodies.append(("bad", {"idempotency_key": key, "action": action}))
            elif i % 2:
                bodies.append(("pending", {"idempotency_key": key, "action": PII_EXPORT}))
            else:
                bodies.append(("allowed", {"idempotency_key": key, "action": ROUTINE_READ}))
        release, holding = threading.Event(), threading.Event()
        holder = threading.Thread(target=_held, args=(st.store, release, holding))
        holder.start()
        try:
            assert holding.wait(10)
            with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
                sent = [
                    pool.submit(client.post, "/api/v1/requests", json=body, headers=headers)
                    for _, body in bodies
                ]
                # Every good gate waits in the writer's queue or in its hands (the round it
                # took before the lock): they will be committed together, with whatever
                # else came.
                good = sum(kind != "bad" for kind, _ in bodies)
                deadline = time.monotonic() + 20
                while st.writer._jobs.qsize() + sum(taken) < good:
                    assert time.monotonic() < deadline, (st.writer._jobs.qsize(), taken)
                    time.sleep(0.01)
                release.set()
                answers = [f.result(timeout=30) for f in sent]
        finally:
            release.set()
            holder.join(10)

        told = [(kind, answer) for (kind, _), answer in zip(bodies, answers, strict=True)]
        failed_good = [
            (kind, answer.status_code, answer.text[:80])
            for kind, answer in told
            if kind != "bad" and answer.status_code != (201 if kind == "pending" else 200)
        ]
        assert not failed_good, f"{len(failed_good)} good gates failed: {failed_good[:3]}"
        for kind, answer in told:
            if kind == "bad":
                assert answer.status_code == 422, answer.text
                assert answer.json()["error"] == "invalid_request"
                assert answer.json()["detail"].startswith("action.context: "), answer.text
                assert "32 levels" in answer.json()["detail"], answer.text
                continue
            assert answer.json()["status"] == kind
            if kind == "pending":  # what it was told is what was kept
                got = client.get(f"/api/v1/requests/{answer.json()['id']}", headers=headers)
                assert got.status_code == 200 and got.json()["status"] == "pending", got.text
    assert audit.verify(st.store.engine).ok


def test_a_write_that_fails_in_the_store_fails_only_its_own_gate(store: Store) -> None:
    """Whatever validation misses and the store refuses: the writer gives that gate its error
    and opens every other gate of the batch."""
    approvals = Workflow(store, load_policy(POLICY))
    writer = Writer(store, inline_when_quiet=False)
    hold = threading.Event()
    requester = Requester(orchestrator="airflow", job="crm.export", owner="carol", principal="p")
    good = Action.model_validate(PII_EXPORT)
    # Unvalidated, as a gap in validation would let it through: too deep to serialize.
    bad = Action.model_construct(**{**good.__dict__, "context": nested(DEEP)})

    def plan(key: str, action: Action) -> Any:
        return approvals.plan_open(idempotency_key=key, action=action, requester=requester)

    plans = [plan(f"good-{i}", good) for i in range(6)]
    plans.insert(3, plan("bad", bad))

    async def main() -> list[Any]:
        first = asyncio.ensure_future(writer.run(hold.wait, 5))
        await asyncio.sleep(0.05)
        rest = asyncio.ensure_future(
            asyncio.gather(
                *(writer.run_together(approvals.commit_opens, p) for p in plans),
                return_exceptions=True,
            )
        )
        await asyncio.sleep(0.05)
        hold.set()
        await first
        return list(await rest)

    try:
        answers = asyncio.run(main())
    finally:
        writer.close()
    failed = answers.pop(3)
    assert isinstance(failed, ValueError) and "serialization depth" in str(failed), failed
    assert [a.status for a in answers] == ["pending"] * 6, answers
    assert all(a.created for a in answers)
    for answer in answers:
        assert store.get(answer.request.id).status.value == "pending"
    assert store.find("bad") is None
    assert audit.verify(store.engine).ok


def test_the_client_refuses_a_malformed_gate_at_once_instead_of_retrying(
    sqlite_url: str,
) -> None:
    """On main the server answered this gate 500 and the client retried it until its timeout
    (forever with ``timeout=None``); it is refused before it is sent, in one line."""
    app = create_app(load_settings(db_url=sqlite_url, policy=str(POLICY)))
    try:
        token = app.state.sluicegate.store.create_token("airflow-prod", "request")
        with ThreadServer(app) as server, SluicegateClient(server.url, token) as client:
            started = time.monotonic()
            with pytest.raises(ActionError) as refused:
                client.gate("deep", {**PII_EXPORT, "context": nested(DEEP)}, timeout=5)
            assert time.monotonic() - started < 1
            assert "context" in str(refused.value) and "32 levels" in str(refused.value)
            assert "\n" not in str(refused.value)
            assert "errors.pydantic.dev" not in str(refused.value)
    finally:
        app.state.sluicegate.store.close()


@pytest.mark.parametrize(
    ("status", "body", "retried"),
    [
        (422, {"error": "invalid_request", "detail": "action.context: too deep"}, False),
        (409, {"error": "conflict", "detail": "another principal's key"}, False),
        (403, {"error": "forbidden", "detail": "a review token cannot open gates"}, False),
        # Sluicegate's own 500: a fault that the same request meets again.
        (500, {"error": "internal", "detail": "the server failed unexpectedly"}, False),
        (503, {"error": "unavailable", "detail": "database unavailable"}, True),
        (502, None, True),  # a proxy in front: the server may come back
    ],
)
def test_the_client_retries_only_what_can_change(
    status: int, body: dict[str, str] | None, retried: bool
) -> None:
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) > 1:  # the retry, if there is one, succeeds
            return httpx.Response(200, json={"id": "x", "status": "allowed", "rule": None})
        if body is None:
            return httpx.Response(status, text="Bad Gateway")
        return httpx.Response(status, json=body)

    client = SluicegateClient("http://sluicegate.test", "t", transport=httpx.MockTransport(answer))
    with client:
        started = time.monotonic()
        if retried:
            assert client.gate("k", ROUTINE_READ, timeout=10).status == "allowed"
            assert len(calls) == 2
        else:
            with pytest.raises(ClientError) as err:
                client.gate("k", ROUTINE_READ, timeout=None)
            assert err.value.status == status
            assert len(calls) == 1  # given up at once, never asked again
            assert time.monotonic() - started < 1
