"""Property-based tests over the app's own OpenAPI document (schemathesis).

Whatever a client sends to any operation, with valid credentials, the server never answers
5xx, and every 4xx is the JSON error body ``{"error", "detail"}``.
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
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from sluicegate.model import Action, Requester
from sluicegate.server import create_app
from sluicegate.settings import load_settings

ROOT = Path(__file__).parents[2]
PII_EXPORT = json.loads((ROOT / "examples" / "actions" / "pii-export.json").read_text())
EXAMPLES_PER_OPERATION = 25

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

schema = schemathesis.openapi.from_asgi("/openapi.json", app)

#: Calls made per operation, and the statuses seen (checked by the last test).
CALLS: Counter[str] = Counter()
STATUSES: dict[str, Counter[int]] = {}


def _token_for(case: Any) -> str:
    """A pipeline's token for what pipelines post (open, cancel, ...), a reviewer's for
    decisions and for reading."""
    path, method = case.operation.path, case.operation.method.upper()
    if method == "POST" and not path.endswith("/decisions"):
        return REQUEST_TOKEN
    return REVIEW_TOKEN


def _fresh_request_id() -> str:
    """A new pending request (pii-export: alice may decide it, airflow-prod may cancel it)."""
    answer = app.state.sluicegate.approvals.open(
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
    response = case.call_and_validate(headers=headers, checks=[not_a_server_error, error_body])
    CALLS[label] += 1
    STATUSES.setdefault(label, Counter())[response.status_code] += 1


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
