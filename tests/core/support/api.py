"""The HTTP API in process, as a pipeline and a reviewer call it: :class:`Harness`.

A harness holds the real app (``create_app``) and a ``TestClient`` with the app's lifespan
running, and makes tokens on demand. The ``make_api``, ``api`` and ``api1`` fixtures that build
harnesses (and close them) are in tests/core/conftest.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from sluicegate.store.schema import audit_events

from .serverproc import PII_EXPORT

#: The principal of the pipeline's token (``request`` scope) a harness opens gates with.
PIPELINE = "airflow-prod"
#: The requester a harness's gates name unless a test gives another.
REQUESTER = {
    "orchestrator": "airflow",
    "job": "crm_export.export_customers",
    "run_id": "manual__1",
    "step": "export",
    "owner": "carol",
}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    """An error answer: the status, JSON, and exactly {"error", "detail"}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, str] = response.json()
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["detail"], str) and body["detail"].strip(), body
    if code is not None:
        assert body["error"] == code, body
    return body


class Harness:
    """The app, a test client with its lifespan running, and tokens made on demand."""

    def __init__(self, app: Any, client: TestClient) -> None:
        self.app = app
        self.c = client
        self.st = app.state.sluicegate
        self._tokens: dict[tuple[str, str], str] = {}

    def token(self, principal: str, scope: str) -> str:
        key = (principal, scope)
        if key not in self._tokens:
            self._tokens[key] = self.st.store.create_token(principal, scope)
        return self._tokens[key]

    def auth(self, principal: str = PIPELINE, scope: str = "request") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(principal, scope)}"}

    def review(self, reviewer: str) -> dict[str, str]:
        return self.auth(reviewer, "review")

    def open(
        self,
        key: str | None = None,
        action: dict[str, Any] | None = None,
        requester: dict[str, Any] | None = None,
        *,
        principal: str = PIPELINE,
    ) -> httpx.Response:
        body = {
            "idempotency_key": key or f"airflow:crm:{uuid.uuid4().hex}:export",
            "action": action if action is not None else PII_EXPORT,
            "requester": REQUESTER if requester is None else requester,
        }
        return self.c.post("/api/v1/requests", json=body, headers=self.auth(principal))

    def pending(self, **kw: Any) -> dict[str, Any]:
        r = self.open(**kw)
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        assert body["status"] == "pending"
        return body

    def decide(
        self,
        request_id: str,
        reviewer: str,
        verdict: str = "approve",
        comment: str = "",
        *,
        fingerprint: str | None = None,
        scope: str = "review",
    ) -> httpx.Response:
        body: dict[str, Any] = {"verdict": verdict, "comment": comment}
        if fingerprint is not None:
            body["fingerprint"] = fingerprint
        return self.c.post(
            f"/api/v1/requests/{request_id}/decisions",
            json=body,
            headers=self.auth(reviewer, scope),
        )

    def get(self, request_id: str) -> dict[str, Any]:
        r = self.c.get(f"/api/v1/requests/{request_id}", headers=self.auth())
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def audit(self, kind: str | None = None, request_id: str | None = None) -> list[Any]:
        stmt = select(audit_events).order_by(audit_events.c.seq)
        if kind is not None:
            stmt = stmt.where(audit_events.c.kind == kind)
        if request_id is not None:
            stmt = stmt.where(audit_events.c.request_id == request_id)
        with self.st.store.read() as conn:
            return list(conn.execute(stmt).all())
