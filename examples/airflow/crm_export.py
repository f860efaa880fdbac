"""Example DAG: extract -> an approval gate on exporting a PII table -> the export.

The gate asks the Sluicegate server (the ``sluicegate_default`` Airflow connection) whether
exporting ``crm.public.customers`` to the partner bucket may happen. With the example policy
(examples/policy.yaml) it needs two data stewards; the task defers (no worker is held) and
the export runs the moment the second approval lands. Carol owns the DAG, so she can never
approve it, nor can whoever triggered the run.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from sluicegate_airflow.operators import ApprovalGateOperator

CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}
PARTNER_FILE = {"namespace": "s3://partner-share", "name": "exports/customers.csv"}


@dag(
    dag_id="crm_export",
    start_date=datetime(2026, 1, 1),
    schedule="@daily",
    catchup=False,
    default_args={"owner": "carol"},
    tags=["sluicegate"],
)
def crm_export() -> None:
    @task
    def extract() -> int:
        return 120_000  # rows that would go out (shown to the reviewers)

    rows = extract()
    approve = ApprovalGateOperator(
        task_id="approve_export",
        kind="export",
        summary="Export customers to the partner bucket",
        inputs=[CUSTOMERS],
        outputs=[PARTNER_FILE],
        destination="s3://partner-share/exports/customers.csv",
        context_data={"rows": "{{ ti.xcom_pull(task_ids='extract') }}"},
    )

    @task
    def export() -> None:
        print("exporting customers to s3://partner-share/exports/customers.csv")

    rows >> approve >> export()


crm_export()
