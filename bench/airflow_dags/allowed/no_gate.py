"""``allowed_no_gate``: extract -> done, no gate; the baseline of ``bench_airflow_allowed.py``.

This file imports nothing of Sluicegate, so its task processes pay only Airflow's own parse.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="allowed_no_gate", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
     default_args={"owner": "carol", "retries": 0})  # fmt: skip
def allowed_no_gate() -> None:
    @task
    def extract() -> int:
        return 120000

    @task
    def done() -> None:
        pass

    extract() >> done()


allowed_no_gate()
