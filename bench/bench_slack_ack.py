"""How fast the server acknowledges a Slack button click (Slack's deadline: 3 s).

Starts ``sluicegate serve`` (SQLite) with a Slack bot token, a signing secret and Slack's Web
API pointed at a local fake (``tests/core/support/fakechat.py``, which answers as Slack does), opens
gates that need two approvals, and sends signed ``block_actions`` clicks (Approve by alice,
then by bob) one after another, timing each from the POST to its answer. The decision is
committed before the answer; the message update goes through the outbox afterwards. Figures,
no asserts.

    python bench/bench_slack_ack.py [--clicks 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # for tests.core.support

from _server import HOST, POLICY, FreshDatabase, ServerProcess, create_token, pct  # noqa: E402
from tests.core.support.fakechat import (  # noqa: E402
    FakeChat,
    block_actions_payload,
    signed_interaction,
)

SECRET = "bench-signing-secret"
BOT = "xoxb-bench"
ACTION = {
    "kind": "export",
    "summary": "Export customers to the partner bucket",
    "inputs": [{"namespace": "postgres://prod:5432", "name": "crm.public.customers"}],
    "outputs": [{"namespace": "s3://partner-share", "name": "exports/customers.csv"}],
}
REQUESTER = {"orchestrator": "bench", "job": "bench.slack", "owner": "carol"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=100)
    args = ap.parse_args()
    with (
        FakeChat(bot_token=BOT) as chat,
        FreshDatabase(None) as db,
        tempfile.TemporaryDirectory() as logs,
    ):
        env = {
            "SLUICEGATE_SLACK__BOT_TOKEN": BOT,
            "SLUICEGATE_SLACK__SIGNING_SECRET": SECRET,
            "SLUICEGATE_SLACK__API_URL": f"{chat.url}/api/",
        }
        server = ServerProcess(db.url, logs, policy=POLICY, log_level="warning", env=env)
        try:
            server.wait_ready()
            base = f"http://{HOST}:{server.port}"
            token = create_token(db.url, "bench-pipeline", "request")
            times: list[float] = []
            with httpx.Client(base_url=base) as c:
                auth = {"Authorization": f"Bearer {token}"}
                for i in range(args.clicks // 2 + args.clicks % 2):
                    body = {"idempotency_key": f"s-{i}", "action": ACTION, "requester": REQUESTER}
                    rid = c.post("/api/v1/requests", json=body, headers=auth).json()["id"]
                    for user in ("U01ALICE", "U01BOB"):
                        payload = block_actions_payload(
                            user_id=user,
                            action_id="sluicegate_approve",
                            request_id=rid,
                            response_url=f"{chat.url}/slack-response/{uuid.uuid4().hex}",
                        )
                        raw, headers = signed_interaction(payload, signing_secret=SECRET)
                        t0 = time.perf_counter()
                        r = c.post("/integrations/slack/interactions", content=raw, headers=headers)
                        times.append(time.perf_counter() - t0)
                        assert r.status_code == 200, r.text
                status = c.get(f"/api/v1/requests/{rid}", headers=auth).json()["status"]
            updates = len(chat.wait_for("/api/chat.update", len(times), timeout=60))
        finally:
            server.stop()
    s = sorted(times)
    print(f"{len(times)} signed clicks, one after another, SQLite; last request {status}")
    print(
        f"acknowledged in p50 {pct(s, 50) * 1000:.1f} ms, p95 {pct(s, 95) * 1000:.1f} ms, "
        f"p99 {pct(s, 99) * 1000:.1f} ms, max {s[-1] * 1000:.1f} ms (Slack's deadline: 3,000 ms)"
    )
    print(f"chat.update calls the fake Slack had received when the clicks ended: {updates}")


if __name__ == "__main__":
    main()
