"""Gated Dagster assets whose upstream table is declared each way Dagster lets an asset say
where it lives (the example policy's PII table ``crm.public.customers``), a partitioned one,
and one whose ``dagster/uri`` names nothing. The tests run them with ``materialize``; the
server and token come from the environment the test module sets (see ``gated_defs``).
"""

from __future__ import annotations

from dagster import AssetExecutionContext, AssetKey, AssetSpec, StaticPartitionsDefinition, asset

from dagster_sluicegate import approval_required
from tests.dagster.gated_defs import mark

EXPORT = {"sluicegate/action": "export"}

#: The table by its asset key, in the namespace of its sluicegate/namespace metadata.
by_key = AssetSpec(
    AssetKey(["crm", "public", "customers"]),
    metadata={"sluicegate/namespace": "postgres://prod:5432"},
)
#: The table by Dagster's dagster/uri metadata (UriMetadataSet), as Airflow's asset URI.
by_uri = AssetSpec(
    "customers_source", metadata={"dagster/uri": "postgres://prod:5432/crm/public/customers"}
)
#: The table by its dagster/table_name, in a namespace spelled the SQLAlchemy way.
by_table = AssetSpec(
    "customers_table",
    metadata={
        "dagster/table_name": "crm.public.customers",
        "sluicegate/namespace": "postgresql://prod",
    },
)


def _export(name: str, upstream: AssetSpec, **kw: object):  # type: ignore[no-untyped-def]
    @asset(
        name=name,
        deps=[upstream],
        tags=EXPORT,
        metadata={"dagster/uri": f"s3://partner-share/exports/{name}.csv"},
        owners=["carol@example.com"],
        **kw,  # type: ignore[arg-type]
    )
    @approval_required
    def export(context: AssetExecutionContext) -> None:
        mark(name)

    return export


export_by_key = _export("export_by_key", by_key)
export_by_uri = _export("export_by_uri", by_uri)
export_by_table = _export("export_by_table", by_table)
partitioned_export = _export(
    "partitioned_export", by_uri, partitions_def=StaticPartitionsDefinition(["eu", "us"])
)


@asset(tags=EXPORT, metadata={"dagster/uri": "partner share/customers.csv"})
@approval_required
def unparsable_export(context: AssetExecutionContext) -> None:
    mark("unparsable_export")
