"""Example DAG: extract -> an approval gate on exporting a PII table -> the export.

The gate asks the Sluicegate server (the ``sluicegate_default`` Airflow connection) whether
exporting ``crm.public.customers`` to the partner bucket may happen. With the example policy
(examples/policy.yaml) it needs two data stewards; the task defers (no worker is held: the
triggerer waits, so run Airflow with one) and the export runs the moment the second approval
lands. Carol owns the DAG, so she can never approve it, nor can whoever triggered the run.

See it run, from the root of a checkout, in one command: Airflow (``airflow standalone``), the
approval server and this DAG, with Alice and Bob approving from a second process (leave
``--approve-as`` out to approve yourself with the printed links or commands)::

    python3 dev.py demo --with airflow --approve-as alice,bob

By hand, on your own Airflow 3.3: ``pip install './core[server]' ./airflow_provider``, start
``sluicegate serve --policy examples/policy.yaml``, make a request-scoped token with
``sluicegate token create --principal airflow-prod --scope request``, give it to Airflow as
``AIRFLOW_CONN_SLUICEGATE_DEFAULT='{"conn_type": "sluicegate", "host":
"http://127.0.0.1:8000", "password": "<the token>"}'``, put this file in the dags folder,
start Airflow with its triggerer (``airflow standalone`` does) and unpause ``crm_export``:
its daily run starts and halts at the gate (airflow_provider/README.md walks through it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from sluicegate_airflow.operators import ApprovalGateOperator

CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}
PARTNER_FILE = {"namespace": "s3://partner-share", "name": "exports/customers.csv"}


@dag(
    dag_id="crm_export",
    start_date=datetime(2026, 1, 1),
    schedule="@daily",
    catchup=False,
    # One retry for what Airflow itself can get wrong: when a trigger fires within seconds of the
    # deferral, the scheduler may read the deferring worker's late exit as a state mismatch and
    # fail the resumed task (apache/airflow issues 67287, 71580, 72716; seen with Airflow 3.3 on
    # a loaded machine). The retry reattaches to the same, already approved request and goes on;
    # a denial or a policy refusal fails the task without using the retry.
    default_args={"owner": "carol", "retries": 1, "retry_delay": timedelta(seconds=5)},
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
