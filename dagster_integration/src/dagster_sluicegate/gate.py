"""The gate itself: ask the server whether a step may run, and wait as the step was told to.

:func:`request_approval` is what the decorator and the gate op call before the step's body:

- allowed by policy: returns at once (one round trip, nobody notified);
- denied by policy, denied by a reviewer, expired under ``on_timeout: deny``, cancelled:
  raises ``Failure(allow_retries=False)`` naming who denied and why; nothing runs;
- needs approval, ``wait="step"``: long-polls in the step, up to the resource's
  ``max_wait_seconds``, and returns the moment the request is approved; still pending then,
  it fails with a retryable ``Failure`` (a retry reattaches to the same request);
- needs approval, ``wait="sensor"``: records the request on the run (run tags the
  :func:`~dagster_sluicegate.sensor.approval_sensor` reads) and returns None: the step ends
  without output, so nothing downstream runs and no worker waits; the sensor launches the
  gated assets (or job) once the request is approved.

A run the sensor launched carries the request (``sluicegate/request.<step>`` run tag): the
gate checks that request instead of opening one, and refuses it unless it was opened for this
same step and this same action (its fingerprint) and lets the step go on. Every gate that lets
a request's step go on records it (``release``) for the audit log.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any, Literal

from dagster import Failure, MetadataValue

from dagster_sluicegate.describe import StepFacts, op_context
from dagster_sluicegate.resource import SluicegateResource
from sluicegate.client import GateRefused, SluicegateClient
from sluicegate.exceptions import ClientError
from sluicegate.model import Action
from sluicegate.wire import RequestOut

__all__ = [
    "GATE_RUN_TAG",
    "WAITING_TAG_PREFIX",
    "Wait",
    "approval_metadata",
    "request_approval",
    "step_tag",
]

Wait = Literal["step", "sensor"]

#: ``waiting`` on a run that ended at a gate until the sensor has settled all its requests.
GATE_RUN_TAG = "sluicegate/gate"
#: ``sluicegate/waiting.<step>`` = JSON {step, request_id, assets, partition} on such a run.
WAITING_TAG_PREFIX = "sluicegate/waiting."
REQUEST_ID_TAG = "sluicegate/request_id"
APPROVERS_TAG = "sluicegate/approvers"


def step_tag(kind: str, step: str) -> str:
    """The run tag ``sluicegate/<kind>.<step>`` (``waiting``, ``request``, ``settled``).

    Dagster wants tag keys of alphanumerics and ``_-.`` in at most two ``/`` sections of at
    most 63 characters each; other characters of a step key (``op[0]``) become ``_``, and a
    step key that had to change gets a short hash of the original, so two steps never share
    a tag.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", step)
    room = 63 - len(kind) - 1
    if safe != step or len(safe) > room:
        digest = hashlib.sha256(step.encode()).hexdigest()[:8]
        safe = f"{safe[: room - 9]}-{digest}"
    return f"sluicegate/{kind}.{safe}"


def approvers(answer: RequestOut) -> list[str]:
    return [d.reviewer for d in answer.decisions if d.verdict.value == "approve"]


def approval_metadata(answer: RequestOut) -> dict[str, Any]:
    """What the materialization (or the op's output) shows of the approval: the request,
    its approvers, and the whole ``sluicegate_approval`` OpenLineage facet as JSON."""
    from openlineage.client.serde import Serde

    from sluicegate.lineage.facet import facet_of_answer

    md: dict[str, Any] = {
        "sluicegate/status": answer.status,
        "sluicegate/rule": answer.rule or "",
    }
    if answer.status != "allowed":  # a policy answer opens no request
        md["sluicegate/request_id"] = answer.id
        md["sluicegate/approvers"] = ", ".join(approvers(answer))
        if answer.review_url:
            md["sluicegate/review_url"] = MetadataValue.url(answer.review_url)
    md["sluicegate/approval"] = MetadataValue.json(Serde.to_dict(facet_of_answer(answer)))
    return md


def _refused(answer: RequestOut) -> Failure:
    metadata: dict[str, Any] = {
        "sluicegate/request_id": answer.id,
        "sluicegate/status": answer.status,
    }
    if answer.review_url:
        metadata["sluicegate/review_url"] = MetadataValue.url(answer.review_url)
    return Failure(
        description=f"Sluicegate: {GateRefused(answer).detail}",  # who denied, and why
        metadata=metadata,
        allow_retries=False,  # a retry would only reattach to the same refusal
    )


def _unreachable(err: ClientError, what: str) -> Failure:
    # Fail closed. An unreachable server or a 5xx may pass: retryable, and a retry reattaches.
    # A 4xx (a key that is another gate's, a bad action) will be refused again: no retry.
    return Failure(description=f"Sluicegate: {what}: {err}", allow_retries=err.transient)


def _open(client: SluicegateClient, facts: StepFacts, deadline: float) -> RequestOut:
    """Open (or reattach to) the gate; an unreachable server is retried until ``deadline``."""
    try:
        return client.open_until(facts.key, facts.action, facts.requester, deadline=deadline)
    except ClientError as err:
        raise _unreachable(err, "could not open the gate") from err


def _launched_for(client: SluicegateClient, facts: StepFacts, request_id: str) -> RequestOut:
    """The request a sensor-launched run carries, if it is this step's and this action's."""
    try:
        answer = client.get(request_id)
    except ClientError as err:
        raise _unreachable(err, f"could not read request {request_id}") from err
    requester = answer.requester or {}
    expected = Action.model_validate(facts.action).fingerprint()
    mismatch = (
        "it was not opened by Dagster"
        if requester.get("orchestrator") != "dagster"
        else f"it was opened for step {requester.get('step')!r}"
        if requester.get("step") != facts.requester["step"]
        else "it was approved for a different action"
        if answer.fingerprint != expected
        else None
    )
    if mismatch:
        raise Failure(
            description=f"Sluicegate: the run names request {request_id} for step "
            f"{facts.requester['step']!r}, but {mismatch}; nothing runs",
            allow_retries=False,
        )
    return answer


def request_approval(
    context: Any, sluicegate: SluicegateResource, *, wait: Wait = "step", **action: Any
) -> RequestOut | None:
    """Gate the step of ``context`` (see the module's docstring). ``action`` overrides what is
    read from Dagster (``kind``, ``summary``, ``inputs``, ``outputs``, ``destination``,
    ``environment``, ``context_data``). Returns the answer the step goes on with, or None when
    ``wait="sensor"`` and the request waits (the step must end without output)."""
    if wait not in ("step", "sensor"):
        raise ValueError(f"wait must be 'step' or 'sensor', not {wait!r}")
    ctx = op_context(context)
    facts = StepFacts.of(
        ctx,
        asset_namespace=sluicegate.asset_namespace,
        lineage_namespace=sluicegate.lineage_namespace,
        **action,
    )
    step = facts.requester["step"]
    deadline = time.monotonic() + sluicegate.max_wait_seconds
    with sluicegate.get_client() as client:
        carried = ctx.run.tags.get(step_tag("request", step))
        if carried:
            answer = _launched_for(client, facts, carried)
        else:
            answer = _open(client, facts, deadline)
        if answer.requester is None:  # an older server's policy answer: who asked is known here
            answer = answer.model_copy(update={"requester": facts.requester})
        ctx.log.info(
            f"Sluicegate: {answer.outcome}"
            + (f"; review at {answer.review_url}" if answer.review_url else "")
        )
        if not answer.terminal and wait == "sensor":
            _park(ctx, facts, answer)
            return None
        if not answer.terminal:
            answer = client.wait_until_done(answer.id, deadline=deadline)
        if not answer.terminal:
            raise Failure(
                description=f"Sluicegate: request {answer.id} is still pending after "
                f"{sluicegate.max_wait_seconds:.0f} s (review at {answer.review_url}); a retry "
                "or a re-execution reattaches to it, wait='sensor' ends the run instead",
                allow_retries=True,
            )
        if not answer.may_proceed:
            raise _refused(answer)
        client.record_release(answer)
    return answer


def _park(ctx: Any, facts: StepFacts, answer: RequestOut) -> None:
    """Record on the run that this step waits for ``answer``, for the sensor."""
    step = facts.requester["step"]
    waiting = {
        "step": step,
        "request_id": answer.id,
        "assets": list(facts.assets),
        "partition": facts.partition,
    }
    ctx.instance.add_run_tags(
        ctx.run.run_id,
        {GATE_RUN_TAG: "waiting", step_tag("waiting", step): json.dumps(waiting)},
    )
    ctx.log.info(
        f"Sluicegate: request {answer.id} waits for approval; the run ends here and the "
        "approval sensor launches this step again once it is approved"
    )
