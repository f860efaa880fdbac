"""The review pages, as a reviewer sees them: HTML in, HTML out, no JavaScript.

Every test runs the real app in process (``TestClient`` with its lifespan) on SQLite, with the
example policy: ``pii-export`` needs 2 approvals from data-stewards (alice, bob, carol) and a
comment to deny; the request below is owned by carol and triggered by dave.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sluicegate import audit
from sluicegate.links import sign_link, verify_link
from sluicegate.model import Channel, Status, utcnow
from sluicegate.server import create_app
from sluicegate.server.pages import review as review_pages
from sluicegate.server.pages.auth import SESSION_COOKIE, Viewer, csrf_token, sign_session
from sluicegate.server.pages.review import review_link
from sluicegate.server.wiring import ServerState
from sluicegate.settings import load_settings
from tests.core.support.browser import hidden_fields, sign_in
from tests.core.support.paths import ROOT

POLICY = ROOT / "examples" / "policy.yaml"
ACTION = json.loads((ROOT / "examples" / "actions" / "pii-export.json").read_text())
REQUESTER = {
    "orchestrator": "airflow",
    "job": "export_customers.publish",
    "run_id": "manual__2026-11-25",
    "owner": "carol",
    "triggered_by": "dave",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SLUICEGATE_* variable and no ./sluicegate.yaml can change these tests."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("SLUICEGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def make_app(tmp_path: Path, **settings: Any) -> FastAPI:
    return create_app(
        load_settings(db_url=f"sqlite:///{tmp_path}/s.db", policy=str(POLICY), **settings)
    )


@dataclass
class Server:
    client: TestClient
    st: ServerState
    request_token: str

    def open(self, key: str = "k1", **action: Any) -> str:
        """Open a pii-export gate; returns the request id."""
        r = self.client.post(
            "/api/v1/requests",
            headers={"Authorization": f"Bearer {self.request_token}"},
            json={"idempotency_key": key, "action": {**ACTION, **action}, "requester": REQUESTER},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def link(self, rid: str, reviewer: str) -> str:
        """The path (with ``?t=``) of a fresh review link."""
        return review_link(self.st, rid, reviewer).removeprefix(self.st.settings.server_url)

    def login(self, reviewer: str) -> None:
        self.client.cookies.clear()
        token = self.st.store.create_token(reviewer, "review")
        r = sign_in(self.client, token)
        assert r.status_code == 303, r.text


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    app = make_app(tmp_path)
    st: ServerState = app.state.sluicegate
    with TestClient(app) as client:
        yield Server(client, st, st.store.create_token("airflow-prod", "request"))


def text_of(page: str) -> str:
    """The page's visible text, tags dropped and entities decoded, spaces collapsed."""
    body = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def has_form(page: str) -> bool:
    return 'action="/r/' in page and 'name="verdict"' in page


def audit_rows(st: ServerState, rid: str) -> list[dict[str, Any]]:
    buf = io.StringIO()
    audit.export(st.store.engine, buf, "jsonl")
    rows = [json.loads(line) for line in buf.getvalue().splitlines()]
    return [r for r in rows if r["request_id"] == rid]


def rejections(st: ServerState, rid: str) -> list[dict[str, Any]]:
    return [r for r in audit_rows(st, rid) if r["kind"] == "decision.rejected"]


def refused_links(st: ServerState, rid: str) -> list[dict[str, Any]]:
    return [r for r in audit_rows(st, rid) if r["kind"] == "link.rejected"]


def decide(server: Server, rid: str, page: str, verdict: str, comment: str = "") -> Any:
    """Submit the form that ``page`` shows, the way a browser would."""
    assert has_form(page), text_of(page)
    data = {**hidden_fields(page), "verdict": verdict, "comment": comment}
    return server.client.post(f"/r/{rid}/decide", data=data)


# --------------------------------------------------------------------------- the page


def test_review_page_shows_what_a_reviewer_needs(server: Server) -> None:
    rid = server.open()
    r = server.client.get(server.link(rid, "alice"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = text_of(r.text)
    assert "Export customers to the partner bucket" in page
    assert "Kind export" in page
    # effective classifications: pii and prod, each shown with the classify rule it came from
    assert (
        "input postgres://prod:5432::crm.public.customers"
        " pii classify[0] 'crm.public.customers*'"
        " prod classify[1] 'postgres://prod:5432::*'"
    ) in page
    assert "output s3://partner-share::exports/customers.csv none" in page
    assert "Destination s3://partner-share/exports/customers.csv" in page
    assert "SELECT * FROM crm.public.customers" in page
    for shown in (
        "Orchestrator airflow",
        "Job export_customers.publish",
        "Run id manual__2026-11-25",
        "Owner carol",
        "Triggered by dave",
        "Principal airflow-prod",
        "Rule pii-export",
        "Needs 2 approvals from data-stewards",
        "0 of 2 approvals",
        "No decisions yet",
        "pending",
    ):
        assert shown in page, shown
    assert re.search(r"23 h 5\d min left \(expires \d{4}-\d\d-\d\d \d\d:\d\d UTC\)", page)
    assert server.st.store.get(rid).fingerprint in page
    assert has_form(r.text)
    assert "a comment is required to deny" in page
    assert "alice (from your review link)" in page


def test_untrusted_summary_and_context_appear_as_text(server: Server) -> None:
    evil = "<script>alert(1)</script>"
    rid = server.open(summary=evil, context={"query": evil, '"><img src=x>': 1})
    r = server.client.get(server.link(rid, "alice"))
    assert "<script>" not in r.text
    assert "<img" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert text_of(r.text).count(evil) >= 2  # heading and context, as text


def test_long_context_is_cut_for_display_with_a_note(server: Server) -> None:
    rid = server.open(context={"query": "SELECT " + "x, " * 12_000 + "END_OF_QUERY"})
    r = server.client.get(server.link(rid, "alice"))
    assert r.status_code == 200
    page = text_of(r.text)
    assert "Context cut for display: showing the first 16.0 KiB of 35.2 KiB" in page
    assert "END_OF_QUERY" not in page
    assert len(r.text) < 30_000


def test_html_answers_carry_security_headers(server: Server) -> None:
    rid = server.open()
    answers = [
        server.client.get(server.link(rid, "alice")),
        server.client.get("/login"),
        server.client.get(f"/r/{rid}", follow_redirects=False),
        server.client.get(f"/r/{rid}?t=garbage"),
    ]
    server.login("alice")
    answers.append(server.client.get(f"/r/{uuid.uuid4()}"))
    for r in answers:
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "form-action 'self'" in csp
        assert "script-src" not in csp and "unsafe" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
    # The one stylesheet is allowed by its hash: it must be exactly what the page carries.
    style = re.search(r"<style>(.*?)</style>", answers[0].text, flags=re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in answers[0].headers["content-security-policy"]


def test_unknown_request_is_a_404_page(server: Server) -> None:
    server.login("alice")
    for rid in (str(uuid.uuid4()), "not-a-request"):
        r = server.client.get(f"/r/{rid}")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("text/html")
        assert f"There is no request {rid}" in text_of(r.text)


def test_anonymous_viewers_are_sent_to_sign_in(server: Server) -> None:
    rid = server.open()
    r = server.client.get(f"/r/{rid}", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/login?next=%2Fr%2F{rid}"
    r = server.client.get("/inbox", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Finbox"


# --------------------------------------------------------------------------- links


def test_a_link_decides_once(server: Server) -> None:
    rid = server.open()
    path = server.link(rid, "alice")
    page = server.client.get(path).text
    r = decide(server, rid, page, "approve", "fine for the partner")
    assert r.status_code == 200
    assert f"You approved request {rid}: 1 of 2 approvals." in text_of(r.text)
    req = server.st.store.get(rid)
    assert [(d.reviewer, d.channel, d.comment) for d in req.decisions] == [
        ("alice", Channel.LINK, "fine for the partner")
    ]
    # The same link again: refused, said, audited; nothing more recorded.
    again = decide(server, rid, page, "approve")
    assert again.status_code == 403
    assert "this link was already used" in text_of(again.text)
    assert server.st.store.get(rid).approvals == 1
    assert [(r["actor"], r["data"]["reason"]) for r in rejections(server.st, rid)] == [
        ("alice", "this link was already used")
    ]
    # Opening it still shows the request, without a form.
    seen = server.client.get(path)
    assert not has_form(seen.text)
    assert "You already decided: approve." in text_of(seen.text)
    assert "1 of 2 approvals" in text_of(seen.text)


def test_the_second_approval_ends_the_request(server: Server) -> None:
    rid = server.open()
    for reviewer, result in (("alice", "1 of 2 approvals"), ("bob", "the request is approved")):
        page = server.client.get(server.link(rid, reviewer)).text
        r = decide(server, rid, page, "approve")
        assert f"You approved request {rid}: {result}." in text_of(r.text)
    assert server.st.store.get(rid).status is Status.APPROVED
    metrics = server.st.metrics.render().decode()
    assert 'sluicegate_decisions_total{channel="link",verdict="approve"} 2.0' in metrics
    assert 'sluicegate_requests_ended_total{status="approved"} 1.0' in metrics


@pytest.mark.parametrize("problem", ["tampered", "expired", "another request", "garbage"])
def test_a_bad_link_is_refused_with_its_reason_and_audited_as_unverified(
    server: Server, problem: str
) -> None:
    rid = server.open()
    key = server.st.secret_key
    if problem == "tampered":
        version, payload, sig = sign_link(key, rid, "alice").split(".")
        token = f"{version}.{payload}.{sig[:-2]}{'AB' if sig.endswith('AA') else 'AA'}"
        reason, actor = "signature is not valid", "alice"
    elif problem == "expired":
        token = sign_link(key, rid, "alice", ttl=timedelta(hours=1), now=utcnow() - timedelta(2))
        reason, actor = "this link expired at", "alice"
    elif problem == "another request":
        token = sign_link(key, server.open("k2"), "alice")
        reason, actor = "this link is for another request", "alice"
    else:
        token = "not-a-link"
        reason, actor = "this link is malformed", None
    r = server.client.get(f"/r/{rid}", params={"t": token})
    assert r.status_code == 403
    assert reason in text_of(r.text).lower()
    assert not has_form(r.text)
    assert "Export customers" not in r.text  # nothing of the request is shown
    # The link proves no one's identity: no actor, the name it claims kept as unverified data.
    assert rejections(server.st, rid) == []
    (row,) = refused_links(server.st, rid)
    assert row["actor"] is None
    assert row["data"]["attempts"] == 1 and row["data"]["channel"] == "link"
    assert row["data"]["unverified_claims"] == ([actor] if actor else [])
    assert [reason in why for why in row["data"]["reasons"]] == [True]
    # Posting a decision with it is refused the same way, counted in the same minute's row
    # (written when the minute ends, or at shutdown), and nothing is decided.
    r = server.client.post(f"/r/{rid}/decide", data={"t": token, "verdict": "approve"})
    assert r.status_code == 403
    assert len(refused_links(server.st, rid)) == 1
    server.st.refused_links.close()
    rows = refused_links(server.st, rid)
    assert [(r["actor"], r["data"]["attempts"], r["data"]["verdicts"]) for r in rows] == [
        (None, 1, {}),
        (None, 1, {"approve": 1}),
    ]
    assert rejections(server.st, rid) == []
    assert server.st.store.get(rid).decisions == ()


def test_the_job_owner_sees_why_and_cannot_force_a_decision(server: Server) -> None:
    rid = server.open()
    path = server.link(rid, "carol")
    r = server.client.get(path)
    assert r.status_code == 200
    assert not has_form(r.text)
    assert "You cannot decide this request: you are the job owner." in text_of(r.text)
    # A hand-made POST, with a valid CSRF token for carol's link, is still refused.
    token = path.split("?t=", 1)[1]
    claims = verify_link(server.st.secret_key, token, rid)
    csrf = csrf_token(server.st.secret_key, rid, Viewer("carol", "link", claims.nonce))
    r = server.client.post(
        f"/r/{rid}/decide", data={"t": token, "csrf": csrf, "verdict": "approve"}
    )
    assert r.status_code == 403
    assert "job owner" in text_of(r.text)
    assert server.st.store.get(rid).decisions == ()
    rows = rejections(server.st, rid)
    assert [(row["actor"], row["data"]["verdict"]) for row in rows] == [("carol", "approve")]
    assert "job owner" in rows[0]["data"]["reason"]


def test_a_reviewer_outside_the_groups_is_told_why(server: Server) -> None:
    rid = server.open()
    r = server.client.get(server.link(rid, "erin"))
    assert not has_form(r.text)
    assert "is not in any of the groups ['data-stewards']" in text_of(r.text)


def test_csrf_is_required(server: Server) -> None:
    rid = server.open()
    page = server.client.get(server.link(rid, "alice")).text
    fields = hidden_fields(page)
    other = csrf_token(server.st.secret_key, rid, Viewer("alice", "sso", "alice"))
    for csrf in ("", "wrong", "é" * 43, other):
        r = server.client.post(
            f"/r/{rid}/decide", data={**fields, "csrf": csrf, "verdict": "approve"}
        )
        assert r.status_code == 403, csrf
        assert "security token is missing or wrong" in text_of(r.text)
    assert server.st.store.get(rid).decisions == ()
    # The link was not spent by the refused posts.
    assert decide(server, rid, page, "approve").status_code == 200


# --------------------------------------------------------------------------- sessions


def test_sign_in_inbox_and_sign_out(server: Server) -> None:
    rid = server.open()
    token = server.st.store.create_token("alice", "review")
    r = sign_in(server.client, token)
    assert r.status_code == 303
    assert r.headers["location"] == "/inbox"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain http here
    assert token not in cookie
    inbox = server.client.get("/inbox")
    assert inbox.status_code == 200
    assert f'href="/r/{rid}"' in inbox.text
    page = text_of(inbox.text)
    assert "Export customers to the partner bucket" in page
    assert "rule pii-export · 0 of 2 approvals" in page
    assert "crm.public.customers pii classify[0]" in page
    # From the inbox, the page has the form and decides through the web channel.
    view = server.client.get(f"/r/{rid}")
    r = decide(server, rid, view.text, "approve")
    assert f"You approved request {rid}: 1 of 2 approvals." in text_of(r.text)
    assert server.st.store.get(rid).decisions[0].channel is Channel.WEB
    assert f'href="/r/{rid}"' not in server.client.get("/inbox").text  # decided: gone
    # carol owns the job: her inbox never lists it
    server.login("carol")
    inbox = server.client.get("/inbox")
    assert f"/r/{rid}" not in inbox.text
    assert "Nothing waits for your decision." in text_of(inbox.text)
    # sign out
    signed_out = hidden_fields(server.client.get("/inbox").text)["logout_csrf"]
    r = server.client.post("/logout", data={"logout_csrf": signed_out}, follow_redirects=False)
    assert r.status_code == 303
    assert f'{SESSION_COOKIE}=""' in r.headers["set-cookie"] or "max-age=0" in (
        r.headers["set-cookie"].lower()
    )
    assert server.client.get("/inbox", follow_redirects=False).status_code == 303


def test_the_inbox_pages_by_id_newest_first(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(review_pages, "INBOX_PAGE", 2)
    oldest, middle, newest = (server.open(f"k{i}") for i in range(3))
    server.login("alice")

    first = server.client.get("/inbox").text
    assert [newest, middle] == re.findall(r'href="/r/([^"]+)"', first)
    older = re.search(r'href="(/inbox\?before=[^"]+)">Older requests', first)
    assert older is not None, text_of(first)
    assert older.group(1) == f"/inbox?before={middle}"

    second = server.client.get(older.group(1)).text
    assert re.findall(r'href="/r/([^"]+)"', second) == [oldest]
    assert "Older requests" not in second  # the last page
    assert 'href="/inbox">Newest' in second

    bad = server.client.get("/inbox", params={"before": "not-an-id"})
    assert bad.status_code == 400


@pytest.mark.parametrize("kind", ["request", "unknown", "empty"])
def test_only_a_review_token_signs_in(server: Server, kind: str) -> None:
    token = {
        "request": server.request_token,
        "unknown": "sgrev_nope",
        "empty": "",
    }[kind]
    r = sign_in(server.client, token)
    assert r.status_code == 401
    assert "set-cookie" not in r.headers
    page = text_of(r.text)
    assert "Sign in to review" in page
    assert ("request token" if kind == "request" else "unknown or revoked") in page


def test_sign_in_returns_to_the_page_but_never_off_site(server: Server) -> None:
    rid = server.open()
    token = server.st.store.create_token("alice", "review")
    for nxt, expected in (
        (f"/r/{rid}", f"/r/{rid}"),
        ("//evil.example/x", "/inbox"),
        ("https://evil.example/", "/inbox"),
        ("/\\evil.example", "/inbox"),
    ):
        r = sign_in(server.client, token, nxt)
        assert r.headers["location"] == expected


def test_a_forged_or_expired_session_is_ignored(server: Server) -> None:
    server.login("alice")
    value = server.client.cookies[SESSION_COOKIE]
    payload, sig = value.split(".")
    forged = base64.urlsafe_b64encode(json.dumps(["bob", 9_999_999_999]).encode()).decode()
    expired = sign_session(server.st.secret_key, "alice", now=utcnow() - timedelta(hours=13))
    for bad in (f"{forged.rstrip('=')}.{sig}", f"{payload}.x", "garbage", expired):
        server.client.cookies.clear()  # only the bad cookie goes out, whatever its domain
        server.client.cookies.set(SESSION_COOKIE, bad)
        assert server.client.get("/inbox", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_secure_over_https(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    st: ServerState = app.state.sluicegate
    token = st.store.create_token("alice", "review")
    with TestClient(app, base_url="https://testserver") as client:
        r = sign_in(client, token)
    assert "secure" in r.headers["set-cookie"].lower()


# --------------------------------------------------------------------------- outcomes


def test_deny_needs_a_comment(server: Server) -> None:
    rid = server.open()
    page = server.client.get(server.link(rid, "alice")).text
    r = decide(server, rid, page, "deny", "   ")
    assert r.status_code == 422
    assert "A comment is required to deny this request." in text_of(r.text)
    assert has_form(r.text)  # shown again, with the same (unspent) link
    assert server.st.store.get(rid).decisions == ()
    r = decide(server, rid, r.text, "deny", "no partner contract on file")
    assert r.status_code == 200
    assert f"You denied request {rid}: the request is denied." in text_of(r.text)
    req = server.st.store.get(rid)
    assert req.status is Status.DENIED
    assert req.decisions[0].comment == "no partner contract on file"


def test_a_bad_verdict_or_oversized_comment_is_refused(server: Server) -> None:
    rid = server.open()
    page = server.client.get(server.link(rid, "alice")).text
    assert decide(server, rid, page, "maybe").status_code == 422
    r = decide(server, rid, page, "approve", "x" * 4001)
    assert r.status_code == 422
    assert "longer than 4000 characters" in text_of(r.text)
    assert server.st.store.get(rid).decisions == ()


def test_a_decision_after_the_end_is_a_409_page(server: Server) -> None:
    rid = server.open()
    bob_page = server.client.get(server.link(rid, "bob")).text
    alice_page = server.client.get(server.link(rid, "alice")).text
    assert decide(server, rid, alice_page, "deny", "no").status_code == 200
    r = decide(server, rid, bob_page, "approve")  # bob's form was open before the end
    assert r.status_code == 409
    assert "Nothing was recorded" in text_of(r.text)
    assert "already denied" in text_of(r.text)
    assert server.st.store.get(rid).approvals == 0
    later = server.client.get(server.link(rid, "bob"))
    assert not has_form(later.text)
    assert "This request is denied; it can no longer be decided." in text_of(later.text)


def test_a_changed_fingerprint_is_a_conflict(server: Server) -> None:
    rid = server.open()
    page = server.client.get(server.link(rid, "alice")).text
    data = {**hidden_fields(page), "verdict": "approve", "fingerprint": "sha256:" + "0" * 64}
    r = server.client.post(f"/r/{rid}/decide", data=data)
    assert r.status_code == 409
    assert "fingerprint mismatch" in text_of(r.text)
    assert server.st.store.get(rid).decisions == ()


def test_posting_without_any_identity_is_refused(server: Server) -> None:
    rid = server.open()
    r = server.client.post(f"/r/{rid}/decide", data={"verdict": "approve"})
    assert r.status_code == 403
    assert "Sign in to decide" in text_of(r.text)
    assert server.st.store.get(rid).decisions == ()
    # the same answer for a request that does not exist: nothing is revealed
    r = server.client.post(f"/r/{uuid.uuid4()}/decide", data={"verdict": "approve"})
    assert r.status_code == 403


# --------------------------------------------------------------------------- SSO, helpers


def test_the_sso_header_is_ignored_unless_configured(server: Server) -> None:
    rid = server.open()
    r = server.client.get(
        f"/r/{rid}", headers={"X-Forwarded-User": "alice"}, follow_redirects=False
    )
    assert r.status_code == 303


def test_the_sso_header_identifies_a_reviewer_when_configured(tmp_path: Path) -> None:
    app = make_app(tmp_path, sso_header="X-Forwarded-User")
    st: ServerState = app.state.sluicegate
    token = st.store.create_token("airflow-prod", "request")
    with TestClient(app, headers={"X-Forwarded-User": "alice"}) as client:
        server = Server(client, st, token)
        rid = server.open()
        page = client.get(f"/r/{rid}")
        assert has_form(page.text)
        assert "alice (single sign-on)" in text_of(page.text)
        r = decide(server, rid, page.text, "approve")
        assert f"You approved request {rid}: 1 of 2 approvals." in text_of(r.text)
        assert st.store.get(rid).decisions[0].channel is Channel.WEB
        assert f"/r/{rid}" not in client.get("/inbox").text
        carol = client.get(f"/r/{rid}", headers={"X-Forwarded-User": "carol"})
        assert "you are the job owner" in text_of(carol.text)


def test_review_link_is_a_signed_url_for_one_reviewer(server: Server) -> None:
    rid = server.open()
    url = review_link(server.st, rid, "bob")
    base, _, token = url.partition("?t=")
    assert base == f"{server.st.settings.server_url}/r/{rid}"
    claims = verify_link(server.st.secret_key, token, rid)
    assert claims.reviewer == "bob"
    assert claims.expires_at - utcnow() <= server.st.link_ttl
