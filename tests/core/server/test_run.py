"""The server as a user runs it: ``sluicegate serve`` in a subprocess, the reviewer CLI, restarts,
and two replicas on one PostgreSQL schema racing each other.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate.store import Store
from tests.core.support.serverproc import (
    PII_EXPORT,
    POLICY,
    TLS,
    ServerProcess,
    StartServer,
    cli,
    cli_in_process,
)

REQUESTER = {"orchestrator": "airflow", "job": "crm_export.export_customers", "owner": "carol"}


def open_gate(server: ServerProcess, token: str, **requester: Any) -> dict[str, Any]:
    body = {
        "idempotency_key": f"airflow:crm:{uuid.uuid4().hex}:export",
        "action": PII_EXPORT,
        "requester": {**REQUESTER, **requester},
    }
    with server.client(token) as c:
        r = c.post("/api/v1/requests", json=body)
    assert r.status_code == 201, r.text
    opened: dict[str, Any] = r.json()
    return opened


def tokens_for(db_url: str, *reviewers: str) -> tuple[str, dict[str, str]]:
    """A pipeline's request token and review tokens (made in process: the CLI is tested above)."""
    with Store(db_url) as store:
        return store.create_token("airflow-prod", "request"), {
            name: store.create_token(name, "review") for name in reviewers
        }


def audit_token(db_url: str) -> str:
    """A token of the ``audit`` scope, the only one that reads the audit log."""
    with Store(db_url) as store:
        return store.create_token("internal-audit", "audit")


def one_line_error(proc: Any, fragment: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("sluicegate: error: "), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in proc.stderr, proc.stderr


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


# ----------------------------------------------------------------------------- two replicas


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


class LongPoll(threading.Thread):
    """``GET /wait?timeout=20`` on one replica, in the background."""

    def __init__(
        self, server: ServerProcess, token: str, request_id: str, timeout: float = 20
    ) -> None:
        super().__init__(daemon=True)
        self.server, self.token, self.request_id = server, token, request_id
        self.timeout = timeout
        self.status: str | None = None
        self.at: float | None = None

    def run(self) -> None:
        with self.server.client(self.token) as c:
            try:
                r = c.get(
                    f"/api/v1/requests/{self.request_id}/wait", params={"timeout": self.timeout}
                )
            except httpx.TransportError as err:
                self.status = f"transport error: {err!r}"
                return
        self.at = time.monotonic()
        self.status = r.json().get("status") if r.status_code == 200 else f"HTTP {r.status_code}"


def waiting_polls(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=5, verify=TLS).text
    for line in text.splitlines():
        if line.startswith("sluicegate_long_polls_waiting "):
            return float(line.split()[1])
    raise AssertionError("no sluicegate_long_polls_waiting in /metrics")


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


@pytest.mark.postgres
def test_a_server_on_postgresql_stops_promptly_when_asked(
    pg_url: str, tmp_path: Path, start_server: StartServer
) -> None:
    """SIGTERM (what systemd, Docker and Ctrl-C send) ends it, LISTEN connection and all."""
    server = start_server(pg_url, name="stopping")
    pipeline, _ = tokens_for(pg_url)
    open_gate(server, pipeline)
    assert sigterm(server, within=10) in (0, -15)


def test_an_open_long_poll_does_not_hold_up_a_stop(
    sqlite_url: str, tmp_path: Path, start_server: StartServer
) -> None:
    server = start_server(sqlite_url, name="stopping")
    pipeline, _ = tokens_for(sqlite_url)
    rid = open_gate(server, pipeline)["id"]
    poll = LongPoll(server, pipeline, rid, timeout=4)
    poll.start()
    deadline = time.monotonic() + 10
    while waiting_polls(server) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        sigterm(server, within=2)
    finally:
        poll.join(timeout=10)


def sigterm(server: ServerProcess, within: float) -> int:
    """Send SIGTERM and return the exit code; fail if the process is still there after
    ``within`` seconds (it is killed by the fixture's finalizer)."""
    proc = server.proc
    assert proc is not None
    proc.terminate()
    try:
        return proc.wait(timeout=within)
    except Exception:
        pytest.fail(f"the server did not stop within {within} s of SIGTERM:\n{server.stderr()}")


def test_serve_with_workers_is_one_server_on_one_port(
    db_url: str, tmp_path: Path, start_server: StartServer
) -> None:
    """``serve --workers 2``: two processes, one port; a decision taken through one process
    wakes the long polls held by the other at once, and a stop ends them all."""
    pipeline, tokens = tokens_for(db_url, "alice", "bob")
    server = start_server(db_url, name="workers", workers=2)
    req = open_gate(server, pipeline)
    # Each poll is its own connection; the kernel spreads connections over the two processes
    # (SO_REUSEPORT), so with eight of them both processes hold some (all but 1 in 128).
    polls = [LongPoll(server, pipeline, req["id"]) for _ in range(8)]
    for p in polls:
        p.start()
    # Every poll waits in its process before the decision (the whole server's gauge, which
    # every process reports): one that missed the decision would hold its polls until the
    # 5 s safety sweep.
    deadline = time.monotonic() + 10
    while waiting_polls(server) < len(polls):
        assert time.monotonic() < deadline, "the long polls never all started waiting"
        time.sleep(0.02)
    for reviewer in ("alice", "bob"):
        with server.client(tokens[reviewer]) as c:
            r = c.post(f"/api/v1/requests/{req['id']}/decisions", json={"verdict": "approve"})
        assert r.status_code == 200, r.text
    decided_at = time.monotonic()
    assert r.json()["status"] == "approved"
    for p in polls:
        p.join(timeout=25)
        assert p.status == "approved", p.status
        assert p.at is not None and p.at - decided_at < 1.0, p.at - decided_at
    proc = server.proc
    assert proc is not None
    started = time.monotonic()
    proc.terminate()
    assert proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert "Traceback" not in server.stderr(), server.stderr()


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
