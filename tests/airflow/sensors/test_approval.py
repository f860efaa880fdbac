"""``ApprovalSensor`` in real Airflow (``dag.test()``) against the real Sluicegate server: a
DAG that did not open the request itself waits for one opened through the API, and goes on
once two stewards approve it.
"""

from __future__ import annotations

import httpx

from tests.airflow.support import _dag, states
from tests.gate_harness import GateHarness


def test_the_sensor_waits_for_an_existing_request(env: GateHarness) -> None:
    action = {
        "kind": "export",
        "summary": "Export customers",
        "inputs": [{"namespace": "postgres://prod:5432", "name": "crm.public.customers"}],
    }
    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "")])  # before it opens
    r = httpx.post(
        f"{env.url}/api/v1/requests",
        json={"idempotency_key": "sensor-1", "action": action, "requester": {"owner": "carol"}},
        headers=env.auth("airflow-prod"),
    )
    assert r.status_code == 201, r.text
    run = _dag("wait_for_request").test(run_conf={"request_id": r.json()["id"]})
    thread.join(5)
    assert states(run) == {"wait": "success", "publish": "success"}
