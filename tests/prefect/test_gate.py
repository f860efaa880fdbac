"""``approval_gate`` in real Prefect: flows run against ``prefect_test_harness`` (a temporary
Prefect API server) and the real Sluicegate server as a subprocess, which resumes paused runs
through that harness's API. A reviewer thread decides through Sluicegate's API the way a
person would, once the request is pending and Prefect shows the run Paused. Covered: approved,
denied, expired and allowed gates, a retried task and a re-run flow that reattach, a server
gone after a gate, what the gate refuses outside a flow, the gates' OpenLineage events under
openlineage-prefect's runs, and the example flow.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State, StateType

from prefect_sluicegate import ApprovalRefused, SluicegateConfig, approval_gate
from sluicegate.exceptions import DatasetError
from tests.gate_harness import PATIENCE, GateHarness
from tests.prefect.support import (
    BUCKET,
    CUSTOMERS,
    ORDERS,
    _mark,
    crm_export,
    export,
    marks,
    orders_read,
    paused_request,
    start,
    state_history,
)

# ---- flows only these tests run


@task(retries=1, retry_delay_seconds=0)
def gated_publish(block: str) -> str:
    """A task that gates, then fails once after passing the gate: the retry reattaches."""
    answer = approval_gate("export", inputs=[CUSTOMERS], outputs=[BUCKET], config=block)
    _mark(f"passed:{answer.id}")
    from prefect.runtime import task_run

    if task_run.run_count == 1:
        raise RuntimeError("the partner bucket hiccuped")
    export(1)
    return answer.id


@flow(name="crm-publish")
def crm_publish(block: str) -> str:
    return gated_publish(block)


@task
def gated_read(block: str) -> dict[str, Any]:
    """A routine read gated inside a task (the policy allows it: no pause)."""
    answer = approval_gate("read", summary="Read the orders", inputs=[ORDERS], config=block)
    return answer.requester.model_dump(mode="json") if answer.requester else {}


@flow(name="orders-report")
def orders_report(block: str) -> dict[str, Any]:
    """One allowed gate directly in the flow, one inside a task."""
    in_flow = approval_gate("read", inputs=[ORDERS], config=block, step="flow-read")
    asked = in_flow.requester.model_dump(mode="json") if in_flow.requester else {}
    return {"flow": asked, "task": gated_read(block)}


RERUNS: dict[str, list[int]] = {}  # flow run id -> Prefect's run_count at each gate passed


@flow(name="crm-rerun", retries=2, retry_delay_seconds=0)
def crm_rerun(block: str) -> str:
    """A flow that fails once after its gate: its re-run (same flow run) reattaches.

    Two retries: with ``retries=1``, Prefect 3.9.1 did not retry this flow once it had been
    paused and resumed (observed here: the pause uses up one of the flow's retries).
    """
    from prefect.runtime import flow_run

    answer = approval_gate("export", inputs=[CUSTOMERS], outputs=[BUCKET], config=block)
    _mark(f"passed:{answer.id}")
    tries = RERUNS.setdefault(str(flow_run.id), [])
    tries.append(flow_run.run_count)
    if len(tries) == 1:
        raise RuntimeError("the worker was preempted")
    return answer.id


# ---- helpers


def openlineage_prefect_flow_run(flow_run_id: str) -> dict[str, str]:
    """The job and run id openlineage-prefect (0.0.1b22) gives a flow run, as a ``parent``
    names them, computed by its listener's own code: ``get_flow_info`` (the job's name, by
    ``FLOW_NAME_TYPE``, and the run's start time, read through Prefect's API),
    ``build_run_id``, and its namespace ``JOB_NAMESPACE``. For a flow run without a
    deployment, which its listener emits nothing for (see :func:`openlineage_prefect_events`),
    this is what it would name the run."""
    from openlineage_prefect.prefect_adapter.listener import (
        JOB_NAMESPACE,
        PrefectOpenLineageListener,
    )

    async def ask() -> dict[str, str]:
        async with get_client() as client:
            listener = PrefectOpenLineageListener(client=client)
            info = await listener.get_flow_info(await client.read_flow_run(uuid.UUID(flow_run_id)))
            run_id = listener.build_run_id(info.start_time, info.name, JOB_NAMESPACE)
        return {"namespace": JOB_NAMESPACE, "name": info.name, "run_id": run_id}

    return asyncio.run(ask())


def run_deployed(fn: Any, **parameters: Any) -> State:
    """Run flow ``fn`` here as a run of a deployment of it, the way a worker runs one: its
    final state. openlineage-prefect 0.0.1b22 emits nothing for a flow run without a
    deployment (its listener looks the namespace up in the deployment and fails without one)."""
    from prefect.flow_engine import run_flow

    deployment_id = fn.to_deployment(name=f"{fn.name}-deployed").apply()
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
    state: State = run_flow(fn, flow_run=flow_run, parameters=parameters, return_type="state")
    return state


def openlineage_prefect_events(flow_run_id: str) -> list[dict[str, Any]]:
    """The OpenLineage events openlineage-prefect (0.0.1b22) emits for a flow run and its
    task runs: Prefect's own events of the run, read back from Prefect's API once the run's
    Completed event is stored, each handed to its listener's handler
    (``collect_and_process_flow_runs`` or ``collect_and_process_task_runs``) with the state
    the event stands for, as the listener's ``collect_and_process_runs`` loop does with what
    it subscribes to (the test harness replays none of it to a new subscriber); its adapter
    emits through openlineage-python's file transport, read back here."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.run import RunState
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage_prefect.prefect_adapter.adapter import PrefectOpenLineageAdapter
    from openlineage_prefect.prefect_adapter.listener import PrefectOpenLineageListener
    from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

    states = {"Running": RunState.START, "Completed": RunState.COMPLETE, "Failed": RunState.FAIL}
    wanted = EventFilter(
        any_resource=EventAnyResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
        event=EventNameFilter(prefix=["prefect.task-run.", "prefect.flow-run."]),
    )

    async def replay(path: Path) -> None:
        ol = OpenLineageClient(transport=FileTransport(FileConfig(str(path), append=True)))
        async with get_client() as client:
            deadline = time.monotonic() + PATIENCE
            while True:  # Prefect's server stores events from a background service
                events = (await client.read_events(wanted, limit=50)).events
                done = [e for e in events if e.event == "prefect.flow-run.Completed"]
                if done or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            listener = PrefectOpenLineageListener(
                client=client, ol_adapter=PrefectOpenLineageAdapter(client=ol)
            )
            version = await listener.get_prefect_version()
            for event in sorted(events, key=lambda e: e.occurred):
                state = states.get(event.event.split(".")[-1])
                if state is None:
                    continue
                if event.event.startswith("prefect.flow-run."):
                    await listener.collect_and_process_flow_runs(version, event, state)
                else:
                    await listener.collect_and_process_task_runs(version, event, state)

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "openlineage-prefect.jsonl"
        asyncio.run(replay(path))
        return [json.loads(line) for line in path.read_text().splitlines()]


# ---- tests


def test_an_approved_export_pauses_the_flow_and_goes_on_when_the_decision_lands(
    sg: GateHarness,
) -> None:
    future = start(crm_export, block=sg.name)
    request = paused_request(sg, "crm-export")
    run_id = request["requester"]["run_id"]
    assert marks(run_id) == ["extract"]  # halted before the export
    sg.decide(request["id"], "alice", "approve")
    decided = time.monotonic()
    sg.decide(request["id"], "bob", "approve", "partner contract checked")
    state = future.result(timeout=PATIENCE)
    continued = time.monotonic() - decided

    assert state.is_completed(), state
    result = state.result()
    assert result["status"] == "approved" and result["request"] == request["id"]
    assert marks(run_id) == ["extract", "export"]
    # Well inside the pause's own poll (60 s): the server's resume and the gate's long poll.
    assert continued < 10, continued
    assert StateType.PAUSED in state_history(run_id)
    (resume,) = [r for r in sg.outbox(request["id"]) if r["target"] == f"prefect:{run_id}"]
    assert (resume["status"], json.loads(resume["result"])) == ("sent", {"status": "ACCEPT"})
    assert len(sg.audited("gate.released", request["id"])) == 1
    requester = request["requester"]
    assert (requester["orchestrator"], requester["job"]) == ("prefect", "crm-export")
    # the gate runs in the flow: its parent is the flow run as openlineage-prefect names it
    assert requester["parent"] == openlineage_prefect_flow_run(run_id)


def test_the_gates_lineage_events_name_the_flow_run_as_parent(sg: GateHarness) -> None:
    future = start(crm_export, block=sg.name)
    request = paused_request(sg, "crm-export")
    for who in ("alice", "bob"):
        sg.decide(request["id"], who, "approve")
    assert future.result(timeout=PATIENCE).is_completed()
    expected = openlineage_prefect_flow_run(request["requester"]["run_id"])
    ours = gate_events(sg, expected["run_id"], {"START", "COMPLETE"})
    parent = ours[0]["run"]["facets"]["parent"]
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("default", "crm-export")


def gate_events(sg: GateHarness, parent_run_id: str, types: set[str]) -> list[dict[str, Any]]:
    """The server's gate events whose parent is run ``parent_run_id`` (waits for ``types``)."""
    ours = sg.gate_events(
        lambda e: e["run"]["facets"].get("parent", {}).get("run", {}).get("runId") == parent_run_id,
        lambda got: {e["eventType"] for e in got} >= types,
    )
    assert {e["eventType"] for e in ours} >= types, ours
    return ours


def test_gates_in_a_flow_and_in_a_task_hang_under_openlineage_prefects_runs(
    sg: GateHarness,
) -> None:
    state = run_deployed(orders_report, block=sg.name)
    assert state.is_completed(), state
    asked = state.result()
    flow_run_id = str(state.state_details.flow_run_id)
    emitted = openlineage_prefect_events(flow_run_id)
    started = {
        e["job"]["name"]: {
            "namespace": e["job"]["namespace"],
            "name": e["job"]["name"],
            "run_id": e["run"]["runId"],
            "parent": e["run"]["facets"].get("parentRun", {}).get("run", {}).get("runId"),
        }
        for e in emitted
        if e["eventType"] == "START"
    }
    assert sorted(started) == ["gated_read", "orders-report"], emitted
    in_flow, in_task = started["orders-report"], started["gated_read"]
    # openlineage-prefect's own tree: the task's run is a child of the flow's
    assert (in_flow.pop("parent"), in_task.pop("parent")) == (None, in_flow["run_id"])
    # what the allowed gates' answers say, and what their lineage events (START, COMPLETE) say
    assert (asked["flow"].get("parent"), asked["task"].get("parent")) == (in_flow, in_task)
    assert (asked["flow"].get("job"), asked["task"].get("job")) == (
        "orders-report",
        "orders-report.gated_read",
    )
    for expected in (in_flow, in_task):
        event = gate_events(sg, expected["run_id"], {"START", "COMPLETE"})[0]
        job = event["run"]["facets"]["parent"]["job"]
        assert (job["namespace"], job["name"]) == (expected["namespace"], expected["name"])
        requester = event["run"]["facets"]["sluicegate_approval"]["requester"]
        assert requester["orchestrator"] == "prefect" and requester["runId"] == flow_run_id


def test_a_denied_export_fails_the_flow_with_the_reviewer_and_comment(sg: GateHarness) -> None:
    future = start(crm_export, block=sg.name)
    request = paused_request(sg, "crm-export")
    sg.decide(request["id"], "bob", "deny", "not with this partner")
    state = future.result(timeout=PATIENCE)

    assert state.is_failed(), state
    with pytest.raises(ApprovalRefused, match="was denied by bob: not with this partner"):
        state.result()
    assert marks(request["requester"]["run_id"]) == ["extract"]  # the export never ran


def test_an_action_the_policy_allows_goes_on_without_a_pause(sg: GateHarness) -> None:
    state = crm_export(block=sg.name, kind="read", return_state=True)
    assert state.is_completed(), state
    result = state.result()
    assert result["status"] == "allowed"
    run_id = str(state.state_details.flow_run_id)
    assert marks(run_id) == ["extract", "export"]
    assert StateType.PAUSED not in state_history(run_id)


def test_a_retried_task_reattaches_to_its_request(sg: GateHarness) -> None:
    future = start(crm_publish, block=sg.name)
    request = paused_request(sg, "crm-publish.gated_publish")
    for who in ("alice", "bob"):
        sg.decide(request["id"], who, "approve")
    state = future.result(timeout=PATIENCE)

    assert state.is_completed(), state
    run_id = request["requester"]["run_id"]
    # Both tries passed the same request; the second without pausing again.
    assert marks(run_id) == [f"passed:{request['id']}", f"passed:{request['id']}", "export"]
    assert state_history(run_id).count(StateType.PAUSED) == 1
    assert [r["id"] for r in sg.requests("crm-publish.gated_publish")] == [request["id"]]


def test_a_rerun_flow_reattaches_to_its_request(sg: GateHarness) -> None:
    future = start(crm_rerun, block=sg.name)
    request = paused_request(sg, "crm-rerun")
    for who in ("alice", "bob"):
        sg.decide(request["id"], who, "approve")
    state = future.result(timeout=PATIENCE)

    assert state.is_completed(), state
    run_id = request["requester"]["run_id"]
    assert marks(run_id) == [f"passed:{request['id']}", f"passed:{request['id']}"]
    assert state_history(run_id).count(StateType.PAUSED) == 1
    assert [r["id"] for r in sg.requests("crm-rerun")] == [request["id"]]
    assert len(RERUNS[run_id]) == 2 and RERUNS[run_id][1] > RERUNS[run_id][0], RERUNS


@pytest.mark.parametrize(
    ("kind", "goes_on"), [("deploy", True), ("delete", False)], ids=["allow", "deny"]
)
def test_an_expired_request_does_what_the_rule_says(
    quick: GateHarness, kind: str, goes_on: bool
) -> None:
    future = start(crm_export, block=quick.name, kind=kind)
    request = paused_request(quick, "crm-export")  # nobody decides: it expires after 2 s
    state = future.result(timeout=PATIENCE)

    run_id = request["requester"]["run_id"]
    assert StateType.PAUSED in state_history(run_id)
    if goes_on:
        assert state.is_completed(), state
        assert state.result()["status"] == "expired"
        assert marks(run_id) == ["extract", "export"]
        assert len(quick.audited("gate.released", request["id"])) == 1
    else:
        assert state.is_failed(), state
        assert marks(run_id) == ["extract"]
        with pytest.raises(ApprovalRefused, match="was expired"):
            state.result()


def test_a_server_gone_after_a_gate_still_fails_the_next_gate_closed(
    prefect_api: str, tmp_path: Path
) -> None:
    # Sync gates keep one connection to the server between them: once the server is gone,
    # that connection must not let a later gate through.
    with GateHarness.serving(tmp_path, requester="prefect-prod", name="gone") as gone:
        name = f"gone-{uuid.uuid4().hex[:8]}"
        SluicegateConfig(server_url=gone.url, token=gone.request_token).save(name)
        assert orders_read(name) == "allowed"
        gone.server.kill()
        state = orders_read(name, open_timeout=1.0, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="cannot reach"):
        state.result()


def test_the_gate_outside_a_flow_run_and_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(RuntimeError, match="inside a Prefect flow or task"):
        approval_gate("export", server_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="must start with http"):
        SluicegateConfig(server_url="sluicegate.example.com", token="t")
    with pytest.raises(DatasetError, match=r"outputs\[0\]: cannot name 'customers\.csv'"):
        approval_gate("export", outputs=["customers.csv"], server_url="http://127.0.0.1:9")


def test_the_example_flow_pauses_and_exports_once_approved(
    sg: GateHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "prefect" / "crm_export.py"
    spec = importlib.util.spec_from_file_location("example_prefect_crm_export", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # the example reads the core client's settings from the environment
    monkeypatch.setenv("SLUICEGATE_SERVER_URL", sg.server.url)
    monkeypatch.setenv("SLUICEGATE_TOKEN", sg.request_token)
    future = start(module.crm_export)
    request = paused_request(sg, "crm-export")
    assert request["requester"]["owner"] == "carol"
    sg.decide(request["id"], "alice", "approve")
    sg.decide(request["id"], "bob", "approve")
    state = future.result(timeout=PATIENCE)
    assert state.is_completed(), state
    assert sg.requests("crm-export", "approved")[0]["id"] == request["id"]
