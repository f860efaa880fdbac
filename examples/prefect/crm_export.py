r"""Example flow: extract -> an approval gate on exporting a PII table -> the export.

The gate asks the Sluicegate server whether exporting ``crm.public.customers`` to the partner
bucket may happen. With the example policy (examples/policy.yaml) it needs two data stewards:
the flow run pauses, and goes on the moment the second approval lands (the server resumes it
through Prefect's API); a denial fails the run with the reviewer's comment. Carol owns the
job, so she can never approve it.

Everything below in one command, from the repository's root: ``python3 dev.py demo --with
prefect`` (``--approve-as alice,bob`` to approve unattended). By hand, in an environment with
``prefect-sluicegate`` and ``sluicegate[server]`` (``pip install './core[server]'
./prefect_integration``), each command in its own terminal, from the repository's root:

    prefect server start                                   # Prefect's API and UI on :4200

    export PREFECT_API_URL=http://127.0.0.1:4200/api       # in each terminal below
    sluicegate token create --db sqlite:///sluicegate.db --principal prefect --scope request
    SLUICEGATE_PREFECT__API_URL=$PREFECT_API_URL \
        sluicegate serve --db sqlite:///sluicegate.db --policy examples/policy.yaml

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    SLUICEGATE_SERVER_URL=http://127.0.0.1:8000 SLUICEGATE_TOKEN=sgreq_... \
        python examples/prefect/crm_export.py              # serves the flow (flow.serve)

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    prefect deployment run crm-export/crm-export           # a run: it pauses at the gate
    sluicegate token create --db sqlite:///sluicegate.db --policy examples/policy.yaml \
        --principal alice --scope review                   # and again for bob
    sluicegate requests approve <request id> --server http://127.0.0.1:8000 --token sgrev_...

The flow run pauses at the gate (Paused in Prefect's UI; the flow's log gives the request's
review link, whose last part is the request id) and goes on the moment the second approval
lands. Both URLs matter: the flow runs against the Prefect server (a flow run
without ``PREFECT_API_URL`` gets a temporary one that nothing else can reach), and the
Sluicegate server resumes the run through ``SLUICEGATE_PREFECT__API_URL`` (without it, the
gate resumes the run itself and logs "Sluicegate did not resume this flow run in time").
A saved ``SluicegateConfig`` block, passed as ``config="<its name>"``, can replace the two
``SLUICEGATE_`` variables of the flow.
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
    # Served, as deployed flows run: each run of the deployment starts in a process of its own.
    crm_export.serve(name="crm-export")
