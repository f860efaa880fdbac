"""HTTP API v1 in process (ASGI test client, lifespan running), on SQLite and PostgreSQL.

What a pipeline and a reviewer observe: status codes, JSON bodies, and the audit rows that
each call leaves behind.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from sluicegate.model import Status, Verdict
from sluicegate.policy import load_policy
from sluicegate.server import create_app
from sluicegate.settings import load_settings
from sluicegate.store import STATUS_CHANNEL, Store
from sluicegate.workflow import Workflow
from tests.core.support.api import PIPELINE, REQUESTER, Harness, assert_error
from tests.core.support.serverproc import GRANT, PII_EXPORT, POLICY, ROUTINE_READ, SECRET_EXPORT

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"

PENDING_FIELDS = ("id", "status", "rule", "required_approvals", "approvals", "expires_at")

#: No SLUICEGATE_* or OPENLINEAGE* variable and no ./sluicegate.yaml or ./openlineage.yml of
#: the developer's leaks in.
pytestmark = pytest.mark.usefixtures("isolated")


# ----------------------------------------------------------------------------- opening gates


def test_opening_a_gate_answers_pending_and_a_retry_reattaches(api: Harness) -> None:
    r = api.open("airflow:crm_export:manual__1:export")
    assert r.status_code == 201, r.text
    first = r.json()
    for field in PENDING_FIELDS:
        assert first[field] is not None, field
    assert first["status"] == "pending"
    assert first["rule"] == "pii-export"
    assert first["required_approvals"] == 2 and first["approvals"] == 0
    assert first["review_url"].endswith(f"/r/{first['id']}")
    assert first["requester"]["principal"] == PIPELINE  # from the token, not the body
    assert first["classifications"]["postgres://prod:5432::crm.public.customers"] == [
        "pii",
        "prod",
    ]

    again = api.open("airflow:crm_export:manual__1:export")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"]
    assert again.json()["status"] == "pending"
    assert len(api.audit("request.created")) == 1
    assert len(api.audit("request.created", first["id"])) == 1


def test_requester_principal_in_the_body_is_refused(api1: Harness) -> None:
    """The principal comes from the token; a pipeline cannot claim another one."""
    r = api1.open(requester={**REQUESTER, "principal": "alice"})
    assert_error(r, 422, "invalid_request")


def test_an_allowed_action_passes_at_once_and_costs_one_audit_row(api: Harness) -> None:
    r = api.open("airflow:reports:run1:read", action=ROUTINE_READ)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "allowed"
    assert body["rule"] == "routine-reads"
    rows = api.audit()
    kinds = [row.kind for row in rows if row.kind != "token.created"]
    assert kinds == ["policy.allowed"]
    assert api.st.store.count() == 0
    listed = api.c.get("/api/v1/requests", headers=api.auth()).json()
    assert listed["items"] == []


def test_a_policy_denied_action_is_denied_with_the_reason(api: Harness) -> None:
    r = api.open("airflow:keys:run1:export", action=SECRET_EXPORT)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "denied"
    assert body["rule"] == "no-secrets-leave"
    assert body["reason"] == "Secrets never leave the warehouse."
    assert len(api.audit("policy.denied")) == 1
    assert api.st.store.count() == 0


# ----------------------------------------------------------------------------- identity


def test_no_token_is_401_with_a_challenge(api1: Harness) -> None:
    for method, path in [
        ("POST", "/api/v1/requests"),
        ("GET", "/api/v1/requests"),
        ("GET", f"/api/v1/requests/{uuid.uuid4()}"),
        ("GET", "/api/v1/audit"),
    ]:
        r = api1.c.request(method, path, json={} if method == "POST" else None)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer"), path


@pytest.mark.parametrize(
    "header",
    ["Bearer sgreq_not-a-real-token", "Basic YWxpY2U6c2VjcmV0", "Bearer ", "sgreq_no_scheme"],
)
def test_an_unknown_or_malformed_token_is_401(api1: Harness, header: str) -> None:
    r = api1.c.get("/api/v1/requests", headers={"Authorization": header})
    assert_error(r, 401, "unauthorized")
    assert "www-authenticate" in r.headers


def test_a_request_token_can_never_decide_and_the_attempt_is_recorded(api: Harness) -> None:
    req = api.pending()
    r = api.decide(req["id"], PIPELINE, scope="request")
    assert_error(r, 403, "forbidden")
    rejected = api.audit("decision.rejected", req["id"])
    assert len(rejected) == 1
    assert rejected[0].actor == PIPELINE
    assert api.get(req["id"])["approvals"] == 0


def test_a_review_token_cannot_open_a_gate(api1: Harness) -> None:
    body = {"idempotency_key": "k-review", "action": PII_EXPORT, "requester": REQUESTER}
    r = api1.c.post("/api/v1/requests", json=body, headers=api1.review("alice"))
    assert_error(r, 403, "forbidden")
    assert api1.st.store.find("k-review") is None


def test_a_principal_who_is_not_a_reviewer_in_the_policy_cannot_decide(api: Harness) -> None:
    req = api.pending()
    r = api.decide(req["id"], "mallory")
    body = assert_error(r, 403, "forbidden")
    assert "not a reviewer" in body["detail"]
    rejected = api.audit("decision.rejected", req["id"])
    assert [row.actor for row in rejected] == ["mallory"]


@pytest.mark.parametrize(
    ("requester", "principal", "reviewer", "why"),
    [
        pytest.param(REQUESTER, PIPELINE, "carol", "job owner", id="owner"),
        pytest.param(
            {**REQUESTER, "triggered_by": "bob"}, PIPELINE, "bob", "triggered", id="triggered-by"
        ),
        pytest.param(REQUESTER, "alice", "alice", "principal", id="token-principal"),
    ],
)
def test_self_approval_is_impossible(
    api: Harness, requester: dict[str, Any], principal: str, reviewer: str, why: str
) -> None:
    req = api.pending(requester=requester, principal=principal)
    r = api.decide(req["id"], reviewer)
    body = assert_error(r, 403, "forbidden")
    assert why in body["detail"]
    rejected = api.audit("decision.rejected", req["id"])
    assert len(rejected) == 1 and rejected[0].actor == reviewer
    after = api.get(req["id"])
    assert after["status"] == "pending" and after["approvals"] == 0 and after["decisions"] == []


# ----------------------------------------------------------------------------- quorum


def test_approval_needs_a_quorum_of_distinct_reviewers(api: Harness) -> None:
    req = api.pending()
    one = api.decide(req["id"], "alice", comment="ok", fingerprint=req["fingerprint"])
    assert one.status_code == 200, one.text
    assert one.json()["status"] == "pending" and one.json()["approvals"] == 1

    twice = api.decide(req["id"], "alice")
    body = assert_error(twice, 409, "conflict")
    assert "already decided" in body["detail"]

    two = api.decide(req["id"], "bob")
    assert two.status_code == 200, two.text
    done = two.json()
    assert done["status"] == "approved" and done["approvals"] == 2
    assert [(d["reviewer"], d["verdict"], d["channel"]) for d in done["decisions"]] == [
        ("alice", "approve", "api"),
        ("bob", "approve", "api"),
    ]
    assert len(api.audit("decision.recorded", req["id"])) == 2
    assert len(api.audit("request.approved", req["id"])) == 1


def test_one_deny_with_a_comment_ends_the_request(api: Harness) -> None:
    req = api.pending()
    bare = api.decide(req["id"], "alice", "deny")
    body = assert_error(bare, 422, "invalid_request")
    assert "comment" in body["detail"]
    assert api.get(req["id"])["status"] == "pending"
    assert api.audit("decision.recorded", req["id"]) == []

    blank = api.decide(req["id"], "alice", "deny", "   ")
    assert_error(blank, 422, "invalid_request")

    r = api.decide(req["id"], "alice", "deny", "no DPA with this partner")
    assert r.status_code == 200, r.text
    denied = r.json()
    assert denied["status"] == "denied" and denied["denials"] == 1
    assert denied["decisions"][0]["comment"] == "no DPA with this partner"
    assert len(api.audit("request.denied", req["id"])) == 1


def test_a_decision_on_a_terminal_request_is_409(api: Harness) -> None:
    req = api.pending()
    assert api.decide(req["id"], "alice", "deny", "no").json()["status"] == "denied"
    r = api.decide(req["id"], "bob")
    assert_error(r, 409, "conflict")
    assert api.get(req["id"])["status"] == "denied"
    assert len(api.audit("decision.recorded", req["id"])) == 1


def test_a_decision_on_another_fingerprint_is_409(api: Harness) -> None:
    req = api.pending()
    r = api.decide(req["id"], "alice", fingerprint="sha256:" + "0" * 64)
    body = assert_error(r, 409, "conflict")
    assert "fingerprint" in body["detail"]
    assert api.get(req["id"])["approvals"] == 0


def test_a_reviewer_outside_the_rule_groups_is_403(api: Harness) -> None:
    req = api.pending()
    r = api.decide(req["id"], "erin")
    body = assert_error(r, 403, "forbidden")
    assert "groups" in body["detail"]
    assert [row.actor for row in api.audit("decision.rejected", req["id"])] == ["erin"]


def test_a_decision_on_an_unknown_request_is_404(api1: Harness) -> None:
    assert_error(api1.decide(str(uuid.uuid4()), "alice"), 404, "not_found")
    assert_error(api1.decide("nope", "alice"), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"verdict": "maybe"},
        {},
        {"verdict": "approve", "reviewer": "alice"},
        {"verdict": "approve", "comment": "x" * 4001},
        {"verdict": ["approve"]},
    ],
)
def test_a_malformed_decision_is_422(api1: Harness, body: dict[str, Any]) -> None:
    req = api1.pending()
    r = api1.c.post(
        f"/api/v1/requests/{req['id']}/decisions", json=body, headers=api1.review("alice")
    )
    assert_error(r, 422, "invalid_request")


# ----------------------------------------------------------------------------- cancel


def test_the_opening_principal_cancels_and_another_cannot(api: Harness) -> None:
    req = api.pending()
    other = api.c.post(
        f"/api/v1/requests/{req['id']}/cancel",
        json={"reason": "mine now"},
        headers=api.auth("dagster-prod"),
    )
    assert_error(other, 403, "forbidden")
    assert api.get(req["id"])["status"] == "pending"
    assert len(api.audit("cancel.rejected", req["id"])) == 1

    reviewer = api.c.post(f"/api/v1/requests/{req['id']}/cancel", headers=api.review("alice"))
    assert_error(reviewer, 403, "forbidden")

    r = api.c.post(
        f"/api/v1/requests/{req['id']}/cancel",
        json={"reason": "run marked failed"},
        headers=api.auth(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert api.get(req["id"])["status"] == "cancelled"
    assert len(api.audit("request.cancelled", req["id"])) == 1

    assert_error(api.c.post(f"/api/v1/requests/{req['id']}/cancel", headers=api.auth()), 409)
    assert_error(api.decide(req["id"], "alice"), 409, "conflict")


# ----------------------------------------------------------------------------- long poll


def test_a_wait_on_a_pending_request_returns_pending_after_its_timeout(api1: Harness) -> None:
    req = api1.pending()
    started = time.monotonic()
    r = api1.c.get(
        f"/api/v1/requests/{req['id']}/wait", params={"timeout": 0.2}, headers=api1.auth()
    )
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    assert 0.15 <= elapsed < 3.0, elapsed


def test_a_wait_on_a_terminal_request_returns_at_once(api1: Harness) -> None:
    req = api1.pending()
    api1.decide(req["id"], "alice", "deny", "no")
    started = time.monotonic()
    r = api1.c.get(
        f"/api/v1/requests/{req['id']}/wait", params={"timeout": 30}, headers=api1.auth()
    )
    assert r.json()["status"] == "denied"
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("timeout", ["-1", "301", "soon", "nan"])
def test_a_wait_with_a_bad_timeout_is_422(api1: Harness, timeout: str) -> None:
    req = api1.pending()
    r = api1.c.get(
        f"/api/v1/requests/{req['id']}/wait", params={"timeout": timeout}, headers=api1.auth()
    )
    assert_error(r, 422, "invalid_request")


def test_a_wait_on_an_unknown_request_is_404(api1: Harness) -> None:
    r = api1.c.get(f"/api/v1/requests/{uuid.uuid4()}/wait", headers=api1.auth())
    assert_error(r, 404, "not_found")


def test_a_decision_wakes_a_waiting_long_poll_at_once(api: Harness) -> None:
    req = api.pending(action=GRANT, requester={"job": "grants.apply", "owner": "dave"})
    got: dict[str, Any] = {}

    def wait() -> None:
        started = time.monotonic()
        r = api.c.get(
            f"/api/v1/requests/{req['id']}/wait", params={"timeout": 10}, headers=api.auth()
        )
        got["at"] = time.monotonic()
        got["elapsed"] = got["at"] - started
        got["response"] = r

    waiter = threading.Thread(target=wait)
    waiter.start()
    try:
        deadline = time.monotonic() + 5
        while api.st.hub.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert api.st.hub.waiting == 1, "the long poll never started waiting"
        decided_at = time.monotonic()
        r = api.decide(req["id"], "erin", comment="ticket SEC-42")
        assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    finally:
        waiter.join(timeout=15)
    assert not waiter.is_alive()
    assert got["response"].status_code == 200
    assert got["response"].json()["status"] == "approved"
    assert got["at"] - decided_at < 2.0, got  # woken, not by its 5 s re-check or 10 s timeout
    assert got["elapsed"] < 5.0, got
    assert api.st.hub.waiting == 0


def test_a_decision_on_another_replica_wakes_a_long_poll_through_postgres(
    pg_url: str, make_api: Any
) -> None:
    """The other replica is a second store on the same schema: only NOTIFY can tell us."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        started = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    # The app's connections are named after the test's schema: other tests' servers (pytest-xdist
    # workers) LISTEN on this database too, and theirs must not count as this app's.
    name = pg_url.rsplit("%3D", 1)[1]
    api: Harness = make_api(f"{pg_url}&application_name={name}")
    req = api.pending(action=GRANT, requester={"job": "grants.apply", "owner": "dave"})
    deadline = time.monotonic() + 10
    while not _listening_since(started, name):
        assert time.monotonic() < deadline, "the app never started LISTENing"
        time.sleep(0.05)

    got: dict[str, Any] = {}

    def wait() -> None:
        r = api.c.get(
            f"/api/v1/requests/{req['id']}/wait", params={"timeout": 10}, headers=api.auth()
        )
        got["at"] = time.monotonic()
        got["response"] = r

    waiter = threading.Thread(target=wait)
    waiter.start()
    other = Store(pg_url)
    try:
        deadline = time.monotonic() + 5
        while api.st.hub.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert api.st.hub.waiting == 1
        decided_at = time.monotonic()
        outcome = Workflow(other, load_policy(POLICY)).decide(
            req["id"], reviewer="erin", verdict=Verdict.APPROVE, comment="ok"
        )
        assert outcome.ended is Status.APPROVED
    finally:
        waiter.join(timeout=15)
        other.close()
    assert got["response"].json()["status"] == "approved"
    assert got["at"] - decided_at < 2.0, "woken by the 5 s re-check, not by NOTIFY"


def _listening_since(started: Any, name: str) -> bool:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE query = %s AND backend_start >= %s AND application_name = %s",
            (f"LISTEN {STATUS_CHANNEL}", started, name),
        ).fetchone()
    return bool(row and row[0])


# ----------------------------------------------------------------------------- expiry

QUICK_POLICY = """\
version: 1
default: allow
reviewers:
  - id: alice
    groups: [stewards]
  - id: bob
    groups: [stewards]
rules:
  - name: quick-export
    match: {actions: [export]}
    outcome: require
    require: {approvals: 1, groups: [stewards], timeout: 1s}
"""


def test_an_overdue_request_expires_with_nobody_watching(
    db_url: str, make_api: Any, tmp_path: Path
) -> None:
    policy = tmp_path / "quick.yaml"
    policy.write_text(QUICK_POLICY)
    api: Harness = make_api(db_url, policy, expiry_interval=0.2)
    req = api.pending(requester={"job": "quick", "owner": "dave"})
    assert req["rule"] == "quick-export"
    # Nobody asks the API about it: the audit log, read from the database, says when the
    # sweep (every 0.2 s, the deadline 1 s) has ended it. Generous for a slow machine.
    deadline = time.monotonic() + 7
    while not api.audit("request.expired", req["id"]):
        assert time.monotonic() < deadline, "the overdue request was never expired"
        time.sleep(0.05)
    assert api.get(req["id"])["status"] == "expired"
    expired = api.audit("request.expired", req["id"])
    assert len(expired) == 1
    assert json.loads(expired[0].data)["on_timeout"] == "deny"
    assert_error(api.decide(req["id"], "alice"), 409, "conflict")
    r = api.c.get(f"/api/v1/requests/{req['id']}/wait", params={"timeout": 5}, headers=api.auth())
    assert r.json()["status"] == "expired"


# ----------------------------------------------------------------------------- inbox


def test_the_inbox_filters_and_pages(api: Harness) -> None:
    a1 = api.pending(requester={**REQUESTER, "job": "crm.a"})
    a2 = api.pending(requester={**REQUESTER, "job": "crm.a"})
    b1 = api.pending(requester={**REQUESTER, "job": "crm.b"})
    g1 = api.pending(action=GRANT, requester={"job": "grants.apply"})
    api.decide(a1["id"], "alice", "deny", "no")
    newest_first = [g1["id"], b1["id"], a2["id"], a1["id"]]

    def ids(**params: Any) -> tuple[list[str], str | None]:
        r = api.c.get("/api/v1/requests", params=params, headers=api.review("alice"))
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]], r.json()["next"]

    assert ids()[0] == newest_first
    assert ids(status="pending")[0] == [g1["id"], b1["id"], a2["id"]]
    assert ids(status="denied")[0] == [a1["id"]]
    assert ids(status="approved")[0] == []
    assert ids(job="crm.a")[0] == [a2["id"], a1["id"]]
    assert ids(job="crm.a", status="pending")[0] == [a2["id"]]
    assert ids(dataset="crm.public.customers")[0] == [b1["id"], a2["id"], a1["id"]]
    assert ids(dataset="postgres://prod:5432::crm.public.customers")[0] == [
        b1["id"],
        a2["id"],
        a1["id"],
    ]
    assert ids(dataset="s3://elsewhere::crm.public.customers")[0] == []
    assert ids(dataset="finance.public.ledger")[0] == [g1["id"]]

    page1, nxt = ids(limit=3)
    assert page1 == newest_first[:3] and nxt == page1[-1]
    page2, nxt2 = ids(limit=3, before=nxt)
    assert page2 == newest_first[3:] and nxt2 is None

    page1, nxt = ids(limit=2)
    page2, nxt = ids(limit=2, before=nxt)
    page3, nxt = ids(limit=2, before=nxt)
    assert page1 + page2 == newest_first and page3 == [] and nxt is None


def test_a_request_naming_a_dataset_twice_is_listed_once_and_pages_stay_whole(
    api: Harness,
) -> None:
    """Input and output the same table: one entry, and a page of 2 holds 2 requests."""
    table = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}
    rewrite = {**PII_EXPORT, "kind": "copy", "inputs": [table], "outputs": [table]}
    opened = [api.pending(action=rewrite)["id"] for _ in range(3)]
    seen: list[str] = []
    before = None
    while True:
        params = {"dataset": "crm.public.customers", "status": "pending", "limit": 2}
        r = api.c.get(
            "/api/v1/requests",
            params={**params, **({"before": before} if before else {})},
            headers=api.review("alice"),
        )
        assert r.status_code == 200, r.text
        seen += [i["id"] for i in r.json()["items"]]
        before = r.json()["next"]
        if before is None:
            break
    assert seen == opened[::-1]


def test_a_long_poll_and_a_gate_answer_while_a_listing_runs(
    api: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing is read in a worker thread: the event loop serves everyone meanwhile."""
    req = api.pending()
    listing_started, listing_may_end = threading.Event(), threading.Event()
    real = api.st.store.list_requests

    def slow_listing(**filters: Any) -> Any:
        listing_started.set()
        listing_may_end.wait(timeout=10)  # a listing on the event loop would hold it this long
        return real(**filters)

    monkeypatch.setattr(api.st.store, "list_requests", slow_listing)
    listed: dict[str, Any] = {}
    lister = threading.Thread(
        target=lambda: listed.update(
            r=api.c.get("/api/v1/requests", params={"status": "pending"}, headers=api.auth())
        )
    )
    lister.start()
    try:
        assert listing_started.wait(timeout=10)
        wait = api.c.get(
            f"/api/v1/requests/{req['id']}/wait", params={"timeout": 0}, headers=api.auth()
        )
        gate = api.open(action=ROUTINE_READ)
        answered_meanwhile = not listing_may_end.is_set() and "r" not in listed
    finally:
        listing_may_end.set()
        lister.join(timeout=15)
    assert wait.status_code == 200 and wait.json()["status"] == "pending"
    assert gate.status_code == 200 and gate.json()["status"] == "allowed"
    assert answered_meanwhile, "the long poll and the gate waited for the listing"
    assert [i["id"] for i in listed["r"].json()["items"]] == [req["id"]]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "sleeping"},
        {"limit": 0},
        {"limit": 501},
        {"limit": "many"},
        {"before": "not-a-uuid"},
        {"job": "j" * 513},
    ],
)
def test_bad_inbox_parameters_are_422(api1: Harness, params: dict[str, Any]) -> None:
    r = api1.c.get("/api/v1/requests", params=params, headers=api1.auth())
    assert_error(r, 422, "invalid_request")


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    # a fixed unknown id, not uuid4(): pytest-xdist's workers must collect the same test ids
    "request_id",
    ["5f0c3a8e-2b1d-4e6f-9a7c-1d2e3f4a5b6c", "not-a-uuid", "1", "%00", "..%2F..%2Fetc", "x" * 300],
)
def test_an_unknown_or_malformed_request_id_is_a_json_404(api1: Harness, request_id: str) -> None:
    r = api1.c.get(f"/api/v1/requests/{request_id}", headers=api1.auth())
    assert r.status_code in (404, 422), r.text
    assert_error(r, r.status_code)


NUL_INPUTS = {
    "gate-idempotency-key": ("POST", "/api/v1/requests", {"idempotency_key": "k\x00"}, None),
    "gate-requester-job": ("POST", "/api/v1/requests", {"requester": {"job": "a\x00b"}}, None),
    "decision-comment": (
        "POST",
        "{id}/decisions",
        {"verdict": "approve", "comment": "ok\x00"},
        None,
    ),
    "decision-fingerprint": (
        "POST",
        "{id}/decisions",
        {"verdict": "approve", "fingerprint": "\x00"},
        None,
    ),
    "cancel-reason": ("POST", "{id}/cancel", {"reason": "gone\x00"}, None),
    "inbox-job": ("GET", "/api/v1/requests", None, {"job": "a\x00b"}),
    "inbox-dataset": ("GET", "/api/v1/requests", None, {"dataset": "crm\x00"}),
    "audit-job": ("GET", "/api/v1/audit", None, {"job": "a\x00b"}),
}


@pytest.mark.parametrize("case", list(NUL_INPUTS))
def test_a_nul_character_is_refused_as_bad_input_never_a_5xx(api: Harness, case: str) -> None:
    """PostgreSQL text cannot hold NUL: the model refuses it up front, on both databases, as a
    4xx. What the HTTP edge lets through must get the same answer, not a 500 or a 503 that a
    gate would retry until its deadline (or, for the audit export, an empty 200)."""
    method, path, body, params = NUL_INPUTS[case]
    req = api.pending()
    if path.startswith("{id}"):
        path = path.replace("{id}", f"/api/v1/requests/{req['id']}")
    headers = (
        api.review("alice")
        if "decisions" in path
        else api.auth("internal-audit", "audit")
        if "audit" in path
        else api.auth()
    )
    if body is not None and path == "/api/v1/requests":
        body = {"idempotency_key": "k-nul", "action": PII_EXPORT, "requester": REQUESTER, **body}
    r = api.c.request(method, path, json=body, params=params, headers=headers)
    assert_error(r, 422, "invalid_request")
    assert api.get(req["id"])["status"] == "pending"


def test_malformed_json_is_400(api1: Harness) -> None:
    r = api1.c.post(
        "/api/v1/requests",
        content=b'{"idempotency_key": "k", "action": ',
        headers={**api1.auth(), "content-type": "application/json"},
    )
    assert_error(r, 400, "malformed_json")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"idempotency_key": "k", "action": PII_EXPORT, "colour": "red"}, "colour"),
        ({"idempotency_key": "k", "action": {**PII_EXPORT, "priority": 1}}, "priority"),
        ({"action": PII_EXPORT}, "idempotency_key"),
        ({"idempotency_key": "", "action": PII_EXPORT}, "idempotency_key"),
        ({"idempotency_key": "k", "action": {**PII_EXPORT, "kind": "DROP TABLE"}}, "kind"),
        ({"idempotency_key": "k", "action": {**PII_EXPORT, "summary": "a\x00b"}}, "summary"),
        ({"idempotency_key": "k", "action": PII_EXPORT, "requester": {"try_number": -1}}, "try"),
        ([1, 2, 3], "body"),
        ("just a string", "body"),
    ],
)
def test_an_invalid_gate_body_is_422_naming_the_field(api1: Harness, body: Any, where: str) -> None:
    r = api1.c.post("/api/v1/requests", json=body, headers=api1.auth())
    detail = assert_error(r, 422, "invalid_request")["detail"]
    assert where in detail, detail
    assert api1.st.store.count() == 0


def test_a_body_over_one_mebibyte_is_413(api1: Harness) -> None:
    big = {
        "idempotency_key": "k",
        "action": {**PII_EXPORT, "summary": "x" * (1024 * 1024 + 10)},
    }
    r = api1.c.post("/api/v1/requests", json=big, headers=api1.auth())
    assert_error(r, 413, "too_large")

    def chunks() -> Iterator[bytes]:  # no content-length: the limit holds while reading
        for _ in range(3):
            yield b" " * (512 * 1024)

    r = api1.c.post(
        "/api/v1/requests",
        content=chunks(),
        headers={**api1.auth(), "content-type": "application/json"},
    )
    assert_error(r, 413, "too_large")
    assert api1.st.store.count() == 0


def test_an_unknown_path_and_a_wrong_method_are_json_errors(api1: Harness) -> None:
    assert_error(api1.c.get("/api/v1/nothing-here", headers=api1.auth()), 404)
    assert_error(api1.c.delete("/api/v1/requests", headers=api1.auth()), 405)


# ----------------------------------------------------------------------------- audit


def test_the_audit_log_exports_as_jsonl_and_csv_with_filters(api: Harness) -> None:
    a = api.pending(requester={**REQUESTER, "job": "crm.a"})
    api.pending(action=GRANT, requester={"job": "grants.apply"})
    api.open(action=ROUTINE_READ, requester={"job": "reports.daily"})
    api.decide(a["id"], "alice", comment="fine")
    api.decide(a["id"], "bob")
    headers = api.auth("internal-audit", "audit")

    r = api.c.get("/api/v1/audit", params={"format": "jsonl"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))
    assert all(len(row["hash"]) == 64 for row in rows)
    kinds = [row["kind"] for row in rows]
    for kind in ("request.created", "policy.allowed", "decision.recorded", "request.approved"):
        assert kind in kinds

    by_alice = api.c.get("/api/v1/audit", params={"reviewer": "alice"}, headers=headers)
    alice_rows = [json.loads(line) for line in by_alice.text.splitlines()]
    assert alice_rows and {row["actor"] for row in alice_rows} == {"alice"}
    assert "decision.recorded" in [row["kind"] for row in alice_rows]

    by_job = api.c.get("/api/v1/audit", params={"job": "crm.a"}, headers=headers)
    job_rows = [json.loads(line) for line in by_job.text.splitlines()]
    assert {row["job"] for row in job_rows} == {"crm.a"}
    assert [row["kind"] for row in job_rows] == [
        "request.created",
        "decision.recorded",
        "decision.recorded",
        "request.approved",
    ]

    ledger = api.c.get(
        "/api/v1/audit", params={"dataset": "finance.public.ledger"}, headers=headers
    )
    assert [json.loads(line)["kind"] for line in ledger.text.splitlines()] == ["request.created"]

    future = api.c.get("/api/v1/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=headers)
    assert future.status_code == 200 and future.text == ""

    naive = api.c.get("/api/v1/audit", params={"since": "2020-01-01T00:00:00"}, headers=headers)
    assert_error(naive, 422, "invalid_request")
    assert_error(api.c.get("/api/v1/audit", params={"format": "xml"}, headers=headers), 422)

    as_csv = api.c.get("/api/v1/audit", params={"format": "csv", "job": "crm.a"}, headers=headers)
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [row["kind"] for row in table] == [row["kind"] for row in job_rows]
    assert [row["hash"] for row in table] == [row["hash"] for row in job_rows]

    # Only an audit token reads the audit log: not a pipeline's, not a reviewer's.
    for other in (api.auth(), api.review("alice")):
        for path in ("/api/v1/audit", "/api/v1/audit/verify"):
            assert_error(api.c.get(path, headers=other), 403, "forbidden")

    v = api.c.get("/api/v1/audit/verify", headers=headers)
    assert v.status_code == 200, v.text
    verified = v.json()
    assert verified["ok"] is True and verified["bad_seq"] is None
    assert verified["rows"] == len(rows) and verified["head"] == rows[-1]["hash"]


# ----------------------------------------------------------------------------- operations


def test_health_readiness_and_metrics(api: Harness) -> None:
    assert api.c.get("/healthz").json() == {"status": "ok"}
    ready = api.c.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}

    req = api.pending()
    api.pending()
    api.open(action=ROUTINE_READ)
    api.decide(req["id"], "alice")
    api.decide(req["id"], "bob")
    m = api.c.get("/metrics")
    assert m.status_code == 200
    assert m.headers["content-type"].startswith("text/plain")
    lines = m.text.splitlines()
    assert "sluicegate_pending_requests 1.0" in lines
    assert 'sluicegate_gates_opened_total{status="pending"} 2.0' in lines
    assert 'sluicegate_gates_opened_total{status="allowed"} 1.0' in lines
    assert "sluicegate_decision_latency_seconds_count 1.0" in lines
    assert any(
        line.startswith("sluicegate_decisions_total{")
        and 'verdict="approve"' in line
        and line.endswith(" 2.0")
        for line in lines
    ), [line for line in lines if "decisions_total" in line]
    # Three opens and two decisions went through the writer (the expiry sweep may add more).
    values = {n: float(v) for n, _, v in (ln.partition(" ") for ln in lines if ln[:1] != "#")}
    calls, batches = (
        values["sluicegate_write_calls_total"],
        values["sluicegate_write_batches_total"],
    )
    assert calls >= 5 and 1 <= batches <= calls, (calls, batches)


def test_readiness_is_503_when_the_database_is_down(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port where no database (nothing) listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/test?connect_timeout=2"
    store = Store(url, auto_migrate=False)
    settings = load_settings(db_url=url, policy=str(POLICY), secret_key="k" * 40)
    app = create_app(settings, store=store)
    try:
        with TestClient(app) as c:
            assert c.get("/healthz").status_code == 200
            r = c.get("/readyz")
            body = assert_error(r, 503, "unavailable")
            assert body["detail"].startswith("database")
            # What needs the database answers 503 too (the token cannot be checked), never 500.
            listed = c.get("/api/v1/requests", headers={"Authorization": "Bearer sgreq_x"})
            assert_error(listed, 503, "unavailable")
    finally:
        store.close()
