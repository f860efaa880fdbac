r"""Example Dagster definitions: a PII table, an export of it gated by Sluicegate, and the sensor.

- ``customers``: the CRM's customer table (``crm.public.customers``: the example policy,
  examples/policy.yaml, classifies it ``pii``).
- ``customers_export``: copies it to the partner bucket. Its ``sluicegate/action`` tag says
  what it does; everything else the gate reads from Dagster (the upstream table, owners,
  kinds, metadata). The policy wants two data stewards; the step waits in place (long poll,
  up to the resource's ``max_wait_seconds``) and runs the moment the second approval lands.
  Carol owns it, so she can never approve it.
- ``nightly_partner_export``: the same export for long waits: the run ends at the gate
  (nothing runs, no worker waits) and ``partner_export_approvals`` launches it once approved.

Everything below in one command, from the repository's root: ``python3 dev.py demo --with
dagster`` (``--approve-as alice,bob`` to approve unattended); it runs
``nightly_partner_export``. By hand, in an environment with ``dagster-sluicegate``,
``dagster-webserver`` (``dagster dev`` needs it) and ``sluicegate[server]`` (``pip install
'./core[server]' ./dagster_integration 'dagster-webserver>=1.13,<1.14'``), from the
repository's root:

    sluicegate token create --db sqlite:///sluicegate.db --principal dagster --scope request
    sluicegate serve --db sqlite:///sluicegate.db --policy examples/policy.yaml

    # in another terminal: the UI on http://127.0.0.1:3000, and the daemon the sensor needs
    SLUICEGATE_SERVER_URL=http://127.0.0.1:8000 SLUICEGATE_TOKEN=sgreq_... \
        dagster dev -f examples/dagster/definitions.py

Materialize ``customers_export`` or ``nightly_partner_export`` in the UI; the run's log gives
the request's review link, whose last part is the request id. Approve it as two stewards:

    sluicegate token create --db sqlite:///sluicegate.db --policy examples/policy.yaml \
        --principal alice --scope review                   # and again for bob
    sluicegate requests approve <request id> --server http://127.0.0.1:8000 --token sgrev_...
"""

from collections.abc import Iterator
from typing import Any

from dagster import AssetExecutionContext, Definitions, EnvVar, Output, asset

from dagster_sluicegate import SluicegateResource, approval_required, approval_sensor

WAREHOUSE = {
    "dagster/table_name": "crm.public.customers",
    "sluicegate/namespace": "postgres://prod:5432",
}


@asset(metadata=WAREHOUSE, owners=["carol@example.com"], kinds={"postgres"})
def customers() -> int:
    """The CRM's customers (a row count stands in for the table here)."""
    return 120000


@asset(
    deps=[customers],
    tags={"sluicegate/action": "export"},
    metadata={"sluicegate/destination": "s3://partner-share/exports/customers.csv"},
    owners=["carol@example.com"],
    kinds={"s3"},
)
@approval_required
def customers_export(context: AssetExecutionContext) -> None:
    """Copy the customers to the partner's bucket, once two stewards approved."""
    context.log.info("exporting customers to s3://partner-share/exports/customers.csv")


@asset(
    deps=[customers],
    tags={"sluicegate/action": "export"},
    metadata={"sluicegate/destination": "s3://partner-share/exports/nightly.csv"},
    owners=["carol@example.com"],
    output_required=False,  # the run that ends at the gate materializes nothing
)
@approval_required(wait="sensor")
def nightly_partner_export(context: AssetExecutionContext) -> Iterator[Any]:
    """The nightly export: its run ends at the gate; the sensor launches it once approved."""
    context.log.info("exporting customers to s3://partner-share/exports/nightly.csv")
    yield Output(None)


defs = Definitions(
    assets=[customers, customers_export, nightly_partner_export],
    sensors=[
        approval_sensor(
            [nightly_partner_export], name="partner_export_approvals", minimum_interval_seconds=10
        )
    ],
    resources={
        "sluicegate": SluicegateResource(
            server_url=EnvVar("SLUICEGATE_SERVER_URL"), token=EnvVar("SLUICEGATE_TOKEN")
        )
    },
)
