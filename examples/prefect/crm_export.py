"""Example flow: extract -> an approval gate on exporting a PII table -> the export.

The gate asks the Sluicegate server whether exporting ``crm.public.customers`` to the partner
bucket may happen. With the example policy (examples/policy.yaml) it needs two data stewards:
the flow run pauses, and goes on the moment the second approval lands (the server resumes it
through Prefect's API); a denial fails the run with the reviewer's comment. Carol owns the
job, so she can never approve it.

Run it against a server (see the Prefect section of the README)::

    sluicegate serve --policy examples/policy.yaml      # with SLUICEGATE_PREFECT__API_URL set
    SLUICEGATE_SERVER_URL=http://127.0.0.1:8000 SLUICEGATE_TOKEN=sgreq_... \
        python examples/prefect/crm_export.py

or save a ``SluicegateConfig`` block and pass ``config="<its name>"`` to the gate.
"""

from __future__ import annotations

from prefect import flow, task

from prefect_sluicegate import approval_gate

CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}
PARTNER_FILE = "s3://partner-share/exports/customers.csv"


@task
def extract() -> int:
    return 120_000  # rows that would go out (shown to the reviewers)


@task
def export(rows: int) -> None:
    print(f"exporting {rows} customers to {PARTNER_FILE}")


@flow(name="crm-export", log_prints=True)
def crm_export() -> None:
    rows = extract()
    approval_gate(
        "export",
        summary="Export customers to the partner bucket",
        inputs=[CUSTOMERS],
        outputs=[PARTNER_FILE],
        destination=PARTNER_FILE,
        context={"rows": rows},
        owner="carol",
    )
    export(rows)


if __name__ == "__main__":
    crm_export()
