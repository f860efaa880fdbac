"""``allowed_plain_task``: extract -> gate -> done, the gate's place taken by a trivial
``@task``: what any task in that place costs, to compare ``ApprovalGateOperator`` with."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="allowed_plain_task", start_date=datetime(2026, 1, 1), schedule=None,
     catchup=False, default_args={"owner": "carol", "retries": 0})  # fmt: skip
def allowed_plain_task() -> None:
    @task
    def extract() -> int:
        return 120000

    @task(task_id="gate")
    def gate() -> None:
        pass

    @task
    def done() -> None:
        pass

    extract() >> gate() >> done()


allowed_plain_task()
