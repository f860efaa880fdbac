"""``allowed_gate_operator``: extract -> gate -> done, the gate an ``ApprovalGateOperator`` on
an action the policy allows (kind ``read``): the documented operator form."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from sluicegate_airflow.operators import ApprovalGateOperator

ORDERS = {"namespace": "postgres://prod:5432", "name": "sales.public.orders"}


@dag(dag_id="allowed_gate_operator", start_date=datetime(2026, 1, 1), schedule=None,
     catchup=False, default_args={"owner": "carol", "retries": 0})  # fmt: skip
def allowed_gate_operator() -> None:
    @task
    def extract() -> int:
        return 120000

    @task
    def done() -> None:
        pass

    gate = ApprovalGateOperator(
        task_id="gate",
        kind="read",
        summary="read sales.public.orders for the partner",
        inputs=[ORDERS],
        context_data={"rows": 120000},
    )
    extract() >> gate >> done()


allowed_gate_operator()
