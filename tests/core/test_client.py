"""The HTTP client, sync and async, against a real app: the gate as a pipeline step sees it.

The sync client talks to the app served by uvicorn in a thread (a real socket); the async
client talks to it in process through ``httpx.ASGITransport`` with the lifespan running.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate.client import AsyncSluicegateClient, GateRefused, SluicegateClient
from sluicegate.exceptions import ClientError, UnreachableError
from sluicegate.gate import AsyncGate, GateOutcome, OutcomeKind
from sluicegate.server import create_app
from sluicegate.settings import load_settings
from sluicegate.wire import RequesterIn, RequestOut
from tests.core.support.serverproc import (
    GRANT,
    PII_EXPORT,
    ROUTINE_READ,
    SECRET_EXPORT,
    ThreadServer,
    create_token,
    expiring_policy,
    free_port,
)

REQUESTER = {"orchestrator": "airflow", "job": "crm_export.export_customers", "owner": "carol"}


# No SLUICEGATE_* variable or ./sluicegate.yaml of the developer's leaks in.
pytestmark = pytest.mark.usefixtures("isolated")


class Live:
    """A served app, its tokens, and clients for the pipeline and each reviewer."""

    def __init__(self, app: Any, url: str) -> None:
        self.app = app
        self.url = url
        self.st = app.state.sluicegate
        self.pipeline_token = self.st.store.create_token("airflow-prod", "request")
        self._clients: list[SluicegateClient] = []

    def pipeline(self, **kw: Any) -> SluicegateClient:
        return self._keep(SluicegateClient(self.url, self.pipeline_token, **kw))

    def reviewer(self, name: str) -> SluicegateClient:
        return self._keep(SluicegateClient(self.url, self.st.store.create_token(name, "review")))

    def auditor(self) -> SluicegateClient:
        token = self.st.store.create_token("internal-audit", "audit")
        return self._keep(SluicegateClient(self.url, token))

    def _keep(self, client: SluicegateClient) -> SluicegateClient:
        self._clients.append(client)
        return client

    def close(self) -> None:
        for c in self._clients:
            c.close()


@pytest.fixture
def live(app: Any) -> Iterator[Live]:
    with ThreadServer(app) as server:
        lv = Live(app, server.url)
        try:
            yield lv
        finally:
            lv.close()


def key() -> str:
    return f"airflow:crm_export:{uuid.uuid4().hex}:export"


def proceeds(answer: RequestOut) -> bool:
    return GateOutcome.of(answer).proceed


def wait_for_pending(live: Live, job: str, timeout: float = 10) -> str:
    """The id of the pending request of ``job``, once the gate has opened it."""
    deadline = time.monotonic() + timeout
    with live.reviewer("alice") as c:
        while time.monotonic() < deadline:
            items = c.list(job=job, status="pending").items
            if items:
                return items[0].id
            time.sleep(0.05)
    raise AssertionError(f"no pending request for {job} after {timeout} s")


# ----------------------------------------------------------------------------- sync


def test_the_sync_client_opens_reads_waits_decides_lists_and_cancels(live: Live) -> None:
    pipe = live.pipeline()
    k = key()
    opened = pipe.open_gate(k, PII_EXPORT, REQUESTER)
    assert opened.status == "pending" and not opened.terminal and not proceeds(opened)
    assert opened.rule == "pii-export" and opened.required_approvals == 2
    again = pipe.open_gate(k, PII_EXPORT, RequesterIn(**REQUESTER))
    assert again.id == opened.id

    got = pipe.get(opened.id)
    assert got.requester is not None and got.requester.principal == "airflow-prod"
    assert got.fingerprint == opened.fingerprint and got.action == opened.action

    started = time.monotonic()
    waited = pipe.wait(opened.id, timeout=0.2)
    assert waited.status == "pending" and time.monotonic() - started < 5

    alice = live.reviewer("alice")
    one = alice.decide(opened.id, "approve", "fine", fingerprint=got.fingerprint)
    assert one.status == "pending" and one.approvals == 1
    with pytest.raises(ClientError) as twice:
        alice.decide(opened.id, "approve")
    assert twice.value.status == 409 and twice.value.error == "conflict"
    with pytest.raises(ClientError) as self_approval:
        live.reviewer("carol").decide(opened.id, "approve")
    assert self_approval.value.status == 403 and "job owner" in self_approval.value.detail
    with pytest.raises(ClientError) as by_pipeline:
        pipe.decide(opened.id, "approve")
    assert by_pipeline.value.status == 403

    page = alice.list(status="pending", job="crm_export.export_customers")
    assert [r.id for r in page.items] == [opened.id] and page.next is None
    assert alice.list(status="approved").items == []
    assert [r.id for r in alice.list(dataset="crm.public.customers").items] == [opened.id]

    with pytest.raises(ClientError) as not_mine:
        live.reviewer("bob").cancel(opened.id)
    assert not_mine.value.status == 403
    cancelled = pipe.cancel(opened.id, reason="run failed upstream")
    assert cancelled.status == "cancelled" and cancelled.terminal and not proceeds(cancelled)
    assert pipe.wait(opened.id, timeout=10).status == "cancelled"

    with pytest.raises(ClientError) as missing:
        pipe.get(str(uuid.uuid4()))
    assert missing.value.status == 404 and missing.value.error == "not_found"
    with pytest.raises(ClientError) as not_an_auditor:
        pipe.verify_audit()
    assert not_an_auditor.value.status == 403
    assert live.auditor().verify_audit().ok


def test_the_client_reads_its_server_and_token_from_the_settings(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICEGATE_SERVER_URL", live.url + "/")
    monkeypatch.setenv("SLUICEGATE_TOKEN", live.pipeline_token)
    with SluicegateClient() as c:
        assert c.server_url == live.url
        assert c.open_gate(key(), ROUTINE_READ).status == "allowed"


def test_a_bad_token_is_a_client_error_not_a_retry(live: Live) -> None:
    with SluicegateClient(live.url, "sgreq_nonsense") as c:
        started = time.monotonic()
        with pytest.raises(ClientError) as err:
            c.gate(key(), PII_EXPORT, REQUESTER, timeout=30)
        assert err.value.status == 401 and err.value.error == "unauthorized"
        assert time.monotonic() - started < 5  # a 4xx is final: no retrying until the timeout


def test_the_gate_returns_at_once_for_an_allowed_action(live: Live) -> None:
    started = time.monotonic()
    answer = live.pipeline().gate(key(), ROUTINE_READ, {"job": "reports.daily"}, timeout=30)
    assert answer.status == "allowed" and proceeds(answer)
    assert time.monotonic() - started < 2.0
    assert live.st.store.count() == 0


def test_the_gate_raises_for_an_action_the_policy_denies(live: Live) -> None:
    with pytest.raises(GateRefused) as refused:
        live.pipeline().gate(key(), SECRET_EXPORT, {"job": "keys.export"}, timeout=30)
    assert refused.value.answer.status == "denied"
    assert "Secrets never leave the warehouse." in str(refused.value)


def test_the_gate_raises_naming_the_reviewer_and_comment_when_denied(live: Live) -> None:
    job = f"crm_export.{uuid.uuid4().hex[:8]}"
    outcome: dict[str, Any] = {}

    def step() -> None:
        try:
            outcome["answer"] = live.pipeline().gate(key(), PII_EXPORT, {**REQUESTER, "job": job})
        except Exception as err:
            outcome["error"] = err

    runner = threading.Thread(target=step)
    runner.start()
    try:
        rid = wait_for_pending(live, job)
        live.reviewer("alice").decide(rid, "deny", "no DPA with this partner")
    finally:
        runner.join(timeout=30)
    assert not runner.is_alive()
    err = outcome.get("error")
    assert isinstance(err, GateRefused), outcome
    assert "alice" in str(err) and "no DPA with this partner" in str(err)
    assert err.answer.status == "denied"


def test_the_gate_returns_approved_after_decisions_from_another_thread(live: Live) -> None:
    job = f"crm_export.{uuid.uuid4().hex[:8]}"
    errors: list[BaseException] = []

    def reviewers() -> None:
        try:
            rid = wait_for_pending(live, job)
            live.reviewer("alice").decide(rid, "approve")
            live.reviewer("bob").decide(rid, "approve", "ok for Q3")
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    helper = threading.Thread(target=reviewers)
    helper.start()
    started = time.monotonic()
    try:
        answer = live.pipeline().gate(key(), PII_EXPORT, {**REQUESTER, "job": job}, timeout=30)
    finally:
        helper.join(timeout=30)
    assert not errors, errors
    assert answer.status == "approved" and proceeds(answer) and answer.approvals == 2
    assert time.monotonic() - started < 15


def test_a_gate_still_pending_at_its_timeout_fails_closed(live: Live) -> None:
    started = time.monotonic()
    with pytest.raises(ClientError) as err:
        live.pipeline().gate(key(), GRANT, {"job": "grants.apply"}, timeout=1)
    elapsed = time.monotonic() - started
    assert not isinstance(err.value, GateRefused)
    assert err.value.status == 408 and "still pending" in str(err.value)
    assert 0.9 <= elapsed < 5.0, elapsed


def test_a_gate_opened_on_a_dead_server_is_unreachable() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        SluicegateClient(dead, "sgreq_x") as c,
        pytest.raises(UnreachableError, match="cannot reach"),
    ):
        c.open_gate(key(), PII_EXPORT, REQUESTER)


def test_an_unreachable_server_is_an_unreachable_error() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with SluicegateClient(dead, "sgreq_x") as c:
        with pytest.raises(UnreachableError) as err:
            c.get(str(uuid.uuid4()))
        assert dead in str(err.value)
        with pytest.raises(UnreachableError):
            c.list()


def test_the_gate_fails_closed_at_its_deadline_when_the_server_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The shortest backoffs (0.25 s, 0.5 s, 1 s, ...) leave the third sleep straddling the
    # deadline: the gate must still give up at its deadline, not a whole backoff later.
    monkeypatch.setattr("sluicegate.gate.machine.random.uniform", lambda low, high: low)
    dead = f"http://127.0.0.1:{free_port()}"
    with SluicegateClient(dead, "sgreq_x") as c:
        started = time.monotonic()
        with pytest.raises(UnreachableError):
            c.gate(key(), PII_EXPORT, REQUESTER, timeout=1)
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.5, elapsed


# ----------------------------------------------------------------------------- async


def test_the_async_client_opens_waits_and_sees_the_decision(app: Any) -> None:
    st = app.state.sluicegate
    pipeline = st.store.create_token("airflow-prod", "request")
    alice = st.store.create_token("alice", "review")
    bob = st.store.create_token("bob", "review")

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            AsyncSluicegateClient("http://sluicegate.test", pipeline, transport=transport) as c,
            httpx.AsyncClient(transport=transport, base_url="http://sluicegate.test") as raw,
        ):
            k = key()
            opened = await c.open_gate(k, PII_EXPORT, REQUESTER)
            assert opened.status == "pending"
            assert (await c.open_gate(k, PII_EXPORT, REQUESTER)).id == opened.id
            assert (await c.get(opened.id)).approvals == 0
            assert (await c.wait(opened.id, timeout=0.2)).status == "pending"

            async def decide(token: str) -> None:
                await asyncio.sleep(0.3)
                r = await raw.post(
                    f"/api/v1/requests/{opened.id}/decisions",
                    json={"verdict": "approve"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 200, r.text

            started = time.monotonic()
            done, *_ = await asyncio.gather(
                AsyncGate(c).wait(opened.id, timeout=20, settle=False),
                decide(alice),
                decide(bob),
            )
            assert done.kind is OutcomeKind.APPROVED and done.proceed
            assert time.monotonic() - started < 4.0  # woken, not by the 5 s re-check

            with pytest.raises(ClientError) as err:
                await c.get(str(uuid.uuid4()))
            assert err.value.status == 404

    asyncio.run(scenario())


def test_the_async_client_says_unreachable_and_waits_fail_closed() -> None:
    dead = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        async with AsyncSluicegateClient(dead, "sgreq_x") as c:
            with pytest.raises(UnreachableError):
                await c.open_gate(key(), PII_EXPORT, REQUESTER)
            started = time.monotonic()
            with pytest.raises(UnreachableError):
                await AsyncGate(c).wait(str(uuid.uuid4()), timeout=1, settle=False)
            assert 0.9 <= time.monotonic() - started < 3.0

    asyncio.run(scenario())


@pytest.mark.parametrize("on_timeout", ["allow", "deny"])
def test_a_deadline_decides_as_the_rule_says(
    sqlite_url: str, tmp_path: Path, on_timeout: str
) -> None:
    # The app served by uvicorn in a thread, as for the other sync tests: its lifespan runs
    # the expiry sweep that ends the request nobody decides.
    policy = expiring_policy(tmp_path, on_timeout)
    app = create_app(load_settings(db_url=sqlite_url, policy=str(policy)))
    try:
        token = create_token(sqlite_url, "airflow-prod", "request", cwd=tmp_path)
        with ThreadServer(app) as server, SluicegateClient(server.url, token) as client:
            if on_timeout == "allow":
                answer = client.gate("k-deadline", PII_EXPORT, {"owner": "carol"}, timeout=20)
                assert answer.status == "expired" and answer.on_timeout == "allow"
                assert proceeds(answer)
            else:
                with pytest.raises(GateRefused) as refused:
                    client.gate("k-deadline", PII_EXPORT, {"owner": "carol"}, timeout=20)
                assert refused.value.answer.status == "expired"
        kinds = [e["kind"] for e in audit_rows(sqlite_url)]
        assert ("gate.released" in kinds) == (on_timeout == "allow")
    finally:
        app.state.sluicegate.store.close()


def audit_rows(url: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from sluicegate.store import Store
    from sluicegate.store.schema import audit_events

    with Store(url) as store, store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(audit_events))]


def test_a_plain_http_client_loads_no_ca_and_trusts_no_certificate() -> None:
    # A task process that talks to http:// skips loading the CA bundle (30-50 ms); the context
    # it holds instead verifies hostnames and certificates against no CA: it fails closed.
    from sluicegate._http import tls_for as _tls

    plain = _tls("http://127.0.0.1:8080")
    assert plain.cert_store_stats()["x509_ca"] == 0
    assert plain.verify_mode is ssl.CERT_REQUIRED and plain.check_hostname
    verified = _tls("HTTPS://sluicegate.example")
    assert verified.cert_store_stats()["x509_ca"] > 0
    assert verified.verify_mode is ssl.CERT_REQUIRED and verified.check_hostname


class _Proxy:
    """A forward proxy on 127.0.0.1 that answers every request itself and notes its line."""

    def __init__(self) -> None:
        import http.server

        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.requestline)
                body = b'{"id": "r1", "status": "allowed", "rule": "routine"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_named_in_the_environment_carries_the_calls(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    # The client reads proxies only when a proxy variable is set (a new client no longer
    # scans the whole environment), so setting one must still route both clients through it.
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy", "NO_PROXY", "no_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    proxy = _Proxy()
    try:
        # .invalid never resolves: the answer can only have come through the proxy
        with (
            SluicegateClient("http://sluicegate.invalid", "sgreq_x", timeout=5) as direct,
            pytest.raises(UnreachableError),
        ):
            direct.get("r1")
        monkeypatch.setenv(variable, proxy.url)
        with SluicegateClient("http://sluicegate.invalid", "sgreq_x", timeout=5) as client:
            assert client.get("r1").status == "allowed"

        async def through_async() -> str:
            async with AsyncSluicegateClient("http://sluicegate.invalid", "sgreq_x") as c:
                return (await c.get("r1")).status

        assert asyncio.run(through_async()) == "allowed"
    finally:
        proxy.close()
    assert proxy.seen == ["GET http://sluicegate.invalid/api/v1/requests/r1 HTTP/1.1"] * 2
