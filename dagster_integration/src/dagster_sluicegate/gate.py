"""The gate as a call: the step's facts to the core's :class:`~sluicegate.gate.Gate`, and its
outcome to Dagster's way to go on, fail or end.

:func:`request_approval` is what the decorator and the gate op call before the step's body. It
opens the gate (or, in a run the sensor launched, attaches to the request the run carries) in
one call of the core gate, which retries an unreachable server, waits, and records the release,
and maps the :class:`~sluicegate.gate.GateOutcome`:

- ``proceed`` (allowed by the policy, approved, expired under ``on_timeout: allow``): returns
  the answer; the body runs;
- refused (denied by the policy or a reviewer, expired under ``on_timeout: deny``, cancelled):
  ``Failure(allow_retries=False)`` naming who denied and why; nothing runs;
- still pending, ``wait="step"``: the gate long-polled up to the resource's
  ``max_wait_seconds``; a retryable ``Failure`` (a retry reattaches to the same request);
- still pending, ``wait="sensor"``: records the request on the run (run tags the
  :func:`~dagster_sluicegate.sensor.approval_sensor` reads) and returns None: the step ends
  without output, so nothing downstream runs and no worker waits; the sensor launches the
  gated assets (or job) once the request is approved.

A run the sensor launched carries the request (``sluicegate/request.<step>`` run tag): the gate
takes it up instead of opening one, and refuses it unless it was opened for this same step and
this same action (its fingerprint). Fails closed: a server that cannot be reached in time fails
the step (retryable), one that refuses the call (a bad token) fails it without retries.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import TYPE_CHECKING, Any, Literal

from dagster import Failure, MetadataValue, OpExecutionContext

from dagster_sluicegate.describe import StepFacts, op_context
from dagster_sluicegate.resource import SluicegateResource

if TYPE_CHECKING:  # the core loads when a gate first asks, not when the code location loads
    from sluicegate.gate import GateOutcome
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


def approval_metadata(answer: RequestOut | GateOutcome) -> dict[str, Any]:
    """What the materialization (or the op's output) shows of the approval: its status and
    rule and, for a request, the request, its approvers, its review link and the whole
    ``sluicegate_approval`` OpenLineage facet as JSON.

    The policy's own allow shows its status and rule only: nobody reviewed anything, and the
    facet would cost each fresh step process openlineage-python's import (300-700 ms measured,
    ``bench/bench_dagster_step_process.py``) for a record the server's gate events already
    carry to the lineage backend.
    """
    from sluicegate.gate import GateOutcome

    outcome = answer if isinstance(answer, GateOutcome) else GateOutcome.of(answer)
    request = outcome.request
    md: dict[str, Any] = {
        "sluicegate/status": request.status,
        "sluicegate/rule": outcome.rule or "",
    }
    if not outcome.is_request:  # the policy's own answer opens no request
        return md
    from openlineage.client.serde import Serde

    from sluicegate.lineage.facet import facet_of_answer

    md["sluicegate/request_id"] = request.id
    md["sluicegate/approvers"] = ", ".join(outcome.approvers)
    if request.review_url:
        md["sluicegate/review_url"] = MetadataValue.url(request.review_url)
    md["sluicegate/approval"] = MetadataValue.json(Serde.to_dict(facet_of_answer(request)))
    return md


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
    from sluicegate.gate import OutcomeKind

    outcome = _pass(ctx, facts, sluicegate, wait)
    request = outcome.request
    if outcome.kind is OutcomeKind.PENDING:
        if wait == "sensor":
            _park(ctx, facts, request)
            return None
        raise Failure(
            description=f"Sluicegate: request {request.id} is still pending after "
            f"{sluicegate.max_wait_seconds:.0f} s (review at {request.review_url}); a retry "
            "or a re-execution reattaches to it, wait='sensor' ends the run instead",
            allow_retries=True,
        )
    if not outcome.proceed:
        raise _refused(outcome)
    if request.requester is None:  # an older server's policy answer: who asked is known here
        request = request.model_copy(update={"requester": facts.requester})
    return request


def _pass(
    ctx: OpExecutionContext, facts: StepFacts, sluicegate: SluicegateResource, wait: Wait
) -> GateOutcome:
    """The core gate: open (or take up the request the run carries), then, for a request that
    waits, wait in the step unless the sensor waits; the outcome settled. A request's answer
    is logged as soon as it is known, so the review link is in the run's log while the step
    waits; the policy's own allow is not (see :func:`_log`)."""
    from sluicegate.exceptions import ClientError, ForeignRequestError
    from sluicegate.gate import Gate, OutcomeKind

    carried = ctx.run.tags.get(step_tag("request", facts.step))
    waits = wait == "step"
    # One deadline for opening and waiting; it bounds the retries of an unreachable server too.
    deadline = time.monotonic() + sluicegate.max_wait_seconds
    try:
        gate = Gate(sluicegate.shared_client())
        timeout = sluicegate.max_wait_seconds
        if carried:
            outcome = gate.attach(carried, facts.action, facts.requester, timeout=timeout)
        else:
            outcome = gate.open(facts.key, facts.action, facts.requester, timeout=timeout)
        _log(ctx, outcome)
        if outcome.kind is OutcomeKind.PENDING and waits:
            left = max(0.0, deadline - time.monotonic())
            outcome = gate.wait(outcome.request.id, timeout=left)
            _log(ctx, outcome)
        return outcome
    except ForeignRequestError as err:
        raise Failure(description=f"Sluicegate: {err}", allow_retries=False) from err
    except ClientError as err:
        # Fail closed. Unreachable or a passing 5xx: retryable, and a retry reattaches. A 4xx
        # (a bad token, a key that is another gate's) would be refused again: no retry.
        what = f"could not read request {carried}" if carried else "could not open the gate"
        if waits:  # the same retries apply while it waits, until the same deadline
            what += ", or wait for its answer"
        raise Failure(
            description=f"Sluicegate: {what}: {err}", allow_retries=err.transient
        ) from err


def _log(ctx: OpExecutionContext, outcome: GateOutcome) -> None:
    """The outcome in the run's log, except the policy's own allow: each log line is an event
    written to the instance's event log (6.6 of 11.8 ms of an allowed gate, profiled), and
    such a gate has nothing to review or link; its status and rule are on the step's output
    metadata (:func:`approval_metadata`). A denial is logged: it fails the step."""
    if outcome.proceed and not outcome.is_request:
        return
    review = outcome.request.review_url
    ctx.log.info(f"Sluicegate: {outcome.message}" + (f"; review at {review}" if review else ""))


def _refused(outcome: GateOutcome) -> Failure:
    request = outcome.request
    metadata: dict[str, Any] = {
        "sluicegate/request_id": request.id,
        "sluicegate/status": request.status,
    }
    if request.review_url:
        metadata["sluicegate/review_url"] = MetadataValue.url(request.review_url)
    return Failure(
        description=f"Sluicegate: {outcome.message}",  # who denied, and why
        metadata=metadata,
        allow_retries=False,  # a retry would only reattach to the same refusal
    )


def _park(ctx: OpExecutionContext, facts: StepFacts, request: RequestOut) -> None:
    """Record on the run that this step waits for ``request``, for the sensor."""
    waiting = {
        "step": facts.step,
        "request_id": request.id,
        "assets": list(facts.assets),
        "partition": facts.partition,
    }
    ctx.instance.add_run_tags(
        ctx.run.run_id,
        {GATE_RUN_TAG: "waiting", step_tag("waiting", facts.step): json.dumps(waiting)},
    )
    ctx.log.info(
        f"Sluicegate: request {request.id} waits for approval; the run ends here and the "
        "approval sensor launches this step again once it is approved"
    )
