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

Datasets: a Prefect ``Asset`` is turned into its key (a URI); that, and every other
declaration (URIs, dicts, OpenLineage datasets), is named the OpenLineage way by the core's one
conversion, :func:`sluicegate.datasets.to_asset`. One that cannot be named raises
:class:`~sluicegate.exceptions.DatasetError` before anything is sent.

The lineage parent is the run openlineage-prefect emits for the task (or, directly in a flow,
the flow) the gate runs in: see :func:`lineage_parent`.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from prefect.assets import Asset
from prefect.context import FlowRunContext, TaskRunContext

if TYPE_CHECKING:  # the core's model loads when a gate first asks
    from sluicegate.model import Action, ParentRun, Requester

__all__ = [
    "assets",
    "gate_identity",
    "idempotency_key",
    "lineage_parent",
    "requester_of",
    "static_uuid",
]

#: The parent's namespace unless OPENLINEAGE_NAMESPACE says another: openlineage-prefect's.
DEFAULT_NAMESPACE = "default"
#: What openlineage-prefect strips from a task run's name to name the task's job (``-a1b``).
_RUN_SUFFIX = re.compile(r"-[a-f0-9]+$")


def idempotency_key(flow_run_id: str, step: str, action: Action | Mapping[str, Any]) -> str:
    """The gate's key for ``action`` at ``step`` of the flow run (see the module's docstring).

    :raises ActionError: ``action`` is not a valid action.
    """
    from sluicegate.idempotency import action_digest

    return f"prefect:{flow_run_id}:{step}:{action_digest(action)}"


def lineage_parent(flow_ctx: FlowRunContext, task_ctx: TaskRunContext | None) -> ParentRun:
    """The OpenLineage run openlineage-prefect emits for the task the gate runs in (directly in
    a flow: for the flow run), as the gate's ``parent``.

    Its naming, read from openlineage-prefect 0.0.1b22 (``prefect_adapter/listener.py``):
    the namespace is ``OPENLINEAGE_NAMESPACE`` (a deployment sets it in its job variables'
    ``env``, which is the flow run's environment too), else ``default``; a flow's job is the
    flow's name (the flow run's name with ``FLOW_NAME_TYPE=flow-run``); a task's job is the
    task run's name less its generated suffix (the whole name with ``TASK_NAME_TYPE=full``
    and ``JOB_NAME_TYPE=full``); a run id is ``generate_static_uuid(start time,
    "{namespace}.{job}")``, the start time being the run's own, which Prefect keeps in the
    run's context. A run not yet started has no such id: its Prefect id stands in.
    """
    from sluicegate.model import ParentRun

    namespace = os.environ.get("OPENLINEAGE_NAMESPACE") or DEFAULT_NAMESPACE
    if task_ctx is not None:
        run: Any = task_ctx.task_run
        name = run.name
        # As the listener decides: its "base" default wins unless both variables say "full".
        if "base" in (
            os.environ.get("JOB_NAME_TYPE", "base"),
            os.environ.get("TASK_NAME_TYPE", "base"),
        ):
            name = _RUN_SUFFIX.sub("", name)
    else:
        run = flow_ctx.flow_run
        assert run is not None  # checked by the gate
        by_run = os.environ.get("FLOW_NAME_TYPE", "flow") == "flow-run"
        name = run.name if by_run or flow_ctx.flow is None else flow_ctx.flow.name
    started = getattr(run, "start_time", None)
    run_id = (
        static_uuid(started, f"{namespace}.{name}".encode())
        if started is not None
        else uuid.UUID(str(run.id))
    )
    return ParentRun(namespace=namespace, name=name, run_id=run_id)


def static_uuid(instant: datetime, data: bytes) -> uuid.UUID:
    """openlineage-python's ``generate_static_uuid(instant, data)``: a UUIDv7 of the instant's
    millisecond whose last 76 bits are the SHA-1 of the instant's UTC ISO form plus ``data``.

    Computed here because importing ``openlineage.client.uuid`` loads all of
    ``openlineage.client`` (half a second) into every flow run that reaches a gate; a test
    holds it equal to openlineage-python's own.
    """
    utc = instant.astimezone(timezone.utc)
    millis = int(utc.timestamp() * 1000) & ((1 << 48) - 1)
    digest = hashlib.sha1(utc.isoformat().encode() + data, usedforsecurity=False).digest()
    node = int.from_bytes(digest, "big") >> 84  # the first 76 bits
    value = (millis << 80) | (node & ((1 << 80) - 1))
    value = (value & ~(0xF000 << 64)) | (7 << 76)  # version 7
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # the RFC 4122 variant
    return uuid.UUID(int=value)


def requester_of(
    flow_ctx: FlowRunContext,
    task_ctx: TaskRunContext | None,
    *,
    owner: str | None = None,
) -> Requester:
    """The requester: the flow (and task), its run, and who triggered it, with the lineage
    parent pointing at the task's (else the flow's) OpenLineage run."""
    from sluicegate.model import Requester

    flow_run = flow_ctx.flow_run
    assert flow_run is not None  # checked by the gate
    flow_name = flow_ctx.flow.name if flow_ctx.flow is not None else flow_run.name
    task_name = task_ctx.task.name if task_ctx is not None else ""
    created_by = getattr(flow_run, "created_by", None)
    tries = task_ctx.task_run.run_count if task_ctx is not None else flow_run.run_count
    return Requester(
        orchestrator="prefect",
        job=f"{flow_name}.{task_name}" if task_name else flow_name,
        run_id=str(flow_run.id),
        step=task_name,
        try_number=max(int(tries or 0), 0),
        owner=owner,
        triggered_by=getattr(created_by, "display_value", None) or None,
        parent=lineage_parent(flow_ctx, task_ctx),
    )


def gate_identity(
    step: str | None, *, owner: str | None = None
) -> tuple[FlowRunContext, str, Requester]:
    """``(flow run context, step, requester)`` of a gate called here, ``step`` defaulting to
    the task's name (``flow`` directly in a flow); RuntimeError outside a flow run."""
    flow_ctx = FlowRunContext.get()
    if flow_ctx is None or flow_ctx.flow_run is None:
        raise RuntimeError("approval_gate must be called inside a Prefect flow or task")
    task_ctx = TaskRunContext.get()
    if step is None:
        step = task_ctx.task.name if task_ctx is not None else "flow"
    return flow_ctx, step, requester_of(flow_ctx, task_ctx, owner=owner)


def assets(items: Sequence[Any] | Any, *, where: str) -> list[dict[str, Any]]:
    """Datasets as the API's assets (see the module's docstring): a Prefect ``Asset`` by its
    key, anything else as given, each through :func:`~sluicegate.datasets.to_asset`. A lone
    declaration counts as a list of one; ``where`` (``inputs``) names them in an error
    (``inputs[0]: cannot name ...``).

    :raises DatasetError: one of them cannot be named.
    """
    from sluicegate.datasets import to_asset

    if isinstance(items, (str, Mapping, Asset)):
        items = [items]
    return [
        to_asset(item.key if isinstance(item, Asset) else item, where=f"{where}[{i}]")
        for i, item in enumerate(items)
    ]
