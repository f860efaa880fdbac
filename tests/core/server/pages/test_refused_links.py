"""Forged review links cannot write the audit log's actors (issue 17, item 8).

Found this way: ``GET /r/<id>?t=<forged link>``, with no token, wrote one ``decision.rejected``
row per request naming whoever the forged link claimed (one client wrote 488 rows a second;
link scanners open every link too). A refused link proves no identity: it is recorded as
``link.rejected`` with no actor, the claimed name kept only as unverified data, and counted
into at most one row per request per minute on each replica.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from sluicegate import audit
from sluicegate.links import sign_link
from sluicegate.model import ApprovalRequest
from sluicegate.server.pages.refused_links import RefusedLinks
from sluicegate.store import Store
from tests.core.support.serverproc import PII_EXPORT, POLICY, ServerProcess, running

KEY = "forged-links-test-key-" + "k" * 40
REQUESTER = {"orchestrator": "airflow", "job": "crm.export", "run_id": "r1", "owner": "carol"}
CLAIMED = ("alice", "bob", "ceo@example.com", "security-team")


def forged(request_id: str, reviewer: str) -> str:
    """A link shaped like ours, naming ``reviewer``, with a signature made up (a key of its
    own)."""
    return sign_link(secrets.token_bytes(32), request_id, reviewer)


def audit_rows(db_url: str, request_id: str | None) -> list[dict[str, Any]]:
    with Store(db_url) as store:
        buf = io.StringIO()
        audit.export(store.engine, buf, "jsonl")
    rows = [json.loads(line) for line in buf.getvalue().splitlines()]
    return [r for r in rows if r["request_id"] == request_id]


def test_a_burst_of_forged_links_writes_a_bounded_number_of_rows_naming_no_one(
    sqlite_url: str, tmp_path: Path
) -> None:
    server = ServerProcess(sqlite_url, POLICY, tmp_path, env={"SLUICEGATE_SECRET_KEY": KEY}).start()
    with running(server), Store(sqlite_url) as store:
        pipeline = server.client(store.create_token("airflow-prod", "request"))
        r = pipeline.post(
            "/api/v1/requests",
            json={"idempotency_key": "k-forged", "action": PII_EXPORT, "requester": REQUESTER},
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        before = audit_rows(sqlite_url, rid)

        with httpx.Client(base_url=server.url, timeout=30) as anyone:  # no token, no cookie
            answers = [
                anyone.get(f"/r/{rid}", params={"t": forged(rid, CLAIMED[i % len(CLAIMED)])})
                for i in range(500)
            ]
        assert {a.status_code for a in answers} == {403}
        assert "signature is not valid" in answers[-1].text

        new = audit_rows(sqlite_url, rid)[len(before) :]
        assert 1 <= len(new) <= 3, [(r["kind"], r["actor"]) for r in new]
        assert {r["kind"] for r in new} == {"link.rejected"}
        assert {r["actor"] for r in new} == {None}
        assert set(new[0]["data"]["unverified_claims"]) <= set(CLAIMED)
        assert pipeline.get(f"/api/v1/requests/{rid}").json()["decisions"] == []

        # A genuine link still works: its page decides nothing, its form does.
        genuine = sign_link(KEY.encode(), rid, "alice")
        with httpx.Client(base_url=server.url, timeout=30) as alice:
            page = alice.get(f"/r/{rid}", params={"t": genuine})
            assert page.status_code == 200 and 'name="verdict"' in page.text
            assert pipeline.get(f"/api/v1/requests/{rid}").json()["decisions"] == []
            fields = dict(
                re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)
            )
            done = alice.post(f"/r/{rid}/decide", data={**fields, "verdict": "approve"})
            assert done.status_code == 200, done.text
        req = pipeline.get(f"/api/v1/requests/{rid}").json()
        assert [(d["reviewer"], d["channel"]) for d in req["decisions"]] == [("alice", "link")]

        server.stop()  # a clean stop writes what the minute still counted
        rows = [r for r in audit_rows(sqlite_url, rid) if r["kind"] == "link.rejected"]
        assert len(rows) <= 3
        assert sum(r["data"]["attempts"] for r in rows) == 500
        assert {r["actor"] for r in rows} == {None}
        rejected = [r for r in audit_rows(sqlite_url, rid) if r["kind"] == "decision.rejected"]
        assert rejected == []


def test_refused_links_are_counted_into_one_row_per_window(
    store: Store, open_request: Callable[..., ApprovalRequest]
) -> None:
    first = open_request()
    links = RefusedLinks(store, window=0.5, max_tracked=2)
    try:
        for i in range(50):
            links.note(first, claimed=f"x{i % 7}" + "y" * 100, reason="forged", verdict=None)
        rows = link_rows(store, first)
        assert [r["attempts"] for r in rows] == [1]  # the first at once, the rest counted
        assert rows[0]["unverified_claims"] == ["x0" + "y" * 62]  # cut to 64 characters
        deadline = time.monotonic() + 15  # the window closes (0.5 s): its count is written
        while len(rows := link_rows(store, first)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r["attempts"] for r in rows] == [1, 49]
        assert len(rows[1]["unverified_claims"]) == 5  # at most five names
        time.sleep(0.6)  # a quiet window: the next one starts with a row again
        links.note(first, claimed=None, reason="malformed", verdict="approve")
        rows = link_rows(store, first)
        assert [(r["attempts"], r["verdicts"]) for r in rows[2:]] == [(1, {"approve": 1})]
        # Past max_tracked requests, the rest share one server-wide row.
        others = [open_request() for _ in range(3)]
        for req in others:
            links.note(req, claimed="alice", reason="forged", verdict=None)
        assert len(link_rows(store, others[0])) == 1
        assert link_rows(store, others[1]) == link_rows(store, others[2]) == []
        assert [r["attempts"] for r in link_rows(store, None)] == [1]
    finally:
        links.close()
    assert sum(r["attempts"] for r in link_rows(store, None)) == 2


def link_rows(store: Store, request: ApprovalRequest | None) -> list[dict[str, Any]]:
    rid = None if request is None else str(request.id)
    buf = io.StringIO()
    audit.export(store.engine, buf, "jsonl")
    rows = [json.loads(line) for line in buf.getvalue().splitlines()]
    found = [r for r in rows if r["kind"] == "link.rejected" and r["request_id"] == rid]
    assert all(r["actor"] is None for r in found)
    return [r["data"] for r in found]
