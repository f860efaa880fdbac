"""Each notification arrives once, with two replicas and a receiver slower than the lease.

The way the duplicates were found: two servers on one PostgreSQL database, a webhook receiver
that takes longer to answer than the dispatcher's lease lasts (here 1.5 s against a 1.2 s
lease, set through ``SLUICEGATE_NOTIFY__LEASE`` so the test takes seconds, not minutes), and
a handful of requests, each announced to the webhook. Every delivery is counted twice: by its
``X-Sluicegate-Delivery`` id and by what its body announces (request and event).
"""

from __future__ import annotations

import collections
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from sluicegate.notify.signing import verify_webhook
from sluicegate.store import Store
from sluicegate.store.notifications import OutboxTable
from tests.core.support.fakechat import FakeChat
from tests.core.support.serverproc import PII_EXPORT, POLICY, ServerProcess, running

#: The header a receiver de-duplicates on (the same on every resend of one notification).
DELIVERY_HEADER = "X-Sluicegate-Delivery"
SECRET = "hook-secret-for-replicas"
LEASE = 1.2  # seconds: shorter than one delivery
ANSWER_AFTER = 1.5  # seconds the receiver takes to answer each delivery
REQUESTS = 6
REQUESTER = {"orchestrator": "airflow", "job": "crm.export", "run_id": "r1", "owner": "carol"}


def _settled(db_url: str, count: int, timeout: float) -> list[dict[str, Any]]:
    """The outbox once ``count`` rows exist and none is pending (sent, or given up)."""
    deadline = time.monotonic() + timeout
    with Store(db_url) as store:
        table = OutboxTable(store)
        while True:
            rows = table.rows()
            if len(rows) >= count and all(r["status"] != "pending" for r in rows):
                return rows
            assert time.monotonic() < deadline, f"outbox not settled: {rows}"
            time.sleep(0.1)


def test_two_replicas_and_a_slow_receiver_deliver_each_notification_once(
    pg_url: str, tmp_path: Path, chat: FakeChat
) -> None:
    chat.hang_next("/hook/", ANSWER_AFTER, times=1000)  # every delivery is slow
    env = {
        "SLUICEGATE_WEBHOOK__URL": chat.hook_url("replicas"),
        "SLUICEGATE_WEBHOOK__SECRET": SECRET,
        "SLUICEGATE_NOTIFY__LEASE": str(LEASE),
    }
    with Store(pg_url) as store:  # migrates the fresh schema before the replicas start
        token = store.create_token("airflow-prod", "request")
    a = ServerProcess(pg_url, POLICY, tmp_path, name="replica-A", env=env)
    b = ServerProcess(pg_url, POLICY, tmp_path, name="replica-B", env=env)
    with running(a, b):
        with ThreadPoolExecutor(2) as pool:  # side by side: each takes seconds to start
            list(pool.map(ServerProcess.start, (a, b)))
        opened = []
        for i in range(REQUESTS):
            replica = (a, b)[i % 2]  # both replicas plan rows and wake their dispatchers
            r = httpx.post(
                f"{replica.url}/api/v1/requests",
                json={
                    "idempotency_key": uuid.uuid4().hex,
                    "action": PII_EXPORT,  # pii-export: announced to the webhook
                    "requester": REQUESTER,
                },
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert r.status_code == 201, r.text
            opened.append(r.json()["id"])

        rows = _settled(pg_url, REQUESTS, timeout=60)
        # Every send that happened reached the receiver before its row was settled.
        hooks = chat.calls("/hook/")

    assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 1)] * REQUESTS
    for hook in hooks:
        verify_webhook(SECRET, hook.headers, hook.raw)
    by_id = collections.Counter(hook.header(DELIVERY_HEADER) for hook in hooks)
    by_body = collections.Counter((h.body["request"]["id"], h.body["event"]) for h in hooks)
    assert by_body == {(rid, "request.created"): 1 for rid in opened}
    assert None not in by_id and len(by_id) == REQUESTS and set(by_id.values()) == {1}
