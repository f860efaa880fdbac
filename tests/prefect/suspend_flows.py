"""A deployed flow for the suspend tests: served by a runner in a subprocess, which imports
this file again for every run (so it is a module of its own, not the test file).

Each step appends its name to ``$SLUICEGATE_TEST_MARKS/<flow run id>``: the test reads what
ran in which flow run from those files, across the runner's processes.

``python suspend_flows.py NAME`` serves the flow as deployment ``crm-export-suspended/NAME``
against ``PREFECT_API_URL``, polling for scheduled runs every second.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from prefect import flow, task
from prefect.runtime import flow_run

from prefect_sluicegate import approval_gate

CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}


def _mark(step: str) -> None:
    marks = Path(os.environ["SLUICEGATE_TEST_MARKS"])
    with (marks / str(flow_run.id)).open("a") as f:
        f.write(step + "\n")


@task
def extract() -> int:
    _mark("extract")
    return 120_000


@task
def export(rows: int) -> str:
    _mark("export")
    return f"exported {rows} rows"


@flow(name="crm-export-suspended")
def crm_export_suspended(block: str) -> str:
    rows = extract()
    answer = approval_gate(
        "export",
        summary="Export customers to the partner bucket",
        inputs=[CUSTOMERS],
        suspend=True,
        config=block,
    )
    _mark(f"passed:{answer.id}:{answer.status}")
    return export(rows)


if __name__ == "__main__":
    import asyncio

    from prefect.runner import Runner

    runner = Runner(name="sluicegate-suspend-tests", query_seconds=1, pause_on_shutdown=False)
    runner.add_flow(crm_export_suspended, name=sys.argv[1])
    asyncio.run(runner.start())
