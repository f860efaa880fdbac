"""Definitions the Dagster tests run: a PII table, exports gated by Sluicegate, a routine read.

The server and token come from ``SLUICEGATE_TEST_URL`` / ``SLUICEGATE_TEST_TOKEN`` (set by
conftest.py's ``env`` fixture before a test imports this), ``SLUICEGATE_TEST_MAX_WAIT`` bounds
in-step waits. Each gated body writes a file under ``SLUICEGATE_TEST_MARKS`` so a test sees
whether it ran.
"""

import os
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    Definitions,
    EnvVar,
    In,
    Nothing,
    OpExecutionContext,
    Output,
    RetryPolicy,
    asset,
    define_asset_job,
    in_process_executor,
    job,
    op,
)

from dagster_sluicegate import (
    SluicegateResource,
    approval_gate_op,
    approval_required,
    approval_sensor,
)


def mark(name: str) -> None:
    Path(os.environ["SLUICEGATE_TEST_MARKS"], name).write_text("ran")


def resource() -> SluicegateResource:
    return SluicegateResource(
        server_url=EnvVar("SLUICEGATE_TEST_URL"),
        token=EnvVar("SLUICEGATE_TEST_TOKEN"),
        max_wait_seconds=float(os.environ.get("SLUICEGATE_TEST_MAX_WAIT", "60")),
    )


@asset(
    metadata={
        "dagster/table_name": "crm.public.customers",
        "sluicegate/namespace": "postgres://prod:5432",
    },
    owners=["carol@example.com"],
)
def customers() -> int:
    return 120000


@asset(
    deps=[customers],
    tags={"sluicegate/action": "export"},
    metadata={"sluicegate/destination": "s3://partner-share"},
    owners=["carol@example.com"],
    kinds={"s3"},
    description="Customers for the partner",
)
@approval_required
def customers_export(context: AssetExecutionContext) -> int:
    mark("customers_export")
    return 1


@asset(deps=[customers_export])
def export_receipt() -> None:
    mark("export_receipt")


@asset(
    deps=[customers],
    tags={"sluicegate/action": "export"},
    owners=["carol@example.com"],
    retry_policy=RetryPolicy(max_retries=2),
)
@approval_required
def retried_export(context: AssetExecutionContext) -> int:
    """An export whose step Dagster would retry twice: a gate the server refuses must not."""
    mark("retried_export")
    return 1


@asset(
    deps=[customers],
    tags={"sluicegate/action": "export"},
    owners=["carol@example.com"],
    output_required=False,
)
@approval_required(wait="sensor")
def nightly_export():  # type: ignore[no-untyped-def]
    mark("nightly_export")
    yield Output(1)  # output_required=False assets yield their output


@asset(
    metadata={
        "dagster/table_name": "sales.public.orders",
        "sluicegate/namespace": "postgres://prod:5432",
    },
    tags={"sluicegate/action": "read"},
)
@approval_required
def orders_summary(sluicegate: SluicegateResource) -> str:
    mark("orders_summary")
    return sluicegate.server_url  # the body may ask for the resource too


CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}


@op
def extract() -> int:
    return 3


gate = approval_gate_op("approve_export", kind="export", inputs=[CUSTOMERS])


@op(ins={"approved": In(Nothing)})
def ship(context: OpExecutionContext) -> None:
    mark("ship")


@job(executor_def=in_process_executor)
def ops_export() -> None:
    ship(approved=gate(extract()))


@op(tags={"sluicegate/action": "export"})
@approval_required(inputs=[CUSTOMERS])
def ship_decorated(n: int) -> int:
    mark("ship_decorated")
    return n


@job(executor_def=in_process_executor)
def ops_decorated() -> None:
    ship_decorated(extract())


ORDERS = {"namespace": "postgres://prod:5432", "name": "sales.public.orders"}
read_gate = approval_gate_op("check_orders", kind="read", inputs=[ORDERS])


@job(executor_def=in_process_executor)
def ops_read() -> None:
    """An op job whose gate the policy allows (a routine read)."""
    ship(approved=read_gate(extract()))


late_gate = approval_gate_op(
    "approve_late_export", kind="export", inputs=[CUSTOMERS], wait="sensor"
)


@op(ins={"approved": In(Nothing)})
def ship_late(context: OpExecutionContext) -> None:
    mark("ship_late")


@job(executor_def=in_process_executor)
def ops_export_late() -> None:
    ship_late(approved=late_gate(extract()))


late_sensor = approval_sensor(ops_export_late, name="late_export_approvals")

export_job = define_asset_job(
    "export_job",
    selection=[customers, customers_export, export_receipt],
    executor_def=in_process_executor,
)
nightly_sensor = approval_sensor([nightly_export], minimum_interval_seconds=5)

defs = Definitions(
    assets=[customers, customers_export, export_receipt, nightly_export, orders_summary],
    jobs=[export_job, ops_export, ops_export_late, ops_decorated, ops_read],
    sensors=[nightly_sensor, late_sensor],
    resources={"sluicegate": resource()},
)


def reconstruct_export_job():  # type: ignore[no-untyped-def]
    """For ``reconstructable``: re-execution rebuilds the job from this module. Its resource is
    made at each call, so the ``SLUICEGATE_TEST_MAX_WAIT`` a test sets applies (``defs``' own
    resource read it once, when this module was first imported)."""
    built = Definitions(
        assets=[customers, customers_export, export_receipt],
        jobs=[export_job],
        resources={"sluicegate": resource()},
    )
    return built.resolve_job_def("export_job")
