"""Review-page sessions die with their token and at sign-out, on every replica.

Each test drives a real ``sluicegate serve`` through the pages as a browser does (sign in with
a review token, open the inbox, decide from a request's page) and manages tokens with the
real ``sluicegate token`` commands (run in process through the script's entry point; the script
itself is tested in tests/core/cli/test_main.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluicegate.store import Store
from tests.core.support.browser import Browser, with_cookie
from tests.core.support.serverproc import (
    PII_EXPORT,
    POLICY,
    ServerProcess,
    StartServer,
    cli_in_process,
    create_token,
    running,
)

REQUESTER = {"orchestrator": "airflow", "job": "crm_export.export_customers", "owner": "carol"}


@pytest.fixture(scope="module")
def _one_sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("sessions")
    server = ServerProcess(f"sqlite:///{tmp}/sluicegate.db", POLICY, tmp)
    with running(server):
        yield server.start()


@pytest.fixture
def sqlite_server(_one_sqlite_server: ServerProcess) -> Iterator[ServerProcess]:
    """One server on one SQLite database for this module's SQLite tests (each signs in as a
    reviewer of its own and opens requests of its own); its output is shown with a failure."""
    yield _one_sqlite_server
    print(f"===== server output =====\n{_one_sqlite_server.stderr()}")


def open_gate(server: ServerProcess, token: str) -> str:
    """A pending PII export (two data stewards must approve); its id."""
    body = {
        "idempotency_key": f"airflow:crm:{uuid.uuid4().hex}:export",
        "action": PII_EXPORT,
        "requester": REQUESTER,
    }
    with server.client(token) as c:
        r = c.post("/api/v1/requests", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"
    return str(r.json()["id"])


def token_id(db_url: str, principal: str) -> str:
    """The id of ``principal``'s one token, as ``sluicegate token list`` shows it."""
    listed = cli_in_process("token", "list", "--db", db_url, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (found,) = [t for t in json.loads(listed.stdout) if t["principal"] == principal]
    return str(found["id"])


def revoke(db_url: str, principal: str) -> None:
    """``sluicegate token revoke ID``, the id read from ``token list``."""
    tid = token_id(db_url, principal)
    done = cli_in_process("token", "revoke", tid, "--db", db_url)
    assert done.returncode == 0, done.stderr
    assert f"revoked token {tid}" in done.stdout


def decisions(server: ServerProcess, token: str, request_id: str) -> list[Any]:
    with server.client(token) as c:
        r = c.get(f"/api/v1/requests/{request_id}")
    assert r.status_code == 200, r.text
    found: list[Any] = r.json()["decisions"]
    return found


def signed_out(browser: Browser) -> bool:
    """True when the inbox sends this browser to the sign-in page."""
    r = browser.get("/inbox")
    return r.status_code == 303 and r.headers["location"].startswith("/login")


def test_revoking_a_token_ends_its_session_at_once(sqlite_server: ServerProcess) -> None:
    server = sqlite_server
    sqlite_url = server.db_url
    pipeline = create_token(sqlite_url, "airflow-prod", "request")
    alice = create_token(sqlite_url, "alice", "review")
    rid = open_gate(server, pipeline)
    with Browser(server.url) as browser:
        assert browser.sign_in(alice).status_code == 303
        inbox = browser.get("/inbox")
        assert inbox.status_code == 200 and f"/r/{rid}" in inbox.text
        page = browser.get(f"/r/{rid}").text  # the form, left open in a tab
        assert 'name="verdict"' in page

        revoke(sqlite_url, "alice")

        # No grace period: the very next page request finds the session dead.
        assert signed_out(browser)
        r = browser.decide(rid, "approve", page)
        assert r.status_code == 403, r.text
        assert decisions(server, pipeline, rid) == []
        # And the token itself signs nobody in any more.
        assert browser.sign_in(alice).status_code == 401
    with Store(sqlite_url) as store:
        (revoked,) = [t for t in store.list_tokens("alice")]
        assert revoked.revoked_at is not None


def test_a_session_cookie_replayed_after_sign_out_is_refused(
    sqlite_server: ServerProcess,
) -> None:
    server = sqlite_server
    pipeline = create_token(server.db_url, "airflow-prod", "request")
    bob = create_token(server.db_url, "bob", "review")
    rid = open_gate(server, pipeline)
    with Browser(server.url) as browser:
        assert browser.sign_in(bob).status_code == 303
        stolen = browser.session()
        page = browser.get(f"/r/{rid}").text
        assert 'name="verdict"' in page
        out = browser.sign_out()
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert signed_out(browser)
    # Whoever copied the cookie (and the page) before the sign-out gets nothing with it.
    with with_cookie(server.url, stolen) as thief:
        assert signed_out(thief)
        assert thief.decide(rid, "approve", page).status_code == 403
    assert decisions(server, pipeline, rid) == []


def test_an_expired_token_is_refused_on_the_api_and_the_pages(
    sqlite_server: ServerProcess,
) -> None:
    server, sqlite_url = sqlite_server, sqlite_server.db_url
    made = cli_in_process(
        "token", "create", "--db", sqlite_url, "--principal", "erin", "--scope", "review",
        "--ttl", "8s", "--policy", str(POLICY),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    erin = made.stdout.strip()
    expired_by = time.monotonic() + 8  # the token was made before this moment
    listed = cli_in_process(
        "token", "list", "--db", sqlite_url, "--principal", "erin", "--format", "json"
    )
    (token,) = json.loads(listed.stdout)
    assert token["expires_at"] is not None
    with Browser(server.url) as browser, server.client(erin) as api:
        assert api.get("/api/v1/requests").status_code == 200  # now in the server's cache
        assert browser.sign_in(erin).status_code == 303
        assert browser.get("/inbox").status_code == 200
        time.sleep(max(0.0, expired_by - time.monotonic()) + 0.2)
        # Expired, though the API's token cache (10 s) still holds it: refused to the second.
        r = api.get("/api/v1/requests")
        assert r.status_code == 401, r.text
        assert signed_out(browser)
        assert browser.sign_in(erin).status_code == 401


@pytest.mark.postgres
def test_sessions_end_on_every_replica(
    pg_url: str, tmp_path: Path, start_server: StartServer
) -> None:
    pipeline = create_token(pg_url, "airflow-prod", "request", cwd=tmp_path)
    alice = create_token(pg_url, "alice", "review", cwd=tmp_path)
    a = start_server(pg_url, name="replica-A")
    b = start_server(pg_url, name="replica-B")
    rid = open_gate(a, pipeline)

    # Signed in on A, the session is good on B (one database, one key)...
    with Browser(a.url) as on_a:
        assert on_a.sign_in(alice).status_code == 303
        session = on_a.session()
        with with_cookie(b.url, session) as on_b:
            assert on_b.get("/inbox").status_code == 200
        # ...until its reviewer signs out on A: B refuses the same cookie at once.
        assert on_a.sign_out().status_code == 303
    with with_cookie(b.url, session) as replay:
        assert signed_out(replay)

    # A new session on B; the token revoked from the command line: both replicas refuse it.
    with Browser(b.url) as on_b:
        assert on_b.sign_in(alice).status_code == 303
        session = on_b.session()
        page = on_b.get(f"/r/{rid}").text
        assert 'name="verdict"' in page
        revoke(pg_url, "alice")
        assert signed_out(on_b)
        assert on_b.decide(rid, "approve", page).status_code == 403
    with with_cookie(a.url, session) as replay:
        assert signed_out(replay)
        assert replay.decide(rid, "approve", page).status_code == 403
    assert decisions(a, pipeline, rid) == []
