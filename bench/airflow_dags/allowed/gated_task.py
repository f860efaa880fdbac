"""``allowed_gated_task``: extract -> done, done's body behind its own gate, in the documented
form ``@task.sluicegate(...)``, on an action the policy allows (kind ``read``).

``task.sluicegate`` is found through Airflow's provider registry, which imports
``sluicegate_airflow.decorators`` while this file is parsed, in every task process of this DAG.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

ORDERS = {"namespace": "postgres://prod:5432", "name": "sales.public.orders"}


@dag(dag_id="allowed_gated_task", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
     default_args={"owner": "carol", "retries": 0})  # fmt: skip
def allowed_gated_task() -> None:
    @task
    def extract() -> int:
        return 120000

    @task.sluicegate(task_id="done", kind="read", inputs=[ORDERS])  # type: ignore[attr-defined]
    def done() -> None:
        pass

    extract() >> done()


allowed_gated_task()
