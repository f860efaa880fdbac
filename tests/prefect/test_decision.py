"""``GateDecision``, the run input a paused flow run waits for, in real Prefect against the
real Sluicegate server: a bare resume (Prefect's UI "Resume") is refused and the run stays
Paused; a made-up complete input wakes the run, but the gate asks the server, which still holds
the request pending, and the export waits for the real decision.
"""

from __future__ import annotations

import httpx
import pytest
from prefect.client.schemas.objects import StateType

from prefect_sluicegate import ApprovalRefused
from tests.gate_harness import PATIENCE, GateHarness
from tests.prefect.support import (
    crm_export,
    flow_run_state,
    marks,
    paused_request,
    start,
)


def test_a_resume_without_the_servers_decision_approves_nothing(
    sg: GateHarness, prefect_api: str
) -> None:
    future = start(crm_export, block=sg.name)
    request = paused_request(sg, "crm-export")
    run_id = request["requester"]["run_id"]
    resume = f"{prefect_api}/flow_runs/{run_id}/resume"

    bare = httpx.post(resume, json={}, timeout=30).json()  # Prefect's UI "Resume", no input
    assert bare["status"] == "REJECT", bare
    assert flow_run_state(run_id) == StateType.PAUSED

    # A complete but made-up input: Prefect accepts it and the run is Running again, yet the
    # gate asks the server, which still holds a pending request, and keeps the export waiting.
    forged = {"run_input": {"request_id": request["id"], "status": "approved"}}
    assert httpx.post(resume, json=forged, timeout=30).json()["status"] == "ACCEPT"
    assert flow_run_state(run_id) == StateType.RUNNING
    sg.decide(request["id"], "alice", "deny", "nobody approved this")
    state = future.result(timeout=PATIENCE)
    assert state.is_failed(), state
    assert marks(run_id) == ["extract"]
    with pytest.raises(ApprovalRefused, match="denied by alice: nobody approved this"):
        state.result()
