"""Test DAGs: extract -> gate on exporting a PII table -> export (and a routine read).

The export task writes the file named by ``SLUICEGATE_TEST_MARKS`` plus its DAG id, so a test
sees whether it ran.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import dag, task

from sluicegate_airflow.operators import ApprovalGateOperator

CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}
BUCKET = {"namespace": "s3://partner-share", "name": "exports/customers.csv"}
ORDERS = {"namespace": "postgres://prod:5432", "name": "sales.public.orders"}


def _mark(name: str) -> None:
    folder = os.environ.get("SLUICEGATE_TEST_MARKS")
    if folder:
        Path(folder, name).write_text("ran")


def _to_pii_export(context: Any) -> None:
    """A ``pre_execute`` that turns the gate's rendered routine read into a PII export."""
    context["task"].kind = "export"
    context["task"].gate_inputs = [CUSTOMERS]


def _more_rows(context: Any) -> None:
    """A ``pre_execute`` that changes the rendered context in place."""
    context["task"].sluicegate_action["context"]["rows"] = 999999


def _fails(context: Any) -> None:
    """A ``pre_execute`` that fails the task before it executes."""
    raise RuntimeError("the task failed before execute")


def _gated(dag_id: str, kind: str, inputs: list[dict[str, str]], **gate: object) -> None:
    @dag(
        dag_id=dag_id,
        start_date=datetime(2026, 1, 1),
        schedule=None,
        catchup=False,
        default_args={"owner": "carol", "retries": 0},
    )
    def build() -> None:
        @task
        def extract() -> None:
            _mark(f"{dag_id}.extract")

        approve = ApprovalGateOperator(
            task_id="approve_export",
            kind=kind,
            # templated, as any operator's fields are
            summary=f"{kind} {inputs[0]['name']} for the partner, run {{{{ run_id }}}}",
            inputs=inputs,
            outputs=[BUCKET],
            context_data={"rows": 120000, "dag": "{{ dag.dag_id }}"},
            destination="s3://partner-share/{{ dag.dag_id }}/",
            poll_seconds=5.0,
            **gate,  # type: ignore[arg-type]
        )

        @task
        def export() -> None:
            _mark(f"{dag_id}.export")

        extract() >> approve >> export()

    build()


_gated("pii_export", "export", [CUSTOMERS])
_gated("pii_export_skip_on_deny", "export", [CUSTOMERS], fail_on_deny=False)
_gated("routine_read", "read", [ORDERS])
# rendered as a routine read, executed as a PII export
_gated("read_becomes_export", "read", [ORDERS], pre_execute=_to_pii_export)
# rendered with 120000 rows, executed with 999999: the same dict, changed in place
_gated("read_context_changed", "read", [ORDERS], pre_execute=_more_rows)
# a PII export whose task fails before execute: it must ask nobody
_gated("pii_export_fails_before_execute", "export", [CUSTOMERS], pre_execute=_fails)


@dag(dag_id="wait_for_request", start_date=datetime(2026, 1, 1), schedule=None, catchup=False)
def wait_for_request() -> None:
    from sluicegate_airflow.sensors import ApprovalSensor

    @task
    def publish() -> None:
        _mark("wait_for_request.publish")

    (
        ApprovalSensor(
            task_id="wait", request_id="{{ dag_run.conf['request_id'] }}", poll_seconds=5.0
        )
        >> publish()
    )


wait_for_request()


def _inline(dag_id: str, kind: str, inputs: list[dict[str, str]], **gate: object) -> None:
    """extract -> export, the export's body behind its own gate (``@task.sluicegate``)."""

    @dag(
        dag_id=dag_id,
        start_date=datetime(2026, 1, 1),
        schedule=None,
        catchup=False,
        default_args={"owner": "carol", "retries": 0},
    )
    def build() -> None:
        @task
        def extract() -> int:
            _mark(f"{dag_id}.extract")
            return 120000

        @task.sluicegate(  # type: ignore[attr-defined]
            kind=kind,
            summary=f"{kind} {inputs[0]['name']} for the partner, run {{{{ run_id }}}}",
            inputs=inputs,
            outputs=[BUCKET],
            context_data={"rows": "{{ ti.xcom_pull(task_ids='extract') }}"},
            poll_seconds=5.0,
            **gate,
        )
        def export(rows: int) -> str:
            _mark(f"{dag_id}.export")
            return f"exported {rows} rows"

        @task
        def receipt(message: str) -> None:
            _mark(f"{dag_id}.receipt:{message}")

        receipt(export(extract()))

    build()


_inline("inline_pii_export", "export", [CUSTOMERS])
_inline("inline_routine_read", "read", [ORDERS])
# its connection names a port where no server listens (the test sets it)
_inline("inline_server_down", "read", [ORDERS], sluicegate_conn_id="sluicegate_down")


@dag(
    dag_id="templated_export",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    params={"kind": "export", "table": "customers"},
    default_args={"owner": "carol", "retries": 0},
)
def templated_export() -> None:
    """A gate whose kind and datasets are templates: the policy must see them rendered."""
    ApprovalGateOperator(
        task_id="approve_export",
        kind="{{ params.kind }}",
        inputs=["postgres://prod:5432/crm/public/{{ params.table }}"],
        outputs=[{"namespace": "s3://partner-share", "name": "exports/{{ ds }}/customers.csv"}],
        poll_seconds=5.0,
    )


templated_export()
