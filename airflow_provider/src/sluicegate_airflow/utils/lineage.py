"""The gate in Airflow's OpenLineage events, both ways round.

- :func:`parent_run`: the identity Airflow's OpenLineage provider gives the gated task run,
  sent with the request so that the gate's own events (emitted by the server) hang under it;
- :func:`operator_lineage`: what the gate's ``get_openlineage_facets_on_*`` methods return for
  the task's own events: its datasets and the ``sluicegate_approval`` run facet.

The OpenLineage provider is optional: nothing here imports it unless it is already active in
this process, because importing it cold costs seconds and without it no event names the run.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

    from sluicegate.model import Requester
    from sluicegate.wire import RequestOut

__all__ = ["PROVIDER_ACTIVE", "operator_lineage", "parent_run"]

#: Loaded by the OpenLineage provider's listener when a transport is configured for this
#: process: its presence in ``sys.modules`` says the provider is active.
PROVIDER_ACTIVE = "airflow.providers.openlineage.plugins.adapter"


def parent_run(context: Context) -> dict[str, Any] | None:
    """The OpenLineage run of this task as the provider names it, or None without it."""
    if PROVIDER_ACTIVE not in sys.modules:
        return None
    try:
        from airflow.providers.openlineage.conf import namespace
        from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter
    except ImportError:
        return None
    ti = context["ti"]
    try:
        run_id = OpenLineageAdapter.build_task_instance_run_id(
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            try_number=ti.try_number,
            logical_date=context.get("logical_date") or context["dag_run"].run_after,
            map_index=ti.map_index if ti.map_index is not None else -1,
        )
    except Exception:  # an API change in the provider: lineage without a parent
        return None
    return {"namespace": namespace(), "name": f"{ti.dag_id}.{ti.task_id}", "run_id": run_id}


def operator_lineage(
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    answer: RequestOut | None,
    requester: Requester | None,
) -> Any:
    """The provider's ``OperatorLineage`` for a gate: its datasets, and once it has an answer,
    the ``sluicegate_approval`` facet of it (``requester`` names who asked, which a policy's
    answer to an older server leaves out)."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    from sluicegate.lineage.facet import FACET_NAME, facet_of_answer

    run_facets: dict[str, Any] = {}
    if answer is not None:
        run_facets[FACET_NAME] = facet_of_answer(answer, requester=requester)
    return OperatorLineage(
        inputs=[InputDataset(namespace=a["namespace"], name=a["name"]) for a in inputs],
        outputs=[OutputDataset(namespace=a["namespace"], name=a["name"]) for a in outputs],
        run_facets=run_facets,
    )
