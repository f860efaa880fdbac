"""The server as a user runs it: ``sluicegate serve`` in a subprocess, the reviewer CLI against
it, its access log, and a restart that keeps what was decided. Replicas racing each other are
in ``test_replicas.py``; stopping and ``--workers`` in ``test_stop_and_workers.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.core.support.served import (
    REQUESTER,
    audit_token,
    one_line_error,
    open_gate,
    tokens_for,
)
from tests.core.support.serverproc import (
    PII_EXPORT,
    POLICY,
    ServerProcess,
    StartServer,
    cli,
    cli_in_process,
)


def test_token_create_prints_the_token_alone(sqlite_url: str, tmp_path: Path) -> None:
    # The installed script, as a user runs it (create_token runs the same command in process).
    def create_token(db_url: str, principal: str, scope: str, cwd: Path) -> str:
        checked = ["--policy", str(POLICY)] if scope == "review" else []
        proc = cli(
            "token", "create", "--db", db_url, "--principal", principal, "--scope", scope,
            *checked, cwd=cwd,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 1, proc.stdout
        return lines[0]

    token = create_token(sqlite_url, "airflow-prod", "request", cwd=tmp_path)
    assert token.startswith("sgreq_") and len(token) > 30 and " " not in token
    review = create_token(sqlite_url, "alice", "review", cwd=tmp_path)
    assert review.startswith("sgrev_") and review != token
    bad = cli("token", "create", "--db", sqlite_url, "--principal", "x", "--scope", "admin")
    assert bad.returncode == 2 and "scope" in bad.stderr


class Served:
    """One ``sluicegate serve`` (access log on) on a SQLite file, for the module's tests that
    neither stop nor restart it: each opens requests of its own."""

    def __init__(self, tmp: Path) -> None:
        self.db_url = f"sqlite:///{tmp}/sluicegate.db"
        self.server = ServerProcess(self.db_url, POLICY, tmp, name="served", log_level="info")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("served"))
    try:
        s.server.start()
        yield s
    finally:
        s.server.stop()
        print(f"===== {s.server.name} ({s.server.url}) output =====\n{s.server.stderr()}")


def test_serve_and_the_reviewer_cli(served: Served, tmp_path: Path) -> None:
    pipeline, tokens = tokens_for(served.db_url, "alice", "bob", "carol")
    server = served.server
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
    req = open_gate(server, pipeline)
    rid = req["id"]
    assert req["review_url"] == f"{server.url}/r/{rid}"

    # The reviewer commands in process (the server they talk to is the real process): the
    # script's own start is what test_token_create_prints_the_token_alone and test_cli run.
    def reviewer(name: str, *args: str) -> Any:
        return cli_in_process(*args, "--server", server.url, "--token", tokens[name], cwd=tmp_path)

    listed = reviewer("alice", "requests", "list")
    assert listed.returncode == 0, listed.stderr
    assert rid in listed.stdout and "pending" in listed.stdout and "0/2" in listed.stdout

    shown = reviewer("alice", "requests", "show", rid)
    assert shown.returncode == 0, shown.stderr
    assert "Export customers to the partner bucket" in shown.stdout
    assert "crm.public.customers  [pii, prod]" in shown.stdout
    assert "requested by airflow-prod" in shown.stdout and "owner carol" in shown.stdout

    owner = reviewer("carol", "requests", "approve", rid)
    one_line_error(owner, "job owner")

    first = reviewer("alice", "requests", "approve", rid, "--comment", "checked the DPA")
    assert first.returncode == 0, first.stderr
    assert "pending" in first.stdout and "1 of 2 approvals" in first.stdout
    assert "alice approved via api: checked the DPA" in first.stdout

    no_comment = reviewer("bob", "requests", "deny", rid)
    one_line_error(no_comment, "comment")

    second = reviewer("bob", "requests", "approve", rid)
    assert second.returncode == 0, second.stderr
    assert "approved" in second.stdout and "2 of 2 approvals" in second.stdout

    as_json = reviewer("alice", "requests", "list", "--status", "approved", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert [r["id"] for r in json.loads(as_json.stdout)["items"]] == [rid]

    with server.client(audit_token(served.db_url)) as c:
        assert c.get("/api/v1/audit/verify").json()["ok"] is True


def test_the_reviewer_cli_pages_through_a_listing(served: Served, tmp_path: Path) -> None:
    pipeline, tokens = tokens_for(served.db_url, "alice")
    job = f"paging.{uuid.uuid4().hex[:8]}"  # this test's own requests, on the shared server
    opened = [open_gate(served.server, pipeline, job=job)["id"] for _ in range(3)]

    def page(*args: str) -> list[str]:
        done = cli_in_process(
            "requests", "list", "--job", job, "--limit", "2", *args,
            "--server", served.server.url, "--token", tokens["alice"], cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    first = page()
    assert [line.split()[0] for line in first[:2]] == opened[::-1][:2]  # newest first
    assert first[2] == f"next page: --before {opened[1]}"
    second = page("--before", opened[1])
    assert [line.split()[0] for line in second] == [opened[0]]  # the last page says no more


def test_a_restarted_server_keeps_the_request_and_its_decisions(
    sqlite_url: str, tmp_path: Path, start_server: StartServer
) -> None:
    pipeline, reviewers = tokens_for(sqlite_url, "alice", "bob")
    alice, bob = reviewers["alice"], reviewers["bob"]
    server = start_server(sqlite_url, name="before")
    req = open_gate(server, pipeline)
    with server.client(alice) as c:
        assert (
            c.post(f"/api/v1/requests/{req['id']}/decisions", json={"verdict": "approve"}).json()[
                "approvals"
            ]
            == 1
        )
    server.kill()  # a crash: nothing runs on the way down

    again = start_server(sqlite_url, name="after")
    with again.client(pipeline) as c:
        kept = c.get(f"/api/v1/requests/{req['id']}").json()
        assert kept["status"] == "pending" and kept["approvals"] == 1
        assert [d["reviewer"] for d in kept["decisions"]] == ["alice"]
        retry = c.post(
            "/api/v1/requests",
            json={
                "idempotency_key": req["idempotency_key"],
                "action": PII_EXPORT,
                "requester": REQUESTER,
            },
        )
        assert retry.status_code == 200 and retry.json()["id"] == req["id"]
    done = cli_in_process("requests", "approve", req["id"], "--server", again.url, "--token", bob)
    assert done.returncode == 0, done.stderr
    assert "approved" in done.stdout
    with again.client(pipeline) as c:
        assert (
            c.get(f"/api/v1/requests/{req['id']}/wait", params={"timeout": 5}).json()["status"]
            == "approved"
        )
    with again.client(audit_token(sqlite_url)) as c:
        assert c.get("/api/v1/audit/verify").json()["ok"] is True


def test_the_access_log_has_one_json_line_per_request(served: Served) -> None:
    server = served.server
    pipeline, _ = tokens_for(served.db_url)
    path = f"/api/v1/requests/{uuid.uuid4()}"
    with server.client(pipeline) as c:
        assert c.get(path).status_code == 404
    deadline = time.monotonic() + 5
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not lines:
        lines = [
            json.loads(line.split(" sluicegate.access ", 1)[1])
            for line in server.stderr().splitlines()
            if " sluicegate.access " in line and path in line
        ]
        time.sleep(0.1)
    assert len(lines) == 1, server.stderr()
    assert lines[0]["method"] == "GET" and lines[0]["status"] == 404
    assert isinstance(lines[0]["ms"], float)
    assert pipeline not in server.stderr()  # the token is never logged
