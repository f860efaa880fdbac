"""The approval gate in real Prefect: flows run against ``prefect_test_harness`` (a temporary
Prefect API server) and the real Sluicegate server as a subprocess, which resumes paused runs
through that harness's API. A reviewer thread decides through Sluicegate's API the way a
person would, once the request is pending and Prefect shows the run Paused.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State, StateType
from tests.gate_harness import PATIENCE, GateHarness

from prefect_sluicegate import ApprovalRefused, SluicegateConfig, approval_gate
from sluicegate.exceptions import DatasetError

CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}
ORDERS = {"namespace": "postgres://prod:5432", "name": "sales.public.orders"}
BUCKET = "s3://partner-share/exports/customers.csv"

# ---- the flows under test: extract, gate, export (each step leaves a mark)

MARKS: list[tuple[str, str]] = []  # (flow run id, step), appended as steps run


def _mark(step: str) -> None:
    from prefect.runtime import flow_run

    MARKS.append((str(flow_run.id), step))


@task
def extract() -> int:
    _mark("extract")
    return 120_000


@task
def export(rows: int) -> str:
    _mark("export")
    return f"exported {rows} rows"


@flow(name="crm-export")
def crm_export(block: str, kind: str = "export") -> dict[str, Any]:
    rows = extract()
    answer = approval_gate(
        kind,
        summary="Export customers to the partner bucket",
        inputs=[CUSTOMERS],
        outputs=[BUCKET],
        destination=BUCKET,
        context={"rows": rows},
        config=block,
    )
    return {"result": export(rows), "request": answer.id, "status": answer.status}


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


def start(fn: Callable[..., Any], **kwargs: Any) -> Future[State]:
    """Run a flow in a thread (it blocks while paused); its final state."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(fn, return_state=True, **kwargs)
    pool.shutdown(wait=False)
    return future


def flow_run_state(run_id: str) -> StateType | None:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(uuid.UUID(run_id)).state
    return state.type if state is not None else None


def state_history(run_id: str) -> list[StateType]:
    with get_client(sync_client=True) as client:
        return [s.type for s in client.read_flow_run_states(uuid.UUID(run_id))]


def paused_request(sg: GateHarness, job: str, timeout: float = PATIENCE) -> dict[str, Any]:
    """The job's pending request once Prefect shows its flow run Paused."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = sg.requests(job, "pending")
        if pending and flow_run_state(pending[0]["requester"]["run_id"]) == StateType.PAUSED:
            return pending[0]
        time.sleep(0.1)
    raise AssertionError(f"no paused flow run with a pending request for {job}")


def marks(run_id: str) -> list[str]:
    return [step for rid, step in MARKS if rid == run_id]


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


def test_the_config_block_round_trips_and_hides_its_token(sg: GateHarness) -> None:
    loaded = SluicegateConfig.load(sg.name)
    assert loaded.server_url == sg.server.url
    assert loaded.token.get_secret_value() == sg.request_token
    assert sg.request_token not in repr(loaded)
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("sluicegate-config")
    assert block_type.name == "Sluicegate Config"


@flow(name="orders-read")
def orders_read(block: str, open_timeout: float = 600.0) -> str:
    """One allowed gate, by the block's name."""
    return approval_gate("read", inputs=[ORDERS], config=block, open_timeout=open_timeout).status


def test_an_edited_block_reaches_the_gates_once_its_cache_time_has_passed(
    sg: GateHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_sluicegate import blocks

    name = f"rotating-{uuid.uuid4().hex[:8]}"
    SluicegateConfig(server_url=sg.url, token=sg.request_token).save(name)
    assert orders_read(name) == "allowed"
    # The token is revoked and the block edited: gates already running keep the block they
    # read for BLOCK_CACHE_SECONDS (no read of Prefect's API per gate) ...
    SluicegateConfig(server_url=sg.url, token="sgreq_revoked").save(name, overwrite=True)
    assert orders_read(name) == "allowed"
    # ... and read the edited block once that time has passed: refused, the flow fails.
    monkeypatch.setattr(blocks, "BLOCK_CACHE_SECONDS", 0.0)
    state = orders_read(name, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="HTTP 401"):
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


def test_the_gates_pause_defaults_are_the_pauses() -> None:
    from prefect_sluicegate import gate, pause

    assert (gate.POLL_INTERVAL, gate.RESUME_GRACE, gate.TIMEOUT_MARGIN) == (
        pause.POLL_INTERVAL, pause.RESUME_GRACE, pause.TIMEOUT_MARGIN,
    )  # fmt: skip


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
