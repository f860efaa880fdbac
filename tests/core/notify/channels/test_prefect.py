"""The server resumes a paused Prefect flow run the moment its request ends.

The real server runs as a subprocess, configured through ``SLUICEGATE_PREFECT__*`` the way an
operator does; a small local HTTP server stands in for Prefect's API (``fakeprefect``) and
records each resume. tests/prefect runs the same path against the real Prefect.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate.exceptions import ConfigError
from sluicegate.settings import load_settings
from sluicegate.store import Store
from sluicegate.store.notifications import OutboxTable
from tests.core.support.fakeprefect import BUSY, FakePrefect
from tests.core.support.serverproc import (
    PII_EXPORT,
    POLICY,
    ROUTINE_READ,
    TLS,
    ServerProcess,
    running,
)

API_KEY = "pnu_test_key_that_must_never_be_logged"


class Env:
    def __init__(self, server: ServerProcess, tokens: dict[str, str], prefect: FakePrefect):
        self.server, self.tokens, self.prefect = server, tokens, prefect

    def call(self, who: str, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(
            method,
            f"{self.server.url}{path}",
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            timeout=30,
            verify=TLS,
            **kw,
        )
        assert r.is_success, r.text
        return r.json()

    def open(self, action: dict[str, Any], requester: dict[str, Any]) -> dict[str, Any]:
        body = {"idempotency_key": uuid.uuid4().hex, "action": action, "requester": requester}
        answer: dict[str, Any] = self.call("prefect", "POST", "/api/v1/requests", json=body)
        return answer

    def decide(self, rid: str, who: str, verdict: str, comment: str = "") -> None:
        body = {"verdict": verdict, "comment": comment}
        self.call(who, "POST", f"/api/v1/requests/{rid}/decisions", json=body)

    def outbox(self, rid: str) -> list[dict[str, Any]]:
        with Store(self.server.db_url) as store:
            return OutboxTable(store).rows(rid)

    def settled(self, rid: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The request's outbox rows once none is pending (sent, or given up)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.outbox(rid)
            if rows and all(r["status"] != "pending" for r in rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"outbox rows still pending: {rows}")
            time.sleep(0.1)


def _env(tmp: Path, prefect: FakePrefect, **settings: str) -> Iterator[Env]:
    db = f"sqlite:///{tmp}/sluicegate.db"
    env = {"SLUICEGATE_PREFECT__API_URL": prefect.url, **settings}
    server = ServerProcess(db, POLICY, tmp, env=env, log_level="info")
    with Store(db) as store:
        tokens = {"prefect": store.create_token("prefect-prod", "request")}
        tokens |= {r: store.create_token(r, "review") for r in ("alice", "bob")}
    with running(server):
        server.start()
        yield Env(server, tokens, prefect)


@pytest.fixture(scope="module")
def _prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with FakePrefect() as prefect:
        yield from _env(
            tmp_path_factory.mktemp("prefect"), prefect, SLUICEGATE_PREFECT__API_KEY=API_KEY
        )


@pytest.fixture
def env(_prefect_server: Env) -> Iterator[Env]:
    """The server and Prefect stand-in shared by the module's tests that use them, with the
    stand-in's record and script cleared: each such test waits until its requests' outbox rows
    are settled, so every call recorded from here on is this test's own."""
    _prefect_server.prefect.calls.clear()
    _prefect_server.prefect.script = []
    yield _prefect_server
    print(f"===== server output =====\n{_prefect_server.server.stderr()}")


def prefect_requester(run_id: str) -> dict[str, Any]:
    return {"orchestrator": "prefect", "job": "crm-export.gate", "run_id": run_id}


def test_an_approved_request_resumes_its_flow_run_once_with_the_outcome(env: Env) -> None:
    run_id = str(uuid.uuid4())
    rid = env.open(PII_EXPORT, prefect_requester(run_id))["id"]
    env.decide(rid, "alice", "approve")  # one of two: the run stays paused
    env.decide(rid, "bob", "approve")

    rows = env.settled(rid)
    (call,) = env.prefect.calls
    assert call.flow_run_id == run_id
    assert call.body == {"run_input": {"request_id": rid, "status": "approved"}}
    assert call.headers["Authorization"] == f"Bearer {API_KEY}"
    # Only the end went to Prefect: nothing for the creation or alice's decision on its own.
    assert [(r["target"], r["kind"], r["status"]) for r in rows] == [
        (f"prefect:{run_id}", "request.approved", "sent"),
    ]
    assert API_KEY not in env.server.stderr()


def test_a_denied_request_resumes_it_with_denied_over_basic_auth(tmp_path: Path) -> None:
    with FakePrefect() as prefect:
        for env in _env(tmp_path, prefect, SLUICEGATE_PREFECT__AUTH_STRING="admin:pa55"):
            run_id = str(uuid.uuid4())
            rid = env.open(PII_EXPORT, prefect_requester(run_id))["id"]
            env.decide(rid, "bob", "deny", "not this partner")
            (call,) = prefect.wait_for(1)
            assert call.body == {"run_input": {"request_id": rid, "status": "denied"}}
            assert (
                call.headers["Authorization"] == "Basic " + base64.b64encode(b"admin:pa55").decode()
            )
            assert "pa55" not in env.server.stderr()


def test_requests_of_other_orchestrators_and_policy_answers_resume_nothing(env: Env) -> None:
    airflow = env.open(PII_EXPORT, {"orchestrator": "airflow", "run_id": str(uuid.uuid4())})
    not_a_run = env.open(PII_EXPORT, prefect_requester("manual-run-7"))  # no flow run id
    allowed = env.open(ROUTINE_READ, prefect_requester(str(uuid.uuid4())))
    assert allowed["status"] == "allowed"
    for rid in (airflow["id"], not_a_run["id"]):
        env.decide(rid, "bob", "deny", "no")
    # The deciding transactions have committed: whatever they planned is in the outbox now.
    assert env.outbox(airflow["id"]) == []
    assert env.outbox(not_a_run["id"]) == []
    assert env.prefect.calls == []


def test_a_failing_prefect_api_is_retried_and_a_run_that_is_not_paused_is_not(env: Env) -> None:
    env.prefect.script = [
        BUSY,
        BUSY,  # the quick second try fails too: the row's backoff follows
        (
            200,
            {
                "status": "ABORT",
                "details": {"reason": "Cannot resume a flow run that is not paused."},
            },
        ),
    ]
    run_id = str(uuid.uuid4())
    rid = env.open(PII_EXPORT, prefect_requester(run_id))["id"]
    env.decide(rid, "bob", "deny", "no")
    first, quick, later = env.prefect.wait_for(3, timeout=20)
    assert (first.answered, quick.answered, later.answered) == (503, 503, 200)
    assert later.at - quick.at >= 1.9  # the row's first backoff (2 s) came between
    ended = [r for r in env.settled(rid) if r["kind"] == "request.denied"]
    assert [(r["status"], r["attempts"]) for r in ended] == [("failed", 2)]
    assert "not paused" in ended[0]["last_error"]
    assert len(env.prefect.calls) == 3  # given up: an ABORT is final
    assert API_KEY not in env.server.stderr()


def test_one_busy_answer_is_tried_again_at_once_not_after_the_backoff(env: Env) -> None:
    # Prefect's SQLite was locked for a moment: 503 once, then the resume is accepted. The
    # gate waits for the server's resume for 2 s (RESUME_GRACE), as long as the row's first
    # backoff: waiting out the backoff would make the flow run wait out the whole grace.
    env.prefect.script = [BUSY]
    run_id = str(uuid.uuid4())
    rid = env.open(PII_EXPORT, prefect_requester(run_id))["id"]
    env.decide(rid, "bob", "deny", "no")
    busy, accepted = env.prefect.wait_for(2)
    assert (busy.answered, accepted.answered) == (503, 201)
    assert accepted.flow_run_id == run_id
    assert accepted.at - busy.at < 1.0  # well under the 2 s backoff
    (row,) = env.settled(rid)
    assert (row["status"], row["attempts"]) == ("sent", 1)  # one attempt: no backoff waited


def test_a_resume_before_prefect_saved_the_pause_is_tried_again_soon(env: Env) -> None:
    # A decision within moments of the pause finds the run Paused before Prefect has saved the
    # pause's run input schema: Prefect answers REJECT "Run input schema not found." (seen with
    # real Prefect 3.9). Final, it would leave the gate to resume the run after its 2 s grace.
    env.prefect.script = [
        (200, {"status": "REJECT", "details": {"reason": "Run input schema not found."}})
    ]
    run_id = str(uuid.uuid4())
    rid = env.open(PII_EXPORT, prefect_requester(run_id))["id"]
    env.decide(rid, "alice", "approve", "")
    env.decide(rid, "bob", "approve", "")
    rejected, accepted = env.prefect.wait_for(2)
    assert (rejected.answered, accepted.answered) == (200, 201)
    assert accepted.flow_run_id == run_id
    assert accepted.at - rejected.at < 1.0  # well inside the gate's 2 s grace
    (row,) = env.settled(rid)
    assert (row["status"], row["attempts"]) == ("sent", 2)


def test_a_connection_dropped_without_an_answer_is_tried_again_at_once(env: Env) -> None:
    env.prefect.script = [(0, {})]
    run_id = str(uuid.uuid4())
    rid = env.open(PII_EXPORT, prefect_requester(run_id))["id"]
    env.decide(rid, "bob", "deny", "no")
    dropped, answered = env.prefect.wait_for(2)
    assert (dropped.answered, answered.answered) == (0, 201)
    (row,) = env.settled(rid)
    assert (row["status"], row["attempts"]) == ("sent", 1)  # one attempt: no backoff waited


def test_prefect_settings_come_from_the_environment_and_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLUICEGATE_PREFECT__API_URL", "http://prefect:4200/api/")
    monkeypatch.setenv("SLUICEGATE_PREFECT__API_KEY", API_KEY)
    s = load_settings()
    assert s.prefect.api_url == "http://prefect:4200/api"
    assert API_KEY not in repr(s) and API_KEY not in str(s.model_dump())
    with pytest.raises(ConfigError, match="not both"):
        load_settings(prefect={"auth_string": "a:b"})
    monkeypatch.delenv("SLUICEGATE_PREFECT__API_KEY")
    with pytest.raises(ConfigError, match=r"prefect.api_url: .* must start with http"):
        load_settings(prefect={"api_url": "prefect:4200"})
    with pytest.raises(ConfigError, match="user:password"):
        load_settings(prefect={"auth_string": "just-a-token"})
