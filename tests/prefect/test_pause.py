"""Prefect's side of a pending gate (``prefect_sluicegate.pause``) in real Prefect against the
real Sluicegate server: the gate's pause defaults are the pause's; a run the server cannot
resume (its Prefect API URL leads nowhere) is resumed by the gate; with ``suspend=True`` a
deployed flow, served by a runner in a subprocess, is suspended, resumed by the server once
approved and exported once, or failed when denied.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State, StateType

from tests.gate_harness import PATIENCE, GateHarness
from tests.prefect.support import (
    crm_export,
    marks,
    paused_request,
    start,
    state_history,
)


def test_when_the_server_cannot_reach_prefect_the_gate_resumes_the_run(deaf: GateHarness) -> None:
    future = start(crm_export, block=deaf.name)
    request = paused_request(deaf, "crm-export")
    for who in ("alice", "bob"):
        deaf.decide(request["id"], who, "approve")
    state = future.result(timeout=PATIENCE)

    assert state.is_completed(), state
    run_id = request["requester"]["run_id"]
    assert marks(run_id) == ["extract", "export"]
    history = state_history(run_id)
    assert history.index(StateType.PAUSED) < len(history) - 1
    # The server's own resume never got through (it keeps retrying with backoff).
    (resume,) = [r for r in deaf.outbox(request["id"]) if r["target"] == f"prefect:{run_id}"]
    assert resume["status"] == "pending" and resume["last_error"]


def test_the_gates_pause_defaults_are_the_pauses() -> None:
    from prefect_sluicegate import gate, pause

    assert (gate.POLL_INTERVAL, gate.RESUME_GRACE, gate.TIMEOUT_MARGIN) == (
        pause.POLL_INTERVAL, pause.RESUME_GRACE, pause.TIMEOUT_MARGIN,
    )  # fmt: skip


# ---- suspend=True: a deployed flow, served by a runner in a subprocess


class Served:
    """The runner serving ``suspend_flows.crm_export_suspended`` as a deployment."""

    deployment = "crm-export-suspended/tests"

    def __init__(self, work: Path) -> None:
        self.marks_dir, self.log = work / "marks", work / "runner.log"

    def marks(self, run_id: str) -> list[str]:
        """The steps the flow run went through, in order, over all its runs."""
        f = self.marks_dir / run_id
        return f.read_text().splitlines() if f.exists() else []

    def state(self, run_id: str) -> State | None:
        with get_client(sync_client=True) as client:
            return client.read_flow_run(uuid.UUID(run_id)).state

    def until(self, what: str, check: Callable[[], Any], timeout: float = PATIENCE) -> Any:
        """Poll ``check`` until it returns something true; fail with the runner's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; runner:\n{self.log.read_text()}")

    def suspended(self, run_id: str) -> State:
        return self.until(
            "the flow run to be suspended",
            lambda: (s := self.state(run_id)) is not None and s.is_paused() and s,
        )

    def final(self, run_id: str) -> State:
        return self.until(
            "the flow run to end",
            lambda: (s := self.state(run_id)) is not None and s.is_final() and s,
        )


@pytest.fixture(scope="module")
def served(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A runner in a subprocess (``suspend_flows.py``), polling the harness every second."""
    import os
    import subprocess

    served = Served(tmp_path_factory.mktemp("prefect-suspend"))
    served.marks_dir.mkdir()
    here = Path(__file__).resolve().parent
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,  # the harness sets it in this process's settings only
        "SLUICEGATE_TEST_MARKS": str(served.marks_dir),
    }
    log = served.log.open("w")
    proc = subprocess.Popen(
        [sys.executable, str(here / "suspend_flows.py"), "tests"],
        cwd=here,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def deployed() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the runner exited:\n{served.log.read_text()}")
        with get_client(sync_client=True) as client:
            try:
                client.read_deployment_by_name(Served.deployment)
            except Exception:
                return False
        return True

    try:
        served.until("the runner to serve the deployment", deployed)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _start_deployed(sg: GateHarness, served: Served) -> str:
    from prefect.deployments import run_deployment

    run = run_deployment(served.deployment, parameters={"block": sg.name}, timeout=0)
    return str(run.id)


def _pending_for(sg: GateHarness, run_id: str) -> dict[str, Any]:
    pending = sg.requests("crm-export-suspended", "pending")
    (request,) = [r for r in pending if r["requester"]["run_id"] == run_id]
    return request


def test_a_suspended_run_is_resumed_by_the_server_and_exports_once_approved(
    sg: GateHarness, served: Served
) -> None:
    run_id = _start_deployed(sg, served)
    state = served.suspended(run_id)
    assert (state.type, state.name) == (StateType.PAUSED, "Suspended")
    request = _pending_for(sg, run_id)
    assert served.marks(run_id) == ["extract"]  # the run's process has exited before export

    sg.decide(request["id"], "alice", "approve")
    sg.decide(request["id"], "bob", "approve", "partner contract checked")
    final = served.final(run_id)

    assert final.is_completed(), final
    # The run went again from the top (extract again: no persisted results), reattached to
    # the decided request without suspending anew, and exported once.
    assert served.marks(run_id) == [
        "extract",
        "extract",
        f"passed:{request['id']}:approved",
        "export",
    ]
    mine = [r for r in sg.requests("crm-export-suspended") if r["requester"]["run_id"] == run_id]
    assert [r["id"] for r in mine] == [request["id"]]
    assert len(sg.audited("gate.released", request["id"])) == 1
    history = state_history(run_id)
    assert history.count(StateType.PAUSED) == 1, history
    assert history.index(StateType.PAUSED) < history.index(StateType.COMPLETED), history
    # Nobody else could have resumed it (its process had exited): the server did.
    (resume,) = [r for r in sg.outbox(request["id"]) if r["target"] == f"prefect:{run_id}"]
    assert (resume["status"], json.loads(resume["result"])) == ("sent", {"status": "ACCEPT"})


def test_a_denied_suspended_run_fails_and_never_exports(sg: GateHarness, served: Served) -> None:
    run_id = _start_deployed(sg, served)
    assert served.suspended(run_id).name == "Suspended"
    request = _pending_for(sg, run_id)

    sg.decide(request["id"], "bob", "deny", "not with this partner")
    final = served.final(run_id)

    assert final.is_failed(), final
    assert "was denied by bob: not with this partner" in (final.message or ""), final.message
    assert served.marks(run_id) == ["extract", "extract"]  # resumed, refused, never exported
    assert sg.audited("gate.released", request["id"]) == []
