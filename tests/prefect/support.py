"""What the Prefect gate tests share: the flows they run (extract, gate, export; each step
leaves a mark), a flow run started in a thread (it blocks while paused), the pending request of
a run once Prefect shows it Paused, and a run's states as Prefect's API reads them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State, StateType

from prefect_sluicegate import approval_gate
from tests.gate_harness import PATIENCE, GateHarness

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


@flow(name="orders-read")
def orders_read(block: str, open_timeout: float = 600.0) -> str:
    """One allowed gate, by the block's name."""
    return approval_gate("read", inputs=[ORDERS], config=block, open_timeout=open_timeout).status


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
