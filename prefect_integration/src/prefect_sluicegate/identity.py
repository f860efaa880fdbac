"""Who is asking, in Prefect's terms: the gate's idempotency key, requester, lineage parent,
and the datasets its action names.

The key is ``prefect:{flow run id}:{step}:{digest}``, the digest that of the whole action as
sent (:func:`sluicegate.idempotency.action_digest`: kind, summary, datasets, destination,
environment, context). What stays the same when Prefect runs the step again decides what
reattaches:

- a task retry is the same task run of the same flow run: same key, same request;
- a re-run of the flow run (a flow retry, a run resumed after ``suspend_flow_run``, a crashed
  run restarted) keeps the flow run id, but its tasks get new task run ids; so the step is
  named by what does not change: the task's name (``flow`` directly in a flow), or ``step=``;
- a retry or re-run whose action changed (other datasets, other row counts in its context)
  is a new request, asked about again: an approval is given for one action;
- a new flow run (another run of the deployment) is a new request: an approval is given for
  one run.

Two gates on the same action in one task would share a request; pass ``step=`` to tell them
apart.

Datasets are Prefect ``Asset`` objects (named by their key), URIs, dicts and OpenLineage
datasets, named the OpenLineage way by :mod:`sluicegate.datasets`; one that cannot be named
raises :class:`~sluicegate.exceptions.DatasetError` before anything is sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from prefect.assets import Asset
from prefect.context import FlowRunContext, TaskRunContext

from sluicegate.datasets import to_assets
from sluicegate.idempotency import action_digest

__all__ = ["assets", "gate_identity", "idempotency_key", "requester_of"]

#: OpenLineage's namespace for the parent run, unless OPENLINEAGE_NAMESPACE says another.
DEFAULT_NAMESPACE = "prefect"


def idempotency_key(flow_run_id: str, step: str, action: Mapping[str, Any]) -> str:
    """The gate's key for ``action`` at ``step`` of the flow run (see the module's docstring).

    :raises ActionError: ``action`` is not a valid action.
    """
    return f"prefect:{flow_run_id}:{step}:{action_digest(action)}"


def requester_of(
    flow_ctx: FlowRunContext,
    task_ctx: TaskRunContext | None,
    *,
    owner: str | None = None,
) -> dict[str, Any]:
    """The requester: the flow (and task), its run, and who triggered it, with the lineage
    parent pointing at the flow run."""
    flow_run = flow_ctx.flow_run
    assert flow_run is not None  # checked by the gate
    flow_name = flow_ctx.flow.name if flow_ctx.flow is not None else flow_run.name
    task_name = task_ctx.task.name if task_ctx is not None else ""
    created_by = getattr(flow_run, "created_by", None)
    tries = task_ctx.task_run.run_count if task_ctx is not None else flow_run.run_count
    return {
        "orchestrator": "prefect",
        "job": f"{flow_name}.{task_name}" if task_name else flow_name,
        "run_id": str(flow_run.id),
        "step": task_name,
        "try_number": max(int(tries or 0), 0),
        "owner": owner,
        "triggered_by": getattr(created_by, "display_value", None) or None,
        "parent": {
            "namespace": os.environ.get("OPENLINEAGE_NAMESPACE") or DEFAULT_NAMESPACE,
            "name": flow_name,
            "run_id": str(flow_run.id),
        },
    }


def gate_identity(
    step: str | None, *, owner: str | None = None
) -> tuple[FlowRunContext, str, dict[str, Any]]:
    """``(flow run context, step, requester)`` of a gate called here, ``step`` defaulting to
    the task's name (``flow`` directly in a flow); RuntimeError outside a flow run."""
    flow_ctx = FlowRunContext.get()
    if flow_ctx is None or flow_ctx.flow_run is None:
        raise RuntimeError("approval_gate must be called inside a Prefect flow or task")
    task_ctx = TaskRunContext.get()
    if step is None:
        step = task_ctx.task.name if task_ctx is not None else "flow"
    return flow_ctx, step, requester_of(flow_ctx, task_ctx, owner=owner)


def assets(items: Sequence[Any], *, where: str) -> list[dict[str, Any]]:
    """Datasets as the API's assets (see the module's docstring); ``where`` (``inputs``)
    names them in the error.

    :raises DatasetError: one of them cannot be named.
    """
    if isinstance(items, (str, Mapping, Asset)):
        items = [items]
    return to_assets([i.key if isinstance(i, Asset) else i for i in items], where=where)
