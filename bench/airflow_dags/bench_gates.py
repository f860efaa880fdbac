"""DAGs of ``bench/bench_airflow_gate.py``: extract -> (a gate) -> done.

``done`` writes ``time.time()`` to the file named by ``SLUICEGATE_BENCH_MARK`` the moment it
starts, so the benchmark can tell when the gated task's downstream began.

- ``bench_sluicegate_gate``: our ``ApprovalGateOperator`` on a PII export (two approvals);
- ``bench_airflow_hitl``: Airflow's own ``ApprovalOperator`` (standard provider, HITL);
- ``bench_allowed_gate``: our gate on an action the policy allows (kind ``read``);
- ``bench_allowed_gate_no_xcom``: the same with ``do_xcom_push=False`` (no XCom written);
- ``bench_no_gate``: the same DAG without a gate;
- ``bench_gated_task``: extract -> done, done's body behind its own gate (``@task.sluicegate``
  on the allowed kind ``read``): no gate task at all;
- ``bench_plain_task``: the gate's place taken by a trivial ``@task`` (what one more task costs).
"""

from __future__ import annotations

import os
import time
from datetime import datetime

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import dag, task

from sluicegate_airflow.operators import ApprovalGateOperator

CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}
BUCKET = {"namespace": "s3://partner-share", "name": "exports/customers.csv"}
ORDERS = {"namespace": "postgres://prod:5432", "name": "sales.public.orders"}
#: The long poll's hold (s): the server answers the moment the request ends, so this only
#: bounds how long one poll waits before the trigger asks again; it does not add latency.
POLL_SECONDS = 30.0
ARGS = {"owner": "carol", "retries": 0}


def _build(dag_id: str, gate: str | None, **gate_args: object) -> None:
    @dag(dag_id=dag_id, start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args=ARGS)  # fmt: skip
    def build() -> None:
        @task
        def extract() -> int:
            return 120000

        @task
        def done() -> None:
            started = time.time()
            mark = os.environ.get("SLUICEGATE_BENCH_MARK")
            if mark:
                with open(mark, "w") as fh:
                    fh.write(repr(started))

        if gate is None:
            extract() >> done()
            return
        if gate == "inline":  # done's own body behind its gate: @task.sluicegate

            @task.sluicegate(  # type: ignore[attr-defined]
                task_id="done", kind="read", inputs=[ORDERS], poll_seconds=POLL_SECONDS
            )
            def gated_done() -> None:
                started = time.time()
                mark = os.environ.get("SLUICEGATE_BENCH_MARK")
                if mark:
                    with open(mark, "w") as fh:
                        fh.write(repr(started))

            extract() >> gated_done()
            return
        if gate == "plain":

            @task(task_id="approve_export")
            def plain() -> None:
                pass

            extract() >> plain() >> done()
            return
        if gate == "hitl":
            approve: object = ApprovalOperator(
                task_id="approve_export",
                subject="Export crm.public.customers for the partner",
                body="120000 rows to s3://partner-share/exports/customers.csv",
            )
        else:
            kind, inputs = ("export", [CUSTOMERS]) if gate == "export" else ("read", [ORDERS])
            approve = ApprovalGateOperator(
                task_id="approve_export",
                kind=kind,
                summary=f"{kind} {inputs[0]['name']} for the partner",
                inputs=inputs,
                outputs=[BUCKET] if kind == "export" else [],
                context_data={"rows": 120000},
                poll_seconds=POLL_SECONDS,
                **gate_args,  # type: ignore[arg-type]
            )
        extract() >> approve >> done()  # type: ignore[operator]

    build()


_build("bench_sluicegate_gate", "export")
_build("bench_airflow_hitl", "hitl")
_build("bench_allowed_gate", "read")
_build("bench_allowed_gate_no_xcom", "read", do_xcom_push=False)
_build("bench_no_gate", None)
_build("bench_gated_task", "inline")
_build("bench_plain_task", "plain")
