"""What the tests of a running ``sluicegate serve`` share: tokens made in process, a gate opened
over HTTP, a long poll held in the background, the server's waiting gauge, and a SIGTERM with a
deadline."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from sluicegate.store import Store
from tests.core.support.serverproc import PII_EXPORT, TLS, ServerProcess

__all__ = [
    "REQUESTER",
    "LongPoll",
    "audit_token",
    "one_line_error",
    "open_gate",
    "sigterm",
    "tokens_for",
    "waiting_polls",
]

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
