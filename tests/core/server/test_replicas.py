"""Two replicas of ``sluicegate serve`` on one database (a SQLite file, a PostgreSQL schema):
simultaneous decisions counted once, a decision on one waking the long polls held by the
other, and a deny racing an approve ending the request once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.core.support.served import (
    REQUESTER,
    LongPoll,
    audit_token,
    open_gate,
    tokens_for,
    waiting_polls,
)
from tests.core.support.serverproc import (
    PII_EXPORT,
    POLICY,
    ServerProcess,
)


class Replicas:
    """Two servers on one database, with the tokens of everyone involved."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.pipeline, self.tokens = tokens_for(db_url, "alice", "bob", "carol")
        self.auditor = audit_token(db_url)
        self.a = ServerProcess(db_url, POLICY, tmp_path, name="replica-A")
        self.b = ServerProcess(db_url, POLICY, tmp_path, name="replica-B")

    def post(
        self, server: ServerProcess, who: str, path: str, body: dict[str, Any]
    ) -> httpx.Response:
        with server.client(self.tokens[who]) as c:
            return c.post(path, json=body)

    def get(self, server: ServerProcess, path: str, **params: Any) -> httpx.Response:
        # The audit log is read with the audit token; everything else as a reviewer.
        token = self.auditor if path.startswith("/api/v1/audit") else self.tokens["alice"]
        with server.client(token) as c:
            return c.get(path, params=params)

    def audit_of(self, server: ServerProcess, request_id: str) -> list[dict[str, Any]]:
        r = self.get(server, "/api/v1/audit")
        assert r.status_code == 200, r.text
        rows = [json.loads(line) for line in r.text.splitlines()]
        return [row for row in rows if row["request_id"] == request_id]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def replicas(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Two replicas on one SQLite file or one PostgreSQL schema, shared by the module's tests
    of that database (each races on requests of its own); stopped after the module."""
    tmp = tmp_path_factory.mktemp(f"replicas-{request.param}")
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp}/sluicegate.db"
    else:
        db_url = str(request.getfixturevalue("module_pg_url"))
    rs = Replicas(db_url, tmp)
    try:
        rs.a.start()
        rs.b.start()
        yield rs
    finally:
        for server in (rs.a, rs.b):
            server.stop()
            print(f"===== {server.name} ({server.url}) output =====\n{server.stderr()}")


def race(*calls: Callable[[], httpx.Response]) -> list[tuple[httpx.Response, float]]:
    """Run the calls at the same moment (threads + barrier); each response with when it came."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], httpx.Response]) -> None:
        barrier.wait(timeout=10)
        try:
            results[i] = (call(), time.monotonic())
        except BaseException as err:  # reported below
            results[i] = err

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for r in results:
        if not isinstance(r, tuple):
            raise AssertionError(f"a racing call failed: {r!r}")
    return results


def test_two_replicas_count_simultaneous_approvals_once_and_wake_each_other(
    replicas: Replicas,
) -> None:
    # On PostgreSQL the replicas hear each other through LISTEN/NOTIFY; on one SQLite file,
    # by following the audit log's tail.
    rs = replicas

    # A retried task reaching both replicas at once still opens one request.
    body = {
        "idempotency_key": "airflow:crm:race:export",
        "action": PII_EXPORT,
        "requester": REQUESTER,
    }

    def open_on(server: ServerProcess) -> httpx.Response:
        with server.client(rs.pipeline) as c:
            return c.post("/api/v1/requests", json=body)

    (oa, _), (ob, _) = race(lambda: open_on(rs.a), lambda: open_on(rs.b))
    assert sorted([oa.status_code, ob.status_code]) == [200, 201], (oa.text, ob.text)
    assert oa.json()["id"] == ob.json()["id"]
    created = [r for r in rs.audit_of(rs.a, oa.json()["id"]) if r["kind"] == "request.created"]
    assert len(created) == 1

    for _ in range(3):  # a few rounds: each a real race on a fresh request
        req = open_gate(rs.a, rs.pipeline)
        rid = req["id"]
        polls = [LongPoll(rs.a, rs.pipeline, rid), LongPoll(rs.b, rs.pipeline, rid)]
        for p in polls:
            p.start()
        deadline = time.monotonic() + 10
        while not (waiting_polls(rs.a) >= 1 and waiting_polls(rs.b) >= 1):
            assert time.monotonic() < deadline, "the long polls never started waiting"
            time.sleep(0.02)

        path = f"/api/v1/requests/{rid}/decisions"
        (ra, ta), (rb, tb) = race(
            lambda p=path: rs.post(rs.a, "alice", p, {"verdict": "approve"}),
            lambda p=path: rs.post(rs.b, "bob", p, {"verdict": "approve"}),
        )
        assert ra.status_code == 200 and rb.status_code == 200, (ra.text, rb.text)
        statuses = sorted([ra.json()["status"], rb.json()["status"]])
        assert statuses == ["approved", "pending"], statuses  # counted together, ended once
        ender, ended_at = (rs.a, ta) if ra.json()["status"] == "approved" else (rs.b, tb)

        for p in polls:
            p.join(timeout=25)
            assert p.status == "approved", p.status
        other = polls[1] if ender is rs.a else polls[0]
        assert other.at is not None
        # The replica that did not end it heard it at once (NOTIFY, or the SQLite follower),
        # not through the 5 s re-check.
        assert other.at - ended_at < 1.0, other.at - ended_at

        for server in (rs.a, rs.b):
            got = rs.get(server, f"/api/v1/requests/{rid}").json()
            assert got["status"] == "approved" and got["approvals"] == 2
        kinds = [row["kind"] for row in rs.audit_of(rs.a, rid)]
        assert kinds.count("decision.recorded") == 2
        assert kinds.count("request.approved") == 1
        assert kinds.count("request.denied") == 0
    for server in (rs.a, rs.b):
        verified = rs.get(server, "/api/v1/audit/verify").json()
        assert verified["ok"] is True, verified


@pytest.mark.postgres
@pytest.mark.parametrize("replicas", ["postgres"], indirect=True)
def test_two_replicas_racing_deny_and_approve_end_the_request_once(replicas: Replicas) -> None:
    rs = replicas
    outcomes = set()
    for _ in range(4):
        # Owner dave is no steward: alice, bob and carol may all decide; carol's approval
        # leaves one to go, so bob's approval and alice's deny would each end the request.
        rid = open_gate(rs.a, rs.pipeline, owner="dave")["id"]
        path = f"/api/v1/requests/{rid}/decisions"
        first = rs.post(rs.b, "carol", path, {"verdict": "approve"})
        assert first.status_code == 200 and first.json()["status"] == "pending", first.text

        (deny, _), (approve, _) = race(
            lambda p=path: rs.post(rs.a, "alice", p, {"verdict": "deny", "comment": "no"}),
            lambda p=path: rs.post(rs.b, "bob", p, {"verdict": "approve"}),
        )
        codes = sorted([deny.status_code, approve.status_code])
        assert codes == [200, 409], (deny.text, approve.text)
        winner = deny if deny.status_code == 200 else approve
        final = winner.json()["status"]
        assert final == ("denied" if winner is deny else "approved")
        loser = approve if winner is deny else deny
        assert set(loser.json()) == {"error", "detail"} and loser.json()["error"] == "conflict"
        outcomes.add(final)

        for server in (rs.a, rs.b):
            got = rs.get(server, f"/api/v1/requests/{rid}").json()
            assert got["status"] == final
            assert len(got["decisions"]) == 2  # carol's and the winner's
        kinds = [row["kind"] for row in rs.audit_of(rs.b, rid)]
        assert kinds.count("request.approved") + kinds.count("request.denied") == 1
        assert kinds.count("decision.recorded") == 2
    for server in (rs.a, rs.b):
        assert rs.get(server, "/api/v1/audit/verify").json()["ok"] is True
    print(f"outcomes seen: {sorted(outcomes)}")
