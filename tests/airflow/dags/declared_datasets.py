"""Test DAGs whose gate names its datasets the ways Airflow lets a task declare them: Assets,
OpenLineage datasets, an AssetAlias, an Asset with only a name (as inlets and outlets, not as
the gate's ``inputs``), and a retried gate whose rendered action changes between tries.

Each ``export`` task writes the file named by ``SLUICEGATE_TEST_MARKS`` plus its DAG id, so a
test sees whether it ran.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, AssetAlias, dag, task
from airflow.sdk.exceptions import AirflowException
from openlineage.client.event_v2 import Dataset

from sluicegate_airflow.operators import ApprovalGateOperator

#: The PII table of the example policy, as Airflow's asset URI names it.
CUSTOMERS = Asset("postgres://prod:5432/crm/public/customers")
PARTNER_FILE = Asset("s3://partner-share/exports/customers.csv")


def _mark(name: str) -> None:
    folder = os.environ.get("SLUICEGATE_TEST_MARKS")
    if folder:
        Path(folder, name).write_text("ran")


def _declared(dag_id: str, inlets: list[Any], **gate: Any) -> None:
    """extract -> a gate on exporting what ``inlets`` declare -> export."""

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
            kind="export",
            summary="export the partner's customers",
            inlets=inlets,
            outlets=[PARTNER_FILE],
            poll_seconds=5.0,
            **gate,
        )

        @task
        def export() -> None:
            _mark(f"{dag_id}.export")

        extract() >> approve >> export()

    build()


_declared("asset_inlet_export", [CUSTOMERS])
_declared(
    "openlineage_inlet_export",
    [Dataset(namespace="postgres://prod:5432", name="crm.public.customers")],
)
_declared("alias_inlet_export", [AssetAlias("customer-extracts")])
_declared("named_asset_inlet_export", [Asset(name="customers")])


@dag(
    dag_id="inline_asset_export",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"owner": "carol", "retries": 0},
)
def inline_asset_export() -> None:
    @task.sluicegate(  # type: ignore[attr-defined]
        kind="export",
        inlets=[Asset("postgresql://prod/crm/public/customers")],
        outlets=[PARTNER_FILE],
        poll_seconds=5.0,
    )
    def export() -> None:
        _mark("inline_asset_export.export")

    export()


inline_asset_export()


def _fail_first_try(context: Any, result: Any = None) -> None:
    """A ``post_execute`` that fails the first try after the gate has asked and passed (a
    retryable failure, as a lost worker or a flaky hook would be)."""
    if context["ti"].try_number == 1:
        raise AirflowException("the first try fails after the gate has asked")


@dag(
    dag_id="retry_changed_action",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"owner": "carol", "retries": 1, "retry_delay": timedelta(seconds=0)},
)
def retry_changed_action() -> None:
    approve = ApprovalGateOperator(
        task_id="approve_export",
        kind="export",
        summary="export the partner's customers",
        inputs=[{"namespace": "postgres://prod:5432", "name": "crm.public.customers"}],
        outputs=[{"namespace": "s3://partner-share", "name": "exports/customers.csv"}],
        # what the reviewers read changes from one try to the next (a row count, a query)
        context_data={"attempt": "{{ ti.try_number }}"},
        poll_seconds=5.0,
        post_execute=_fail_first_try,
    )

    @task
    def export() -> None:
        _mark("retry_changed_action.export")

    approve >> export()


retry_changed_action()


@dag(
    dag_id="refused_gate_retries",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"owner": "carol", "retries": 2, "retry_delay": timedelta(seconds=0)},
)
def refused_gate_retries() -> None:
    """A gate whose connection's token the server refuses (revoked, mistyped): asking again
    would be refused again, so the task fails once instead of using up its retries."""
    approve = ApprovalGateOperator(
        task_id="approve_export",
        kind="export",
        inputs=[CUSTOMERS],
        outputs=[PARTNER_FILE],
        sluicegate_conn_id="sluicegate_refused",
    )

    @task
    def export() -> None:
        _mark("refused_gate_retries.export")

    approve >> export()


refused_gate_retries()
