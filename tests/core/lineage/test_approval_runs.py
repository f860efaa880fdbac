"""The gates' own OpenLineage events, from the real server to a real lineage backend.

The server runs as a subprocess with ``OPENLINEAGE_URL`` pointing at a local HTTP backend that
answers as Marquez does; pipelines and reviewers use the real client. Every event the backend
receives must validate against the OpenLineage spec and the published facet schema, and a
backend that is down, hangs or fails must leave the gate's answers and timing unchanged.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sluicegate.client import GateRefused, SluicegateClient
from sluicegate.server import create_app
from sluicegate.settings import load_settings
from sluicegate.store import Store
from tests.core.support.lineage_backend import LineageBackend, running_backend
from tests.core.support.lineage_schema import validate_event
from tests.core.support.serverproc import (
    GRANT,
    PII_EXPORT,
    POLICY,
    ROUTINE_READ,
    SECRET_EXPORT,
    ServerProcess,
    running,
)

PARENT = {
    "namespace": "airflow",
    "name": "crm_export.export_customers",
    "run_id": str(uuid.uuid4()),
}
REQUESTER = {
    "orchestrator": "airflow",
    "job": "crm_export.export_customers",
    "run_id": "manual__1",
    "owner": "carol",
    "parent": PARENT,
}


class Setup:
    """A server, its lineage backend, and clients; the runs of its gates belong to the parent
    run ``parent`` (the events it reads are those of that parent run)."""

    def __init__(
        self,
        server: ServerProcess,
        backend: LineageBackend,
        db_url: str,
        tmp: Path,
        parent: dict[str, str] = PARENT,
    ):
        self.server, self.backend = server, backend
        self.parent = parent
        self.requester = {**REQUESTER, "parent": parent}
        with Store(db_url) as store:  # (the CLI that does the same is tested on its own)
            self.pipeline = SluicegateClient(
                server.url, store.create_token("airflow-prod", "request")
            )
            self.reviewers = {
                name: SluicegateClient(server.url, store.create_token(name, "review"))
                for name in ("alice", "bob", "erin")
            }

    def received(self) -> list[tuple[str, dict[str, Any]]]:
        """(path, event) of each event the backend received for this setup's parent run."""
        return [
            (path, body)
            for path, _, body in list(self.backend.received)
            if body["run"]["facets"].get("parent", {}).get("run", {}).get("runId")
            == self.parent["run_id"]
        ]

    def events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The events the backend received for this setup's parent run, once there are at least
        ``count`` (waits for them), all validated."""
        deadline = time.monotonic() + timeout
        while len(self.received()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        got = [body for _, body in self.received()]
        assert len(got) >= count, (count, [e["eventType"] for e in got], self.server.stderr())
        for event in got:
            validate_event(event)
        return got

    def close(self) -> None:
        self.pipeline.close()
        for c in self.reviewers.values():
            c.close()


@pytest.fixture(scope="module")
def _lineage_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, LineageBackend, str, Path]]:
    tmp = tmp_path_factory.mktemp("lineage-server")
    db = f"sqlite:///{tmp}/sluicegate.db"
    with running_backend("ok") as backend:
        server = ServerProcess(db, POLICY, tmp, env={"OPENLINEAGE_URL": backend.url})
        with running(server):
            yield server.start(), backend, db, tmp


@pytest.fixture
def setup(_lineage_server: tuple[ServerProcess, LineageBackend, str, Path]) -> Iterator[Setup]:
    """One server and backend for the module's tests that use them: each test's gates have a
    parent run of their own, and it reads the events of that run only."""
    s = Setup(*_lineage_server, parent={**PARENT, "run_id": str(uuid.uuid4())})
    try:
        yield s
    finally:
        s.close()
        print(f"===== server output =====\n{s.server.stderr()}")


def _approval(event: dict[str, Any]) -> dict[str, Any]:
    facet: dict[str, Any] = event["run"]["facets"]["sluicegate_approval"]
    return facet


def test_a_gate_approved_by_two_reviewers_emits_start_other_other_complete(setup: Setup) -> None:
    opened = setup.pipeline.open_gate("k-approved", PII_EXPORT, setup.requester)
    setup.reviewers["alice"].decide(opened.id, "approve")
    setup.reviewers["bob"].decide(opened.id, "approve", "partner contract checked")
    setup.pipeline.release(opened.id)

    events = setup.events(4)
    assert [e["eventType"] for e in events] == ["START", "OTHER", "OTHER", "COMPLETE"]
    assert {e["run"]["runId"] for e in events} == {opened.lineage_run_id}
    assert [_approval(e)["status"] for e in events] == [
        "pending",
        "pending",
        "approved",
        "released",
    ]
    assert [_approval(e)["approvals"] for e in events] == [0, 1, 2, 2]
    last = _approval(events[-1])
    assert last["requestId"] == opened.id and last["rule"] == "pii-export"
    assert last["requiredApprovals"] == 2
    assert last["reviewUrl"] == f"{setup.server.url}/r/{opened.id}"
    assert [(d["reviewer"], d["verdict"], d["comment"]) for d in last["decisions"]] == [
        ("alice", "approve", ""),
        ("bob", "approve", "partner contract checked"),
    ]
    key = "postgres://prod:5432::crm.public.customers"
    assert {c["classification"] for c in last["classifications"][key]} == {"pii", "prod"}
    start = events[0]
    assert start["job"] == {
        "namespace": "sluicegate",
        "name": "crm_export.export_customers.approval_gate",
        "facets": start["job"]["facets"],
    }
    assert start["job"]["facets"]["jobType"]["jobType"]  # Marquez needs it
    parent = start["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == setup.parent["run_id"]
    assert (parent["job"]["namespace"], parent["job"]["name"]) == (
        "airflow",
        "crm_export.export_customers",
    )
    assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [
        ("postgres://prod:5432", "crm.public.customers")
    ]
    tags = start["inputs"][0]["facets"]["tags"]["tags"]
    assert {(t["key"], t["value"]) for t in tags} == {("pii", "true"), ("prod", "true")}
    assert {path for path, _ in setup.received()} == {"/api/v1/lineage"}


def test_denied_expired_cancelled_and_policy_answers(setup: Setup) -> None:
    denied = setup.pipeline.open_gate("k-denied", PII_EXPORT, setup.requester)
    setup.reviewers["alice"].decide(denied.id, "deny", "no contract with this partner")
    cancelled = setup.pipeline.open_gate("k-cancel", GRANT, setup.requester)
    setup.pipeline.cancel(cancelled.id, "not needed")
    allowed = setup.pipeline.open_gate("k-read", ROUTINE_READ, setup.requester)
    with pytest.raises(GateRefused):
        setup.pipeline.gate("k-secret", SECRET_EXPORT, setup.requester, timeout=5)
    assert allowed.status == "allowed"

    events = setup.events(8)
    by_run: dict[str, list[str]] = {}
    for e in events:
        by_run.setdefault(e["run"]["runId"], []).append(e["eventType"])
    assert by_run[denied.lineage_run_id] == ["START", "FAIL"]
    fail = next(e for e in events if e["eventType"] == "FAIL" and _approval(e).get("requestId"))
    assert _approval(fail)["decisions"][0]["comment"] == "no contract with this partner"
    assert by_run[cancelled.lineage_run_id] == ["START", "ABORT"]
    answered = [
        flow
        for run, flow in by_run.items()
        if run not in (denied.lineage_run_id, cancelled.lineage_run_id)
    ]
    assert sorted(answered) == [["START", "COMPLETE"], ["START", "FAIL"]]
    policy_denied = [
        e
        for e in events
        if _approval(e)["status"] == "denied" and not _approval(e).get("requestId")
    ]
    assert policy_denied and _approval(policy_denied[-1])["rule"] == "no-secrets-leave"


def test_a_reattached_retry_sends_nothing_new(setup: Setup) -> None:
    first = setup.pipeline.open_gate("k-retry", PII_EXPORT, setup.requester)
    again = setup.pipeline.open_gate("k-retry", PII_EXPORT, setup.requester)
    assert again.id == first.id
    setup.pipeline.cancel(first.id)
    events = setup.events(2)
    time.sleep(0.3)
    assert [e["eventType"] for e in setup.events(2)] == ["START", "ABORT"]
    assert len(events) == 2


def test_an_expired_request_aborts(sqlite_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.read_text().replace("timeout: 24h", "timeout: 1s"))
    with running_backend("ok") as backend:
        server = ServerProcess(
            sqlite_url, policy, tmp_path, env={"OPENLINEAGE_URL": backend.url}
        ).start()
        s = Setup(server, backend, sqlite_url, tmp_path)
        try:
            opened = s.pipeline.open_gate("k-expire", PII_EXPORT, REQUESTER)
            assert s.pipeline.wait(opened.id, timeout=10).status == "expired"
            events = s.events(2)
            assert [e["eventType"] for e in events] == ["START", "ABORT"]
            assert _approval(events[1])["status"] == "expired"
        finally:
            s.close()
            server.stop()


@pytest.mark.parametrize("mode", ["hang", "fail", "dead"])
def test_a_backend_that_hangs_fails_or_is_down_never_holds_a_gate(
    mode: str, sqlite_url: str, tmp_path: Path
) -> None:
    with running_backend("hang" if mode == "hang" else "fail") as backend:
        url = backend.url
        if mode == "dead":
            import socket

            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = ServerProcess(sqlite_url, POLICY, tmp_path, env={"OPENLINEAGE_URL": url}).start()
        s = Setup(server, backend, sqlite_url, tmp_path)
        try:
            started = time.monotonic()
            for i in range(5):
                assert s.pipeline.open_gate(f"k-{i}", ROUTINE_READ, REQUESTER).status == "allowed"
            opened = s.pipeline.open_gate("k-pii", PII_EXPORT, REQUESTER)
            s.reviewers["alice"].decide(opened.id, "approve")
            s.reviewers["bob"].decide(opened.id, "approve")
            assert s.pipeline.wait(opened.id, timeout=5).status == "approved"
            # A behavioural bound, not a benchmark: the backend takes 5 s an event (hang) or
            # retries for 9 s (dead); the gates must not wait for any of it.
            assert time.monotonic() - started < 3.0
            metrics = httpx.get(f"{server.url}/metrics").text
            assert "sluicegate_lineage_events_emitted_total" in metrics
        finally:
            s.close()
            server.stop()


@pytest.fixture
def dead_backend_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """``OPENLINEAGE_URL`` at a closed port, and nothing else of OpenLineage's configured.

    The client copies the URL into ``OPENLINEAGE__TRANSPORT__*`` variables of this process:
    those go afterwards too."""
    for key in list(os.environ):
        if key.startswith(("OPENLINEAGE", "SLUICEGATE_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("OPENLINEAGE_URL", url)
    yield url
    for key in list(os.environ):
        if key.startswith("OPENLINEAGE"):
            del os.environ[key]


def _samples(text: bytes, family: str) -> dict[str, float]:
    """One metric's ``_total`` samples by their label value, read by Prometheus' parser."""
    found: dict[str, float] = {}
    for metric in text_string_to_metric_families(text.decode()):
        if metric.name == family:
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    found[next(iter(sample.labels.values()))] = sample.value
    return found


def test_a_dead_backend_holds_no_gate_and_every_event_is_counted(
    dead_backend_env: str, sqlite_url: str
) -> None:
    app = create_app(load_settings(db_url=sqlite_url, policy=str(POLICY)))
    st = app.state.sluicegate
    with TestClient(app) as c:
        token = st.store.create_token("airflow-prod", "request")
        started = time.monotonic()
        for i in range(20):
            body = {"idempotency_key": f"k-{i}", "action": ROUTINE_READ, "requester": REQUESTER}
            r = c.post("/api/v1/requests", json=body, headers={"Authorization": f"Bearer {token}"})
            assert r.json()["status"] == "allowed", r.text
        assert time.monotonic() - started < 3.0  # a behavioural bound, not a benchmark
        # 40 events (START, COMPLETE): the first one still in its transport's own retries
        # (about 9 s against a closed port), the others waiting behind it, none sent twice.
        assert st.workflow.lineage.emitter.queued == {"http": 39}
        emitted = _samples(c.get("/metrics").content, "sluicegate_lineage_events_emitted")
        assert emitted.get("sent", 0) == emitted.get("failed", 0) == 0
    # Shut down: the server gives the backend 2 s, then counts what it never took.
    assert _samples(st.metrics.render(), "sluicegate_lineage_events_dropped") == {"shutdown": 40}
    assert _samples(st.metrics.render(), "sluicegate_lineage_events_emitted") == {"dropped": 40}
