"""Who is asking, in Prefect's terms: the gate's idempotency key, requester and lineage parent.

The key is ``prefect:{flow run id}:{step}``. What stays the same when Prefect runs the step
again decides what reattaches:

- a task retry is the same task run of the same flow run: same key, same request;
- a re-run of the flow run (a flow retry, a run resumed after ``suspend_flow_run``, a crashed
  run restarted) keeps the flow run id, but its tasks get new task run ids; so the step is
  named by what does not change: the task's name (``flow`` directly in a flow) and a digest of
  the action's kind, datasets and destination (not its context, which may hold row counts
  that change from one attempt to the next);
- a new flow run (another run of the deployment) is a new request: an approval is given for
  one run.

Two gates on the same action in one task would share a request; pass ``step=`` to tell them
apart.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from prefect.context import FlowRunContext, TaskRunContext

__all__ = ["action_digest", "gate_identity", "idempotency_key", "requester_of"]

#: OpenLineage's namespace for the parent run, unless OPENLINEAGE_NAMESPACE says another.
DEFAULT_NAMESPACE = "prefect"


def action_digest(action: Mapping[str, Any]) -> str:
    """A short digest of what the action touches (kind, datasets, destination)."""
    what = {
        "kind": action.get("kind"),
        "inputs": [(a.get("namespace"), a.get("name")) for a in action.get("inputs", [])],
        "outputs": [(a.get("namespace"), a.get("name")) for a in action.get("outputs", [])],
        "destination": action.get("destination"),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def idempotency_key(flow_run_id: str, step: str) -> str:
    """The gate's key (see the module's docstring)."""
    return f"prefect:{flow_run_id}:{step}"


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
    action: Mapping[str, Any], step: str | None, *, owner: str | None = None
) -> tuple[FlowRunContext, str, dict[str, Any]]:
    """``(flow run context, key, requester)`` of a gate called here; RuntimeError outside a
    flow run."""
    flow_ctx = FlowRunContext.get()
    if flow_ctx is None or flow_ctx.flow_run is None:
        raise RuntimeError("approval_gate must be called inside a Prefect flow or task")
    task_ctx = TaskRunContext.get()
    if step is None:
        where = task_ctx.task.name if task_ctx is not None else "flow"
        step = f"{where}:{action_digest(action)}"
    key = idempotency_key(str(flow_ctx.flow_run.id), step)
    return flow_ctx, key, requester_of(flow_ctx, task_ctx, owner=owner)


def assets(items: Sequence[Any]) -> list[dict[str, Any]]:
    """Datasets as the API's assets: dicts as given, ``scheme://authority/path`` URIs split."""
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, Mapping):
            out.append(dict(item))
            continue
        uri = str(item)
        scheme, sep, rest = uri.partition("://")
        if not sep or "/" not in rest:
            raise ValueError(
                f"dataset {uri!r} is neither a dict with namespace and name nor a "
                "scheme://authority/name URI"
            )
        authority, _, name = rest.partition("/")
        out.append({"namespace": f"{scheme}://{authority}", "name": name})
    return out
