"""Property-based tests over the app's own OpenAPI document (schemathesis).

Whatever a client sends to any operation, with valid credentials, the server never answers
5xx, every 4xx is the JSON error body ``{"error", "detail"}``, and every answer is one the
document describes: its status, content type, headers and body (schemathesis' conformance
checks), so that a client generated from the document understands every answer it gets.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from sluicegate.model import Action, Requester
from sluicegate.server import create_app
from sluicegate.settings import load_settings
from tests.core.support.paths import ROOT

PII_EXPORT = json.loads((ROOT / "examples" / "actions" / "pii-export.json").read_text())
ROUTINE_READ = json.loads((ROOT / "examples" / "actions" / "routine-read.json").read_text())
#: Few, and derandomized: the suite's run is short and the same every time (the coverage phase
#: adds the schema's edge cases deterministically); the long fuzz is run by hand.
EXAMPLES_PER_OPERATION = 10

# Built at import (collection) time, because @schema.parametrize needs the schema then. The
# database is a fresh SQLite file; no SLUICEGATE_* variable or ./sluicegate.yaml leaks in.
_tmp = tempfile.mkdtemp(prefix="sluicegate-schema-")
atexit.register(shutil.rmtree, _tmp, ignore_errors=True)
_clean = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
with mock.patch.dict(os.environ, _clean, clear=True):
    _empty_config = Path(_tmp) / "sluicegate.yaml"
    _empty_config.write_text("{}\n")
    app = create_app(
        load_settings(
            _empty_config,
            db_url=f"sqlite:///{_tmp}/sluicegate.db",
            policy=str(ROOT / "examples" / "policy.yaml"),
        )
    )
_store = app.state.sluicegate.store
REQUEST_TOKEN = _store.create_token("airflow-prod", "request")
REVIEW_TOKEN = _store.create_token("alice", "review")
AUDIT_TOKEN = _store.create_token("internal-audit", "audit")

schema = schemathesis.openapi.from_asgi("/openapi.json", app)

#: Calls made per operation, and the statuses seen (checked by the last test).
CALLS: Counter[str] = Counter()
STATUSES: dict[str, Counter[int]] = {}


def _token_for(case: Any) -> str:
    """A pipeline's token for what pipelines post (open, cancel, ...), an auditor's for the
    audit, a reviewer's for decisions and for reading."""
    path, method = case.operation.path, case.operation.method.upper()
    if path.startswith("/api/v1/audit"):
        return AUDIT_TOKEN
    if method == "POST" and not path.endswith("/decisions"):
        return REQUEST_TOKEN
    return REVIEW_TOKEN


def _fresh_request_id() -> str:
    """A new pending request (pii-export: alice may decide it, airflow-prod may cancel it)."""
    answer = app.state.sluicegate.workflow.open(
        idempotency_key=f"schema:{uuid.uuid4()}",
        action=Action.model_validate(PII_EXPORT),
        requester=Requester(
            orchestrator="airflow", job="schema.fuzz", owner="carol", principal="airflow-prod"
        ),
    )
    assert answer.request is not None
    return str(answer.request.id)


def error_body(ctx: Any, response: Any, case: Any) -> None:
    """Every 4xx answer of the API is JSON with exactly the keys error and detail."""
    if 400 <= response.status_code < 500 and case.operation.path.startswith("/api/"):
        body = response.json()
        assert isinstance(body, dict) and set(body) == {"error", "detail"}, (
            f"{case.operation.label} answered {response.status_code} with {response.text[:300]!r}"
        )


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_the_server_fail(case: Any) -> None:
    label = case.operation.label
    if "request_id" in (case.path_parameters or {}) and CALLS[label] % 2:
        # Generated ids are random (a 404): every other case goes to a real pending request, so
        # that fuzzed bodies and parameters reach the decision, cancel and wait logic too.
        case.path_parameters["request_id"] = _fresh_request_id()
    if case.operation.path.endswith("/wait"):
        # A long poll may legitimately wait up to 300 s (30 by default); keep the run short.
        query = case.query if isinstance(case.query, dict) else {}
        try:
            if float(query.get("timeout", 30)) > 0.05:
                query["timeout"] = 0.05
        except (TypeError, ValueError):
            pass  # not a number: the server must say 422
        case.query = query
    headers = {"Authorization": f"Bearer {_token_for(case)}"}
    # Every check schemathesis has (the status, content type, headers and body of each answer
    # as the document says; no 5xx; a call without the token refused; 405s naming the right
    # methods; ...) and this API's error body, but two that judge inputs rather than answers:
    # whether all the document allows is accepted (rules no JSON schema states refuse some
    # such bodies with 422: a rule that requires a comment to deny, text blank once trimmed,
    # NUL, OpenLineage's own rules for an event) and whether all it rules out is refused (a
    # query parameter given twice is read as its last value, as FastAPI reads it). Both ran in
    # the long fuzz; what they found that a schema can state is tested below.
    response = case.call_and_validate(
        headers=headers,
        additional_checks=[error_body],
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )
    CALLS[label] += 1
    STATUSES.setdefault(label, Counter())[response.status_code] += 1


ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}


def test_the_document_names_the_token_its_scopes_and_every_error() -> None:
    """What a client generated from /openapi.json needs: how to authenticate (a bearer token,
    and the scope each operation needs), and every error it can get, as the body it gets."""
    doc = TestClient(app).get("/openapi.json").json()
    bearer = doc["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert all(f"`{scope}`" in bearer["description"] for scope in ("request", "review", "audit"))
    error = doc["components"]["schemas"]["ErrorOut"]
    assert set(error["required"]) == set(error["properties"]) == {"error", "detail"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    for (method, path), op in ops.items():
        errors = {int(s): r for s, r in op["responses"].items() if int(s) >= 400}
        assert all(r.get("content") == ERROR_REF for r in errors.values()), (method, path)
        if path.startswith("/api/"):
            assert {401, 503} <= set(errors), (method, path, sorted(errors))
            assert "WWW-Authenticate" in errors[401]["headers"], (method, path)
        if method == "POST":
            assert 413 in errors, (method, path)
    scopes = {key: op["security"] for key, op in ops.items() if "security" in op}
    assert scopes[("POST", "/api/v1/requests")] == [{"bearer": ["request"]}]
    assert scopes[("GET", "/api/v1/audit")] == [{"bearer": ["audit"]}]
    assert scopes[("GET", "/api/v1/requests/{request_id}")] == [{"bearer": []}]
    assert ("GET", "/healthz") not in scopes
    expected = {
        ("POST", "/api/v1/requests"): {400, 401, 403, 409, 413, 422, 503},
        ("POST", "/api/v1/requests/{request_id}/decisions"): {400, 401, 403, 404, 409, 413, 422},
        ("POST", "/api/v1/requests/{request_id}/release"): {401, 403, 404, 409, 413},
        ("GET", "/api/v1/audit/verify"): {401, 403, 429, 503},
        ("GET", "/readyz"): {503},
    }
    for key, statuses in expected.items():
        documented = {int(s) for s in ops[key]["responses"] if int(s) >= 400}
        assert statuses <= documented, (key, sorted(documented))
    verify = ops[("GET", "/api/v1/audit/verify")]["responses"]["429"]
    assert "Retry-After" in verify["headers"]


def test_what_the_document_rules_out_is_refused() -> None:
    """Inputs the long fuzz found taken though the document rules them out: an integer given
    as a boolean, a time given as a number; and a 405 must name every method of its path."""
    client = TestClient(app)
    body = {
        "idempotency_key": f"schema:{uuid.uuid4()}",
        "action": ROUTINE_READ,
        "requester": {"map_index": False},
    }
    r = client.post("/api/v1/requests", json=body, headers=_bearer(REQUEST_TOKEN))
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("requester.map_index:"), r.text
    r = client.get("/api/v1/audit", params={"until": "0.5"}, headers=_bearer(AUDIT_TOKEN))
    assert r.status_code == 422, r.text
    assert r.json()["detail"].endswith(
        "until: give a time as RFC 3339, e.g. 2025-01-31T00:00:00Z"
    ), r.text
    r = client.get(
        "/api/v1/audit", params={"until": "2030-01-01T00:00:00Z"}, headers=_bearer(AUDIT_TOKEN)
    )
    assert r.status_code == 200, r.text
    r = client.request("OPTIONS", "/api/v1/requests", headers=_bearer(REQUEST_TOKEN))
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == "GET, POST"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_operation_was_exercised(request: pytest.FixtureRequest) -> None:
    """Nothing was silently skipped: each operation ran, with enough generated cases."""
    generated = [
        item
        for item in request.session.items
        if item.module is request.module and item.name != request.node.name
    ]
    if not generated:  # e.g. `-k` chose this test alone: there is nothing to count
        pytest.skip("the schemathesis tests were not selected in this run")
    operations = [result.ok().label for result in schema.get_all_operations()]
    assert len(operations) >= 10, operations
    missing = [op for op in operations if CALLS[op] < 5]
    assert not missing, {op: CALLS[op] for op in missing}
    print({op: dict(STATUSES[op]) for op in operations})
    # The generated cases reached past authentication and validation into the routes.
    successes = sum(c[s] for c in STATUSES.values() for s in c if 200 <= s < 300)
    assert successes >= len(operations), STATUSES
