"""The gate (sluicegate.gate): its state machine alone, and against the real server.

Alone, the machine is driven through a scripted client and a fake clock, with stamina in its
testing mode (no sleeping): every outcome, retries until the deadline, errors that are not
retried, reattaching, a carried request that is not this gate's, a release that fails. Against
the real app (uvicorn in a thread for the blocking gate, ``httpx.ASGITransport`` for the async
one): what an adapter sees, and the audit log's ``gate.released``.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina

from sluicegate.calls import ApiCall
from sluicegate.client import AsyncSluicegateClient, SluicegateClient
from sluicegate.exceptions import ActionError, ClientError, ForeignRequestError, UnreachableError
from sluicegate.gate import AsyncGate, Gate, GateOutcome, OutcomeKind
from sluicegate.gate.machine import BACKOFF, Retry
from sluicegate.idempotency import gate_key
from sluicegate.model import Action, proceeds
from sluicegate.server import create_app
from sluicegate.settings import load_settings
from tests.core.support.serverproc import (
    GRANT,
    PII_EXPORT,
    ROUTINE_READ,
    SECRET_EXPORT,
    ThreadServer,
    expiring_policy,
)

STEP = {"orchestrator": "dagster", "job": "crm.export", "run_id": "r1", "step": "export"}
FINGERPRINT = Action.model_validate(PII_EXPORT).fingerprint()


# ------------------------------------------------------------------ the machine, scripted


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A client that answers each call with the next of ``answers`` (an answer's JSON, or an
    error to raise), noting each call. A call costs ``cost`` seconds of the fake clock, and a
    long poll its whole timeout, as the server holds it."""

    def __init__(self, clock: Clock, *answers: Any, cost: float = 0.0) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.cost = cost
        self.calls: list[tuple[str, str]] = []

    def call(self, call: ApiCall[Any]) -> Any:
        self.calls.append((call.method, call.path.removeprefix("/api/v1/requests")))
        self.clock.now += self.cost
        if call.path.endswith("/wait"):
            assert call.params is not None
            self.clock.now += float(call.params["timeout"])
        if not self.answers:
            raise AssertionError(f"no answer scripted for {call.method} {call.path}")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return call.read(answer)


class AsyncScripted:
    """:class:`Scripted`, awaited."""

    def __init__(self, scripted: Scripted) -> None:
        self.scripted = scripted

    async def call(self, call: ApiCall[Any]) -> Any:
        await asyncio.sleep(0)
        return self.scripted.call(call)


def answer(status: str, **fields: Any) -> dict[str, Any]:
    """A request's JSON as the server answers it."""
    return {
        "id": "r-1",
        "status": status,
        "rule": "pii-export",
        "fingerprint": FINGERPRINT,
        "requester": {**STEP, "principal": "dagster-prod"},
        **fields,
    }


APPROVED = answer(
    "approved",
    decisions=[
        {"reviewer": r, "verdict": "approve", "comment": "", "channel": "api", "decided_at": t}
        for r, t in (("alice", "2026-01-01T00:00:00Z"), ("bob", "2026-01-01T00:01:00Z"))
    ],
)
DENIED = answer(
    "denied",
    decisions=[
        {
            "reviewer": "bob",
            "verdict": "deny",
            "comment": "not today",
            "channel": "slack",
            "decided_at": "2026-01-01T00:00:00Z",
        }
    ],
)
POLICY_DENIED = {
    "id": "p-1",
    "status": "denied",
    "rule": "no-secrets",
    "reason": "Secrets never leave the warehouse.",
}
UNREACHABLE = UnreachableError("cannot reach http://sluicegate.test: refused")


@pytest.fixture(autouse=True)
def _no_sleeping() -> Iterator[None]:
    """stamina's testing mode: its waits take no time; attempts are bounded by the deadline."""
    with stamina.set_testing(True, attempts=1000):
        yield


@pytest.fixture(params=["sync", "async"])
def drive(request: pytest.FixtureRequest) -> Any:
    """Runs a gate method, blocking or awaited: ``drive(scripted, "open", *args, **kw)``."""

    def run(scripted: Scripted, method: str, *args: Any, **kw: Any) -> Any:
        if request.param == "sync":
            return getattr(Gate(scripted, clock=scripted.clock), method)(*args, **kw)
        gate = AsyncGate(AsyncScripted(scripted), clock=scripted.clock)
        return asyncio.run(getattr(gate, method)(*args, **kw))

    return run


@pytest.mark.parametrize(
    ("given", "kind", "proceed", "released", "message"),
    [
        (
            {"id": "p", "status": "allowed", "rule": "routine-reads"},
            OutcomeKind.ALLOWED,
            True,
            False,
            "allowed by rule 'routine-reads'",
        ),
        (
            POLICY_DENIED,
            OutcomeKind.DENIED,
            False,
            False,
            "denied by rule 'no-secrets': Secrets never leave the warehouse.",
        ),
        (
            DENIED,
            OutcomeKind.DENIED,
            False,
            False,
            "request r-1 was denied by bob: not today (rule 'pii-export')",
        ),
        (
            APPROVED,
            OutcomeKind.APPROVED,
            True,
            True,
            "request r-1 was approved by alice, bob (rule 'pii-export')",
        ),
        (
            answer("expired", on_timeout="allow"),
            OutcomeKind.EXPIRED,
            True,
            True,
            "request r-1 was expired (rule 'pii-export'; on_timeout: allow)",
        ),
        (
            answer("expired"),
            OutcomeKind.EXPIRED,
            False,
            False,
            "request r-1 was expired (rule 'pii-export'; on_timeout: deny)",
        ),
        (
            answer("cancelled"),
            OutcomeKind.CANCELLED,
            False,
            False,
            "request r-1 was cancelled (rule 'pii-export')",
        ),
    ],
    ids=[
        "allowed",
        "policy-denied",
        "denied",
        "approved",
        "expired-allow",
        "expired-deny",
        "cancelled",
    ],
)
def test_each_end_of_a_gate_is_its_outcome_and_only_a_passed_request_is_released(
    drive: Any,
    given: dict[str, Any],
    kind: OutcomeKind,
    proceed: bool,
    released: bool,
    message: str,
) -> None:
    clock = Clock()
    client = Scripted(clock, given, *([answer("approved")] if released else []))
    outcome = drive(client, "open", "k", PII_EXPORT, STEP)
    assert (outcome.kind, outcome.proceed, outcome.released) == (kind, proceed, released)
    assert outcome.message == message
    assert outcome.proceed == proceeds(given["status"], given.get("on_timeout", "deny"))
    expected = [("POST", "")] + ([("POST", "/r-1/release")] if released else [])
    assert client.calls == expected
    if kind is OutcomeKind.DENIED:
        assert (outcome.denied_by, outcome.reason) == (
            ("bob", "not today") if given is DENIED else (None, given["reason"])
        )


def test_a_pending_request_is_waited_for_until_it_ends(drive: Any) -> None:
    clock = Clock()
    client = Scripted(clock, answer("pending"), answer("pending"), APPROVED, answer("approved"))
    outcome = drive(client, "open", "k", PII_EXPORT, STEP, wait=True, timeout=600)
    assert outcome.kind is OutcomeKind.APPROVED and outcome.proceed and outcome.released
    assert outcome.approvers == ("alice", "bob")
    assert client.calls == [
        ("POST", ""),
        ("GET", "/r-1/wait"),
        ("GET", "/r-1/wait"),
        ("POST", "/r-1/release"),
    ]


def test_without_wait_a_pending_request_is_returned_pending(drive: Any) -> None:
    client = Scripted(Clock(), answer("pending"))
    outcome = drive(client, "open", "k", PII_EXPORT, STEP)
    assert outcome.kind is OutcomeKind.PENDING and not outcome.proceed
    assert outcome.message == "request r-1 is still pending under rule 'pii-export'"
    assert client.calls == [("POST", "")]


def test_a_wait_ends_pending_at_its_deadline_and_polls_no_longer_than_it(drive: Any) -> None:
    clock = Clock()
    start = clock.now
    client = Scripted(clock, answer("pending"), answer("pending"), answer("pending"))
    outcome = drive(client, "open", "k", PII_EXPORT, STEP, wait=True, timeout=45)
    assert outcome.kind is OutcomeKind.PENDING and not outcome.proceed and not outcome.released
    # a 30 s poll, then one of the 15 s left: the gate ends at its deadline, not a poll later
    assert client.calls == [("POST", ""), ("GET", "/r-1/wait"), ("GET", "/r-1/wait")]
    assert clock.now - start == pytest.approx(45)


def test_a_wait_polls_no_longer_than_its_poll_seconds(drive: Any) -> None:
    clock = Clock()
    start = clock.now
    client = Scripted(clock, answer("pending"), answer("pending"), APPROVED)
    outcome = drive(client, "wait", "r-1", settle=False, poll_seconds=7)
    assert outcome.kind is OutcomeKind.APPROVED and outcome.proceed and not outcome.released
    assert client.calls == [("GET", "/r-1/wait")] * 3
    assert clock.now - start == pytest.approx(21)  # three polls of 7 s, not of 30 s


@pytest.mark.parametrize(
    "error",
    [
        UNREACHABLE,
        ClientError(503, "unavailable", "the database is unavailable"),
        ClientError(502, "http_error", "Bad Gateway"),  # a proxy in front of the server
    ],
    ids=["unreachable", "503", "proxy-502"],
)
def test_a_transient_error_is_retried_until_the_deadline_then_raised(
    drive: Any, error: ClientError
) -> None:
    clock = Clock()
    start = clock.now
    client = Scripted(clock, *[error] * 10, cost=3.0)
    with pytest.raises(ClientError) as raised:
        drive(client, "open", "k", PII_EXPORT, STEP, timeout=10)
    assert raised.value is error
    # attempts at 0, 3, 6 and 9 s; the fourth fails past the deadline: no fifth
    assert len(client.calls) == 4 and clock.now - start == pytest.approx(12)


def test_a_server_that_comes_back_is_asked_again_while_waiting(drive: Any) -> None:
    clock = Clock()
    client = Scripted(
        clock, answer("pending"), UNREACHABLE, UNREACHABLE, APPROVED, answer("approved"), cost=1
    )
    outcome = drive(client, "open", "k", PII_EXPORT, STEP, wait=True, timeout=600)
    assert outcome.kind is OutcomeKind.APPROVED and outcome.released
    assert [path for _, path in client.calls].count("/r-1/wait") == 3


@pytest.mark.parametrize(
    "error",
    [
        ClientError(401, "unauthorized", "no such token"),
        ClientError(409, "conflict", "the key is another principal's gate"),
        ClientError(500, "internal", "a bug"),
        ClientError(500, "misconfigured", "no policy"),
    ],
    ids=["401", "409", "500-internal", "500-misconfigured"],
)
def test_an_error_that_asking_again_cannot_change_is_raised_at_once(
    drive: Any, error: ClientError
) -> None:
    client = Scripted(Clock(), error, answer("allowed"))
    with pytest.raises(ClientError) as raised:
        drive(client, "open", "k", PII_EXPORT, STEP, timeout=600)
    assert raised.value is error and len(client.calls) == 1


def test_an_action_the_server_would_refuse_is_refused_before_anything_is_sent(
    drive: Any,
) -> None:
    client = Scripted(Clock())
    with pytest.raises(ActionError, match="kind"):
        drive(client, "open", "k", {"kind": "DROP TABLE"}, STEP)
    assert client.calls == []


def test_a_release_that_fails_only_logs_and_the_step_goes_on(
    drive: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = Scripted(Clock(), APPROVED, ClientError(503, "unavailable", "database down"))
    with caplog.at_level(logging.WARNING, logger="sluicegate.gate"):
        outcome = drive(client, "open", "k", PII_EXPORT, STEP, timeout=600)
    assert outcome.proceed and outcome.kind is OutcomeKind.APPROVED and not outcome.released
    assert client.calls == [("POST", ""), ("POST", "/r-1/release")]  # once: never retried
    assert "could not record the release of request r-1" in caplog.text


def test_an_answer_obtained_elsewhere_is_settled_and_released_once(drive: Any) -> None:
    client = Scripted(Clock(), answer("pending"), APPROVED, answer("approved"))
    waited = drive(client, "wait", "r-1", settle=False)
    assert waited.kind is OutcomeKind.APPROVED and not waited.released
    assert client.calls == [("GET", "/r-1/wait"), ("GET", "/r-1/wait")]
    settled = drive(client, "settle", waited.request.model_dump(mode="json"))  # an event's JSON
    assert settled.proceed and settled.released
    assert client.calls[-1] == ("POST", "/r-1/release")


def test_a_carried_request_of_this_step_and_action_is_taken_up(drive: Any) -> None:
    client = Scripted(Clock(), APPROVED, answer("approved"))
    outcome = drive(client, "attach", "r-1", PII_EXPORT, STEP)
    assert outcome.kind is OutcomeKind.APPROVED and outcome.released
    assert client.calls == [("GET", "/r-1"), ("POST", "/r-1/release")]


@pytest.mark.parametrize(
    ("carried", "why"),
    [
        (
            answer("approved", requester={**STEP, "orchestrator": "airflow"}),
            "not opened by dagster",
        ),
        (answer("approved", requester={**STEP, "step": "other"}), "opened for step 'other'"),
        (answer("approved", fingerprint="sha256:" + "0" * 64), "opened for a different action"),
        (answer("approved", requester=None), "not opened by dagster"),
    ],
    ids=["orchestrator", "step", "action", "no-requester"],
)
def test_a_carried_request_of_another_gate_is_refused_and_nothing_is_released(
    drive: Any, carried: dict[str, Any], why: str
) -> None:
    client = Scripted(Clock(), carried)
    with pytest.raises(ForeignRequestError, match=why) as refused:
        drive(client, "attach", "r-1", PII_EXPORT, STEP)
    assert "the run names request r-1 for step 'export'" in str(refused.value)
    assert client.calls == [("GET", "/r-1")]


def test_a_gate_key_names_the_step_and_ends_with_the_actions_digest() -> None:
    key = gate_key("airflow", "crm", "manual__1", "export", -1, action=PII_EXPORT)
    assert key == f"airflow:crm:manual__1:export:-1:{FINGERPRINT.removeprefix('sha256:')[:16]}"
    changed = gate_key(
        "airflow", "crm", "manual__1", "export", -1, action={**PII_EXPORT, "summary": "x"}
    )
    assert changed.rsplit(":", 1)[0] == key.rsplit(":", 1)[0] and changed != key
    with pytest.raises(ActionError):
        gate_key("dagster", "r1", "export", action={"kind": ""})


def test_the_retry_rule_waits_no_longer_than_the_time_left() -> None:
    clock = Clock()
    retry = Retry(clock.now + 3, clock)
    assert retry(ClientError(404, "not_found", "no request")) is False
    assert retry(ValueError("not an API error")) is False
    wait = retry(UNREACHABLE)
    assert isinstance(wait, float) and 0 < wait <= 3
    clock.now += 2.9
    wait = retry(UNREACHABLE)
    assert isinstance(wait, float) and wait <= 0.1 + 1e-9
    clock.now += 0.1
    assert retry(UNREACHABLE) is False  # the deadline: the last error stands
    far = Retry(clock.now + 10 * BACKOFF["wait_max"], clock)
    assert far(UNREACHABLE) is True  # stamina's own backoff, which never passes wait_max
    assert Retry(None, clock)(UNREACHABLE) is True


# ------------------------------------------------------------------ against the real server


# No SLUICEGATE_* variable or ./sluicegate.yaml of the developer's leaks in.
pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture
def served(app: Any) -> Iterator[str]:
    with ThreadServer(app) as server:
        yield server.url


def released(app: Any, request_id: str) -> int:
    """How many ``gate.released`` rows the audit log holds for ``request_id``."""
    from sqlalchemy import func, select

    from sluicegate.store.schema import audit_events

    query = select(func.count()).where(
        audit_events.c.kind == "gate.released", audit_events.c.request_id == request_id
    )
    with app.state.sluicegate.store.read() as conn:
        return int(conn.execute(query).scalar_one())


def decide_when_pending(app: Any, url: str, job: str, *verdicts: tuple[str, str, str]) -> Any:
    """A thread that decides the pending request of ``job`` once it exists."""
    st = app.state.sluicegate

    def run() -> None:
        deadline = time.monotonic() + 20
        with SluicegateClient(url, st.store.create_token("alice", "review")) as alice:
            while time.monotonic() < deadline:
                items = alice.list(job=job, status="pending").items
                if items:
                    break
                time.sleep(0.05)
            for reviewer, verdict, comment in verdicts:
                token = st.store.create_token(reviewer, "review")
                with SluicegateClient(url, token) as c:
                    c.decide(items[0].id, verdict, comment)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def key() -> str:
    return f"test:{uuid.uuid4().hex}"


def test_the_gate_against_the_server_allows_denies_and_waits_for_approval(
    app: Any, served: str
) -> None:
    token = app.state.sluicegate.store.create_token("dagster-prod", "request")
    with SluicegateClient(served, token) as client:
        gate = Gate(client)
        allowed = gate.open(key(), ROUTINE_READ, STEP)
        assert allowed.kind is OutcomeKind.ALLOWED and allowed.proceed and not allowed.released
        assert allowed.message == "allowed by rule 'routine-reads'"
        refused = gate.open(key(), SECRET_EXPORT, STEP)
        assert refused.kind is OutcomeKind.DENIED and not refused.proceed
        assert "Secrets never leave the warehouse." in refused.message

        job = f"crm.{uuid.uuid4().hex[:8]}"
        step = {**STEP, "job": job}
        k = key()
        deciding = decide_when_pending(
            app, served, job, ("alice", "approve", ""), ("bob", "approve", "ok")
        )
        try:
            approved = gate.open(k, PII_EXPORT, step, wait=True, timeout=30)
        finally:
            deciding.join(timeout=30)
        assert approved.kind is OutcomeKind.APPROVED and approved.proceed and approved.released
        assert approved.approvers == ("alice", "bob")
        assert released(app, approved.request.id) == 1

        # a retry of the step reattaches to its request: the same request, approved at once
        again = gate.open(k, PII_EXPORT, step)
        assert again.request.id == approved.request.id and again.kind is OutcomeKind.APPROVED
        # the run the sensor launches takes it up, checked against its step and action
        taken = gate.attach(approved.request.id, PII_EXPORT, step)
        assert taken.proceed and taken.request.id == approved.request.id
        with pytest.raises(ForeignRequestError, match="opened for step 'export'"):
            gate.attach(approved.request.id, PII_EXPORT, {**step, "step": "publish"})
        with pytest.raises(ForeignRequestError, match="different action"):
            gate.attach(approved.request.id, {**PII_EXPORT, "summary": "other"}, step)


def test_the_gate_against_the_server_names_who_denied_and_ends_pending_at_its_deadline(
    app: Any, served: str
) -> None:
    token = app.state.sluicegate.store.create_token("dagster-prod", "request")
    with SluicegateClient(served, token) as client:
        gate = Gate(client)
        job = f"crm.{uuid.uuid4().hex[:8]}"
        deciding = decide_when_pending(app, served, job, ("alice", "deny", "no DPA"))
        try:
            denied = gate.open(key(), PII_EXPORT, {**STEP, "job": job}, wait=True, timeout=30)
        finally:
            deciding.join(timeout=30)
        assert denied.kind is OutcomeKind.DENIED and (denied.denied_by, denied.reason) == (
            "alice",
            "no DPA",
        )
        assert f"request {denied.request.id} was denied by alice: no DPA" in denied.message
        assert released(app, denied.request.id) == 0

        started = time.monotonic()
        pending = gate.open(key(), GRANT, STEP, wait=True, timeout=0.5)
        assert pending.kind is OutcomeKind.PENDING and not pending.proceed
        assert 0.4 < time.monotonic() - started < 5
        cancelled = GateOutcome.of(client.cancel(pending.request.id, "not needed"))
        assert cancelled.kind is OutcomeKind.CANCELLED and not cancelled.proceed


def test_an_expired_request_goes_on_under_on_timeout_allow(sqlite_url: str, tmp_path: Path) -> None:
    policy = expiring_policy(tmp_path, "allow")
    app = create_app(load_settings(db_url=sqlite_url, policy=str(policy)))
    try:
        token = app.state.sluicegate.store.create_token("dagster-prod", "request")
        with ThreadServer(app) as server, SluicegateClient(server.url, token) as client:
            outcome = Gate(client).open(key(), PII_EXPORT, STEP, wait=True, timeout=20)
        assert outcome.kind is OutcomeKind.EXPIRED and outcome.proceed and outcome.released
        assert released(app, outcome.request.id) == 1
    finally:
        app.state.sluicegate.store.close()


def test_the_async_gate_waits_settles_apart_and_fails_closed(app: Any) -> None:
    st = app.state.sluicegate
    pipeline = st.store.create_token("dagster-prod", "request")
    reviewers = [st.store.create_token(name, "review") for name in ("alice", "bob")]

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            AsyncSluicegateClient("http://sluicegate.test", pipeline, transport=transport) as c,
        ):
            gate = AsyncGate(c)
            assert (await gate.open(key(), ROUTINE_READ, STEP)).kind is OutcomeKind.ALLOWED
            opened = await gate.open(key(), PII_EXPORT, STEP)
            assert opened.kind is OutcomeKind.PENDING

            async def decide(token: str) -> None:
                await asyncio.sleep(0.2)
                async with AsyncSluicegateClient(
                    "http://sluicegate.test", token, transport=transport
                ) as reviewer:
                    await reviewer.decide(opened.request.id, "approve")

            # a trigger waits without settling; the resumed step settles what it carries
            waited, *_ = await asyncio.gather(
                gate.wait(opened.request.id, settle=False), *map(decide, reviewers)
            )
            assert waited.kind is OutcomeKind.APPROVED and not waited.released
            assert released(app, opened.request.id) == 0
            settled = await gate.settle(waited.request.model_dump(mode="json"))
            assert settled.proceed and settled.released
            assert released(app, opened.request.id) == 1

            with pytest.raises(ClientError) as missing:
                await gate.wait(str(uuid.uuid4()))
            assert missing.value.status == 404  # not retried: waiting cannot make it exist

    asyncio.run(scenario())


# A task process imports the gate to gate one step: what it must not load before the first
# gate (each costs tens of milliseconds, the server side far more).
_NOT_ON_IMPORT = ("httpx", "pydantic", "sluicegate.wire", "sqlalchemy", "fastapi", "openlineage")


@pytest.mark.parametrize(
    "statement",
    [
        "import sluicegate",
        "import sluicegate.gate",
        "from sluicegate.gate import AsyncGate, Gate, GateOutcome, OutcomeKind",
        "from sluicegate.client import AsyncSluicegateClient, SluicegateClient",
    ],
)
def test_importing_the_gate_loads_no_model_http_or_server_library(statement: str) -> None:
    probe = f"{statement}\nimport sys\nprint(*sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    modules = done.stdout.split()
    loaded = {m for m in modules if m.startswith("sluicegate")} | {m.split(".")[0] for m in modules}
    assert "sluicegate" in loaded  # the probe saw the import
    assert not loaded & set(_NOT_ON_IMPORT), f"{statement!r} loaded {loaded & set(_NOT_ON_IMPORT)}"


def test_the_package_names_resolve_when_asked() -> None:

    probe = (
        "from sluicegate import Action, AsyncGate, Gate, SluicegateError, Verdict, __version__\n"
        "import sluicegate\n"
        "assert Gate is sluicegate.gate.Gate and Action is sluicegate.model.Action\n"
        "print(__version__)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == version("sluicegate")
