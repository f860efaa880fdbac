"""The gate's OpenLineage events (sluicegate.lineage.facet, .events) and their sender (.emitter).

Every event built here is validated against the OpenLineage spec, each facet against its own
schema and Sluicegate's facet against the schema the repository publishes (lineage_schema).
The emitter is tested against real HTTP: a local server that answers 201, answers 500, or
hangs, and a port nobody listens on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.serde import Serde
from openlineage.client.transport.http import HttpConfig, HttpTransport

from sluicegate import __version__
from sluicegate.exceptions import ConfigError
from sluicegate.lineage.emitter import LineageEmitter
from sluicegate.lineage.events import (
    GateFacts,
    event_dict,
    event_types_for,
    facts_for_policy_answer,
    facts_for_request,
    gate_event,
)
from sluicegate.lineage.facet import FACET_NAME, PRODUCER, SCHEMA_URL, facet_of_answer
from sluicegate.model import (
    Action,
    ApprovalRequest,
    Asset,
    Channel,
    Decision,
    ParentRun,
    Requester,
    Status,
    Verdict,
)
from tests.core.support.lineage_backend import LineageBackend, running_backend
from tests.core.support.lineage_schema import (
    SchemaError,
    event_errors,
    locations_of,
    schema_file_for,
    spec_dir,
    validate_event,
    validate_facets,
)

PARENT = ParentRun(
    namespace="airflow", name="crm_export.export_customers", run_id=uuid.UUID(int=7 << 76)
)
CUSTOMERS = Asset(
    namespace="postgres://prod:5432", name="crm.public.customers", classifications=("pii",)
)
EXPORT = Asset(namespace="s3://partner-share", name="exports/customers.csv")
ACTION = Action(
    kind="export", summary="customers to partner", inputs=(CUSTOMERS,), outputs=(EXPORT,)
)
REQUESTER = Requester(
    orchestrator="airflow",
    job="crm_export.export_customers",
    run_id="scheduled__2026-01-01",
    owner="data-eng",
    triggered_by="bob",
    principal="airflow-prod",
    parent=PARENT,
)
REVIEW_URL = "https://sluicegate.example.com/r/1"
# The export inherits `pii` from the customers table through the export job.
PROVENANCE = {
    str(EXPORT): [
        {
            "classification": "pii",
            "source": "lineage",
            "path": [
                {
                    "namespace": CUSTOMERS.namespace,
                    "name": CUSTOMERS.name,
                    "job": "crm_export.export_customers",
                }
            ],
        }
    ],
    str(CUSTOMERS): [{"classification": "pii", "source": "pipeline", "path": []}],
}
API_KEY = "sg-test-api-key-5f1b9c0e"
URL_PASSWORD = "sg-url-password-9d3e"


def _request(
    status: Status = Status.PENDING, *decisions: tuple[str, Verdict, str]
) -> ApprovalRequest:
    request = ApprovalRequest.open(
        idempotency_key="airflow:crm_export:export_customers:scheduled__2026-01-01:-1",
        action=ACTION,
        requester=REQUESTER,
        rule="pii-export",
        required_approvals=2,
        timeout=timedelta(hours=24),
    )
    made = tuple(
        Decision(
            reviewer=reviewer,
            verdict=verdict,
            comment=comment,
            channel=Channel.SLACK,
            fingerprint=request.fingerprint,
        )
        for reviewer, verdict, comment in decisions
    )
    return request.model_copy(update={"status": status, "decisions": made})


def _events(facts: GateFacts, *, opened: bool) -> list[dict[str, Any]]:
    """The wire form of each event the gate emits for this moment, every one validated."""
    out = []
    for kind in event_types_for(facts.status, opened=opened):
        event = event_dict(gate_event(facts, kind))
        validate_event(event)
        out.append(event)
    return out


def _approval(event: dict[str, Any]) -> dict[str, Any]:
    facet: dict[str, Any] = event["run"]["facets"][FACET_NAME]
    return facet


# -- events for each outcome ------------------------------------------------------------------


def test_policy_allowed_gate_starts_and_completes() -> None:
    facts = facts_for_policy_answer(ACTION, REQUESTER, status="allowed", rule=None)
    start, complete = _events(facts, opened=False)
    assert [start["eventType"], complete["eventType"]] == ["START", "COMPLETE"]
    assert start["run"]["runId"] == complete["run"]["runId"]
    assert uuid.UUID(start["run"]["runId"]).version == 7
    facet = _approval(complete)
    assert facet["status"] == "allowed"
    assert facet["requiredApprovals"] == 0 and facet["approvals"] == 0
    assert "requestId" not in facet and "reviewUrl" not in facet and "rule" not in facet


def test_pending_gate_opens_with_start() -> None:
    request = _request()
    (start,) = _events(facts_for_request(request, review_url=REVIEW_URL), opened=False)
    assert start["eventType"] == "START"
    assert start["run"]["runId"] == str(request.lineage_run_id)
    assert start["job"] == {
        "namespace": "sluicegate",
        "name": "crm_export.export_customers.approval_gate",
        "facets": start["job"]["facets"],
    }
    assert start["job"]["facets"]["jobType"]["jobType"] == "APPROVAL_GATE"
    facet = _approval(start)
    assert facet["status"] == "pending"
    assert facet["requestId"] == str(request.id)
    assert facet["rule"] == "pii-export"
    assert facet["reviewUrl"] == REVIEW_URL
    assert (facet["requiredApprovals"], facet["approvals"], facet["decisions"]) == (2, 0, [])
    assert facet["requester"] == {
        "orchestrator": "airflow",
        "job": "crm_export.export_customers",
        "runId": "scheduled__2026-01-01",
        "owner": "data-eng",
        "triggeredBy": "bob",
        "principal": "airflow-prod",
    }
    assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [CUSTOMERS.key]
    assert [(d["namespace"], d["name"]) for d in start["outputs"]] == [EXPORT.key]


def test_first_of_two_approvals_is_other_with_one_approval() -> None:
    request = _request(Status.PENDING, ("alice", Verdict.APPROVE, "ok"))
    (other,) = _events(facts_for_request(request, review_url=REVIEW_URL), opened=True)
    assert other["eventType"] == "OTHER"
    facet = _approval(other)
    assert (facet["status"], facet["approvals"], facet["requiredApprovals"]) == ("pending", 1, 2)
    (decision,) = facet["decisions"]
    assert decision["reviewer"] == "alice" and decision["verdict"] == "approve"
    assert decision["channel"] == "slack"
    assert datetime.fromisoformat(decision["decidedAt"]).utcoffset() == timedelta(0)


def test_approved_then_released_is_other_then_complete() -> None:
    request = _request(
        Status.APPROVED, ("alice", Verdict.APPROVE, ""), ("carol", Verdict.APPROVE, "")
    )
    (other,) = _events(facts_for_request(request, review_url=REVIEW_URL), opened=True)
    released = facts_for_request(request, status="released", review_url=REVIEW_URL)
    (complete,) = _events(released, opened=True)
    assert [other["eventType"], complete["eventType"]] == ["OTHER", "COMPLETE"]
    assert _approval(other)["status"] == "approved" and _approval(other)["approvals"] == 2
    assert _approval(complete)["status"] == "released"
    assert other["run"]["runId"] == complete["run"]["runId"] == str(request.lineage_run_id)


def test_denied_by_reviewer_fails_with_the_comment() -> None:
    request = _request(Status.DENIED, ("dave", Verdict.DENY, "partner contract expired"))
    (fail,) = _events(facts_for_request(request, review_url=REVIEW_URL), opened=True)
    assert fail["eventType"] == "FAIL"
    facet = _approval(fail)
    assert facet["status"] == "denied"
    assert facet["decisions"][0]["verdict"] == "deny"
    assert facet["decisions"][0]["comment"] == "partner contract expired"


def test_denied_by_policy_fails() -> None:
    facts = facts_for_policy_answer(ACTION, REQUESTER, status="denied", rule="no-secret-export")
    events = _events(facts, opened=False)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert _approval(events[-1])["status"] == "denied"
    assert _approval(events[-1])["rule"] == "no-secret-export"


@pytest.mark.parametrize("status", [Status.EXPIRED, Status.CANCELLED])
def test_expired_or_cancelled_aborts(status: Status) -> None:
    (abort,) = _events(facts_for_request(_request(status), review_url=REVIEW_URL), opened=True)
    assert abort["eventType"] == "ABORT"
    assert _approval(abort)["status"] == status.value


def test_event_types_for_every_transition() -> None:
    assert event_types_for("pending", opened=False) == ("START",)
    assert event_types_for("pending", opened=True) == ("OTHER",)
    assert event_types_for("approved", opened=True) == ("OTHER",)
    assert event_types_for("released", opened=True) == ("COMPLETE",)
    assert event_types_for("allowed", opened=False) == ("START", "COMPLETE")
    assert event_types_for("denied", opened=True) == ("FAIL",)
    assert event_types_for("denied", opened=False) == ("START", "FAIL")
    assert event_types_for("expired", opened=True) == ("ABORT",)
    assert event_types_for("cancelled", opened=True) == ("ABORT",)
    with pytest.raises(ValueError, match="'finished'"):
        event_types_for("finished", opened=True)


# -- what every event carries -----------------------------------------------------------------


def test_parent_facet_points_at_the_requesters_run() -> None:
    (start,) = _events(facts_for_request(_request(), review_url=REVIEW_URL), opened=False)
    parent = start["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == str(PARENT.run_id)
    assert (parent["job"]["namespace"], parent["job"]["name"]) == (PARENT.namespace, PARENT.name)
    assert parent["_producer"] == PRODUCER


def test_no_parent_and_no_job_name() -> None:
    requester = Requester(orchestrator="api")
    facts = facts_for_policy_answer(ACTION, requester, status="allowed", rule=None)
    start, _ = _events(facts, opened=False)
    assert "parent" not in start["run"]["facets"]
    assert start["job"]["name"] == "approval_gate"


def test_datasets_carry_their_effective_classifications() -> None:
    facts = facts_for_request(_request(), review_url=REVIEW_URL, classifications=PROVENANCE)
    (start,) = _events(facts, opened=False)
    tags = [(t["key"], t["source"]) for t in start["outputs"][0]["facets"]["tags"]["tags"]]
    assert tags == [("pii", "SLUICEGATE")]  # inherited through lineage: Sluicegate derived it
    tags = [(t["key"], t["source"]) for t in start["inputs"][0]["facets"]["tags"]["tags"]]
    assert tags == [("pii", "PIPELINE")]  # declared by the pipeline in its action
    facet = _approval(start)
    (source,) = facet["classifications"][str(EXPORT)]
    assert source["source"] == "lineage"
    assert source["path"][0]["name"] == CUSTOMERS.name
    bare = facts_for_request(_request(), review_url=REVIEW_URL)
    (start,) = _events(bare, opened=False)
    assert start["outputs"][0]["facets"] == {}  # nothing declared, nothing inherited
    assert _approval(start)["classifications"] == {}


def test_event_time_is_utc_and_must_be_aware() -> None:
    facts = facts_for_request(_request(), review_url=REVIEW_URL)
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    event = event_dict(gate_event(facts, "START", event_time=moment))
    assert event["eventTime"] == "2026-03-01T10:00:00+00:00"
    assert event["producer"] == PRODUCER
    with pytest.raises(ValueError, match="no timezone"):
        gate_event(facts, "START", event_time=datetime(2026, 3, 1, 12, 0))
    with pytest.raises(ValueError, match="RUNNING"):
        gate_event(facts, "RUNNING")


def test_facet_schema_url_names_the_published_file() -> None:
    (start,) = _events(facts_for_request(_request(), review_url=REVIEW_URL), opened=False)
    url = _approval(start)["_schemaURL"]
    path = schema_file_for(url)
    assert path.is_file(), f"{url} names {path}, which does not exist"
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["$id"] == SCHEMA_URL
    assert url == schema["$id"] + "#/$defs/SluicegateApprovalRunFacet"
    assert "SluicegateApprovalRunFacet" in schema["$defs"]
    assert path.parent.name == "1-0-1" and (path.parents[1] / "README.md").is_file()
    assert _approval(start)["_producer"] == PRODUCER
    assert PRODUCER.startswith("https://github.com/sluicegate/sluicegate/tree/v")


def test_facet_schema_url_is_pinned_to_a_release_tag_not_a_branch() -> None:
    """A consumer caches the schema by its URL: the URL must name one file forever, so it
    names the release tag that shipped the version folder (spec/facets/README.md), a release
    no later than this one, never a branch such as ``main``."""
    (start,) = _events(facts_for_request(_request(), review_url=REVIEW_URL), opened=False)
    url = _approval(start)["_schemaURL"]
    pinned = re.fullmatch(
        r"https://raw\.githubusercontent\.com/sluicegate/sluicegate/v(\d+)\.(\d+)\.(\d+)/"
        r"spec/facets/\d+-\d+-\d+/SluicegateApprovalRunFacet\.json"
        r"#/\$defs/SluicegateApprovalRunFacet",
        url,
    )
    assert pinned, f"{url} does not name a release tag"
    release = tuple(int(part) for part in __version__.split(".")[:3])
    assert tuple(int(part) for part in pinned.groups()) <= release, (url, __version__)


def test_an_allowed_gates_facet_names_who_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an adapter hands its orchestrator's OpenLineage integration for a gate the policy
    allowed (no request): the facet built from the server's answer names the requester the
    server received, never the default ``{"orchestrator": "api", "job": ""}``."""
    from fastapi.testclient import TestClient

    from sluicegate.server import create_app
    from sluicegate.settings import load_settings
    from sluicegate.wire import RequestOut
    from tests.core.support.serverproc import POLICY, ROUTINE_READ

    for name in list(os.environ):
        if name.startswith(("SLUICEGATE_", "OPENLINEAGE")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    app = create_app(load_settings(db_url=f"sqlite:///{tmp_path}/sg.db", policy=str(POLICY)))
    asked = REQUESTER.model_dump(mode="json", exclude={"principal"})
    try:
        with TestClient(app) as client:
            token = app.state.sluicegate.store.create_token("airflow-prod", "request")
            r = client.post(
                "/api/v1/requests",
                json={"idempotency_key": "k-read", "action": ROUTINE_READ, "requester": asked},
                headers={"Authorization": f"Bearer {token}"},
            )
    finally:
        app.state.sluicegate.store.close()
    answer = RequestOut.model_validate(r.json())
    assert answer.status == "allowed", r.text
    facet = Serde.to_dict(facet_of_answer(answer))
    assert facet["requester"] == {
        "orchestrator": "airflow",
        "job": "crm_export.export_customers",
        "runId": "scheduled__2026-01-01",
        "owner": "data-eng",
        "triggeredBy": "bob",
        "principal": "airflow-prod",
    }


def test_a_facet_of_an_answer_without_a_requester_names_the_one_the_adapter_sent() -> None:
    from sluicegate.wire import RequestOut

    answer = RequestOut(id=str(uuid.uuid4()), status="allowed", rule="routine-reads")
    asked = REQUESTER.model_dump(mode="json", exclude={"principal"})
    facet = Serde.to_dict(facet_of_answer(answer, requester=asked))
    assert (facet["requester"]["orchestrator"], facet["requester"]["job"]) == (
        "airflow",
        "crm_export.export_customers",
    )


# -- the validator is a real one --------------------------------------------------------------

_EXAMPLES = sorted((spec_dir() / "examples").glob("*/*.json"))


@pytest.mark.parametrize("path", _EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_spec_examples_validate(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    if path.parent.name == "tests":  # a whole event
        validate_event(document)
        return
    locations = locations_of(path.parent.name)  # a facet example, named after its schema
    assert locations
    for location in locations:
        validate_facets(document, location)


def _broken(change: str) -> dict[str, Any]:
    facts = facts_for_request(_request(), review_url=REVIEW_URL, classifications=PROVENANCE)
    event = event_dict(gate_event(facts, "START"))
    if change == "missing runId":
        del event["run"]["runId"]
    elif change == "jobType without jobType":
        del event["job"]["facets"]["jobType"]["jobType"]
    elif change == "wrong status":
        event["run"]["facets"][FACET_NAME]["status"] = "maybe"
    elif change == "missing _producer":
        del event["run"]["facets"][FACET_NAME]["_producer"]
    elif change == "unknown field in a decision":
        event["run"]["facets"][FACET_NAME]["decisions"] = [
            {
                "reviewer": "alice",
                "verdict": "approve",
                "comment": "",
                "channel": "web",
                "decidedAt": "2026-01-01T00:00:00+00:00",
                "approver": "alice",
            }
        ]
    elif change == "tags facet content":
        event["outputs"][0]["facets"]["tags"]["tags"] = "pii"
    elif change == "parent runId not a uuid":
        event["run"]["facets"]["parent"]["run"]["runId"] = "scheduled__1"
    elif change == "eventTime not a date-time":
        event["eventTime"] = "yesterday"
    elif change == "unpublished schema version":
        facet = event["run"]["facets"][FACET_NAME]
        facet["_schemaURL"] = re.sub(r"/\d+-\d+-\d+/", "/9-9-9/", facet["_schemaURL"])
    return event


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ("missing runId", "runId"),
        ("jobType without jobType", "jobType"),
        ("wrong status", "maybe"),
        ("missing _producer", "_producer"),
        ("unknown field in a decision", "approver"),
        ("tags facet content", "tags"),
        ("parent runId not a uuid", "scheduled__1"),
        ("eventTime not a date-time", "yesterday"),
        ("unpublished schema version", "9-9-9"),
    ],
)
def test_broken_events_are_rejected(change: str, names: str) -> None:
    event = _broken(change)
    with pytest.raises(SchemaError) as caught:
        validate_event(event)
    assert names in str(caught.value)


def test_the_unbroken_event_is_valid() -> None:
    assert event_errors(_broken("nothing")) == []


def test_missing_spec_fails_validation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLUICEGATE_OPENLINEAGE_SPEC", str(tmp_path / "nowhere"))
    with pytest.raises(SchemaError, match="OpenLineage JSON Schemas are missing"):
        validate_event(_broken("nothing"))


# -- the emitter, against real HTTP -----------------------------------------------------------


@pytest.fixture
def ol_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No OpenLineage configuration anywhere: environment, ./openlineage.yml, ~/.openlineage.

    The client writes ``OPENLINEAGE__TRANSPORT__TRANSPORTS__DEFAULT_HTTP__*`` into the process
    environment when ``OPENLINEAGE_URL`` is set; those are removed afterwards too.
    """
    for key in list(os.environ):
        if key.startswith("OPENLINEAGE"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    yield
    for key in list(os.environ):
        if key.startswith("OPENLINEAGE"):
            del os.environ[key]


def _event() -> Any:
    facts = facts_for_request(_request(), review_url=REVIEW_URL, classifications=PROVENANCE)
    return gate_event(facts, "START")


def _client(url: str, **config: Any) -> OpenLineageClient:
    settings = {"url": url, "auth": {"type": "api_key", "apiKey": API_KEY}, **config}
    return OpenLineageClient(transport=HttpTransport(HttpConfig.from_dict(settings)))


def _timed_emit(emitter: LineageEmitter, event: Any) -> float:
    started = time.perf_counter()
    emitter.emit(event)
    return time.perf_counter() - started


@pytest.mark.usefixtures("ol_env")
def test_healthy_backend_receives_the_event(backend: LineageBackend) -> None:
    outcomes: list[str] = []
    emitter = LineageEmitter(_client(backend.url, timeout=2), on_result=outcomes.append)
    event = _event()
    emitter.emit(event)
    assert emitter.flush(5)
    assert emitter.counts == {"sent": 1, "failed": 0, "dropped": 0}
    assert outcomes == ["sent"]
    assert emitter.close(2)
    (path, headers, body) = backend.received[0]
    assert path == "/api/v1/lineage"
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert body["run"]["runId"] == event.run.runId
    assert body["run"]["facets"][FACET_NAME] == event_dict(event)["run"]["facets"][FACET_NAME]
    validate_event(body)  # as received, with the facets the client adds (run tags)


@pytest.mark.usefixtures("ol_env")
@pytest.mark.parametrize(
    "where",
    [
        pytest.param("hang", id="slow"),
        pytest.param("fail", id="answers-500"),
        pytest.param("dead", id="dead-port"),
    ],
)
def test_unwell_backend_never_holds_the_caller(
    where: str, dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with contextlib.ExitStack() as stack:
        url = dead_url if where == "dead" else stack.enter_context(running_backend(where)).url
        _check_unwell(url, caplog)


def _check_unwell(url: str, caplog: pytest.LogCaptureFixture) -> None:
    url = url.replace("://", f"://sg:{URL_PASSWORD}@")
    emitter = LineageEmitter(_client(url, timeout=0.3, retry={"total": 0, "connect": 0, "read": 0}))
    caplog.set_level(logging.DEBUG)
    assert _timed_emit(emitter, _event()) < 0.05
    assert emitter.flush(5)
    assert emitter.counts == {"sent": 0, "failed": 1, "dropped": 0}
    assert emitter.close(2)
    warnings = [
        r for r in caplog.records if r.name == "sluicegate.lineage" and r.levelname == "WARNING"
    ]
    assert len(warnings) == 1 and "could not send" in warnings[0].getMessage()
    assert API_KEY not in caplog.text
    assert URL_PASSWORD not in caplog.text


@pytest.mark.usefixtures("ol_env")
def test_dead_backend_with_default_retries(
    dead_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # OpenLineage's HTTP transport retries ~9 s here: it does so in the emitter's thread.
    monkeypatch.setenv("OPENLINEAGE_URL", dead_url)
    monkeypatch.setenv("OPENLINEAGE_API_KEY", API_KEY)
    emitter = LineageEmitter.from_environment()
    assert emitter.enabled and emitter.transport_kind == "http"
    caplog.set_level(logging.DEBUG)
    assert _timed_emit(emitter, _event()) < 0.05
    started = time.perf_counter()
    assert not emitter.close(timeout=1)
    assert time.perf_counter() - started < 1.5
    assert emitter.counts == {"sent": 0, "failed": 0, "dropped": 1}
    assert any(
        r.name == "sluicegate.lineage" and r.levelname == "WARNING" and "not sent" in r.message
        for r in caplog.records
    )
    assert API_KEY not in caplog.text
    # urllib3 warns at every retry; from the emitter's thread those lines are left out.
    assert not [
        r for r in caplog.records if r.name.startswith("urllib3") and r.levelno >= logging.WARNING
    ]


@pytest.mark.usefixtures("ol_env")
def test_credentials_are_masked_in_failure_text() -> None:
    client = _client(f"http://sg:{URL_PASSWORD}@127.0.0.1:9", custom_headers={"X-Token": "t0k3n-x"})
    emitter = LineageEmitter(client)
    text = emitter._describe(
        RuntimeError(f"POST http://sg:{URL_PASSWORD}@host/ apiKey={API_KEY} X-Token: t0k3n-x")
    )
    emitter.close(1)
    for secret in (URL_PASSWORD, API_KEY, "t0k3n-x"):
        assert secret not in text
    assert text.startswith("RuntimeError: POST http://***@host/")


@pytest.mark.usefixtures("ol_env")
@pytest.mark.parametrize("backend", ["fail"], indirect=True)
def test_failures_are_reported_once_per_interval(
    backend: LineageBackend, caplog: pytest.LogCaptureFixture
) -> None:
    # A short rest between attempts: each failure makes the backend rest (the backoff).
    emitter = LineageEmitter(
        _client(backend.url, timeout=2, retry={"total": 0}), backoff=(0.05, 0.1)
    )
    caplog.set_level(logging.WARNING, logger="sluicegate.lineage")
    for _ in range(3):
        emitter.emit(_event())
    assert emitter.flush(5)
    assert emitter.counts["failed"] == 3 and len(backend.received) == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "sluicegate.lineage"]
    assert len(lines) == 1 and "could not send" in lines[0]
    emitter.close(2)
    lines = [r.getMessage() for r in caplog.records if r.name == "sluicegate.lineage"]
    assert lines[1] == "OpenLineage: 2 more event(s) failed since the last report"


@pytest.mark.usefixtures("ol_env")
@pytest.mark.parametrize("backend", ["hang"], indirect=True)
def test_full_queue_drops_and_counts(backend: LineageBackend) -> None:
    outcomes: list[str] = []
    emitter = LineageEmitter(
        _client(backend.url, timeout=5), max_queue=2, on_result=outcomes.append
    )
    emitter.emit(_event())
    assert backend.arrived.wait(5)  # the first is on the wire, held by the backend
    emitter.emit(_event())
    emitter.emit(_event())  # the queue holds two
    assert _timed_emit(emitter, _event()) < 0.05  # the third waiting one has no room
    assert emitter.counts == {"sent": 0, "failed": 0, "dropped": 1}
    backend.release.set()
    assert emitter.flush(5)
    assert emitter.counts == {"sent": 3, "failed": 0, "dropped": 1}
    assert Counter(outcomes) == {"sent": 3, "dropped": 1}
    assert emitter.close(2)
    emitter.emit(_event())  # after close: dropped, never raised
    assert emitter.counts["dropped"] == 2


# -- configuration, the OpenLineage way -------------------------------------------------------


@pytest.mark.usefixtures("ol_env")
def test_nothing_configured_is_disabled_and_quiet(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    emitter = LineageEmitter.from_environment()
    assert not emitter.enabled
    assert emitter.disabled_reason == "no OpenLineage transport configured"
    emitter.emit(_event())
    assert emitter.flush(1) and emitter.close(1)
    assert emitter.counts == {"sent": 0, "failed": 0, "dropped": 0}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert capsys.readouterr() == ("", "")


@pytest.mark.usefixtures("ol_env")
def test_openlineage_disabled(monkeypatch: pytest.MonkeyPatch, backend: LineageBackend) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", backend.url)
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    emitter = LineageEmitter.from_environment()
    assert not emitter.enabled and emitter.transport_kind == "noop"
    emitter.emit(_event())
    emitter.close(1)
    assert emitter.counts == {"sent": 0, "failed": 0, "dropped": 0}
    assert backend.received == []


@pytest.mark.usefixtures("ol_env")
def test_openlineage_yml_file_transport(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    config = tmp_path / "conf" / "openlineage.yml"
    config.parent.mkdir()
    config.write_text(
        f"transport:\n  type: file\n  log_file_path: {events}\n  append: true\n", encoding="utf-8"
    )
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(config))
    emitter = LineageEmitter.from_environment()
    assert emitter.enabled and emitter.transport_kind == "file"
    event = _event()
    emitter.emit(event)
    assert emitter.close(5)
    (line,) = events.read_text(encoding="utf-8").splitlines()
    written = json.loads(line)
    assert written["run"]["runId"] == event.run.runId
    validate_event(written)


@pytest.mark.usefixtures("ol_env")
def test_openlineage_yml_in_the_working_directory(tmp_path: Path) -> None:
    events = tmp_path / "cwd-events.jsonl"
    (tmp_path / "openlineage.yml").write_text(
        f"transport:\n  type: file\n  log_file_path: {events}\n  append: true\n", encoding="utf-8"
    )
    emitter = LineageEmitter.from_environment()
    emitter.emit(_event())
    assert emitter.close(5)
    assert len(events.read_text(encoding="utf-8").splitlines()) == 1


@pytest.mark.usefixtures("ol_env")
def test_transport_variables(monkeypatch: pytest.MonkeyPatch, backend: LineageBackend) -> None:
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "http")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__URL", backend.url)
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__ENDPOINT", "custom/lineage")
    emitter = LineageEmitter.from_environment()
    emitter.emit(_event())
    assert emitter.close(5)
    assert emitter.counts["sent"] == 1
    assert backend.received[0][0] == "/custom/lineage"


@pytest.mark.usefixtures("ol_env")
def test_console_asked_for_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "console")
    emitter = LineageEmitter.from_environment()
    assert emitter.enabled and emitter.transport_kind == "console"
    emitter.close(1)


@pytest.mark.usefixtures("ol_env")
def test_broken_configuration_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "http")  # and no url
    with pytest.raises(ConfigError, match="url"):
        LineageEmitter.from_environment()
