"""The OpenLineage RunEvents a gate emits: pure builders, no I/O.

A gate is a run of its own job (``<requester job>.approval_gate`` in namespace ``sluicegate``),
a child of the orchestrator's task run through the ``parent`` facet. Its events follow the
gate's life::

    gate opens, pending ............ START
    a decision lands (still pending,
      or just approved) ............ OTHER
    released ....................... COMPLETE
    allowed by policy .............. START, COMPLETE
    denied (reviewer or policy) .... FAIL         (START, FAIL for a policy answer)
    expired or cancelled ........... ABORT

:func:`event_types_for` answers "which events for this transition"; :func:`gate_event` builds
one; :func:`event_dict` gives the JSON exactly as it goes on the wire.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import JobFacet, RunFacet, job_type_job, parent_run, tags_dataset
from openlineage.client.serde import Serde
from openlineage.client.uuid import generate_new_uuid

from sluicegate.lineage.facet import (
    FACET_NAME,
    GATE_STATUSES,
    PRODUCER,
    ApprovalClassification,
    ApprovalDecision,
    ApprovalRequester,
    SluicegateApprovalRunFacet,
)
from sluicegate.lineage.readback import (
    DECLARED_SOURCE,
    DERIVED_SOURCE,
    GATE_INTEGRATION,
    GATE_JOB_TYPE,
)
from sluicegate.model import (
    Action,
    ApprovalRequest,
    Asset,
    ClassificationSource,
    Decision,
    ParentRun,
    Requester,
    Verdict,
    utcnow,
)

__all__ = [
    "EVENT_TYPES",
    "GATE_JOB_NAMESPACE",
    "ClassificationProvenance",
    "GateFacts",
    "event_dict",
    "event_types_for",
    "facts_for_policy_answer",
    "facts_for_request",
    "gate_event",
    "gate_job_name",
]

#: The namespace of every gate's job, unless the server is told otherwise.
GATE_JOB_NAMESPACE = "sluicegate"

#: The event types a gate emits (OpenLineage's RUNNING is never used: a gate has no progress).
EVENT_TYPES: tuple[str, ...] = ("START", "OTHER", "COMPLETE", "FAIL", "ABORT")

#: Where each dataset's classifications came from: dataset key ``namespace::name`` -> sources
#: (the model's, or plain ``{classification, source, path}`` mappings as the graph gives them).
ClassificationProvenance = Mapping[str, Sequence[ClassificationSource | Mapping[str, Any]]]


# status -> the event that ends (or advances) a gate whose START has already gone out.
_NEXT_EVENT = {
    "pending": "OTHER",
    "approved": "OTHER",
    "released": "COMPLETE",
    "allowed": "COMPLETE",
    "denied": "FAIL",
    "expired": "ABORT",
    "cancelled": "ABORT",
}


@dataclass(frozen=True, kw_only=True)
class GateFacts:
    """Everything an event about one gate says; build it with :func:`facts_for_request` or
    :func:`facts_for_policy_answer`.

    ``classifications`` is the provenance of each dataset's classifications (may be empty);
    ``parent`` is the orchestrator run the gate belongs to, normally ``requester.parent``.
    """

    job_namespace: str = GATE_JOB_NAMESPACE
    job_name: str
    run_id: uuid.UUID
    status: str
    request: ApprovalRequest | None = None
    action: Action
    requester: Requester
    rule: str | None = None
    required_approvals: int = 0
    decisions: tuple[Decision, ...] = ()
    review_url: str | None = None
    classifications: ClassificationProvenance = field(default_factory=dict)
    parent: ParentRun | None = None

    def __post_init__(self) -> None:
        if self.status not in GATE_STATUSES:
            raise ValueError(
                f"gate status {self.status!r} is not one of {', '.join(GATE_STATUSES)}"
            )

    @property
    def approvals(self) -> int:
        """Distinct reviewers who approved so far."""
        return len({d.reviewer for d in self.decisions if d.verdict is Verdict.APPROVE})


def gate_job_name(requester: Requester) -> str:
    """The gate's job name: the requester's job plus ``.approval_gate``."""
    return f"{requester.job}.approval_gate" if requester.job else "approval_gate"


def facts_for_request(
    request: ApprovalRequest,
    *,
    status: str | None = None,
    review_url: str | None,
    namespace: str = GATE_JOB_NAMESPACE,
    classifications: ClassificationProvenance | None = None,
) -> GateFacts:
    """The facts of a gate that has an approval request.

    :param status: the gate's status when it is not the request's own (``released``).
    :param review_url: the request's review page.
    :param namespace: the gate job's namespace.
    :param classifications: where each dataset's classifications came from.
    """
    return GateFacts(
        job_namespace=namespace,
        job_name=gate_job_name(request.requester),
        run_id=request.lineage_run_id,
        status=status or request.status.value,
        request=request,
        action=request.action,
        requester=request.requester,
        rule=request.rule,
        required_approvals=request.required_approvals,
        decisions=request.decisions,
        review_url=review_url,
        classifications=classifications or {},
        parent=request.requester.parent,
    )


def facts_for_policy_answer(
    action: Action,
    requester: Requester,
    *,
    status: str,
    rule: str | None,
    namespace: str = GATE_JOB_NAMESPACE,
    classifications: ClassificationProvenance | None = None,
    run_id: uuid.UUID | None = None,
) -> GateFacts:
    """The facts of a gate the policy answered alone (``allowed`` or ``denied``), no request.

    The run id is a new UUIDv7 unless ``run_id`` is given.
    """
    if status not in ("allowed", "denied"):
        raise ValueError(f"a policy answer is allowed or denied, not {status!r}")
    return GateFacts(
        job_namespace=namespace,
        job_name=gate_job_name(requester),
        run_id=run_id or generate_new_uuid(),
        status=status,
        action=action,
        requester=requester,
        rule=rule,
        classifications=classifications or {},
        parent=requester.parent,
    )


def event_types_for(status: str, *, opened: bool) -> tuple[str, ...]:
    """The events to emit when a gate reaches ``status``.

    :param opened: True when the gate's START has already been emitted; when False, START comes
        first (a policy answer, or a request seen for the first time).

    ``event_types_for("pending", opened=False)`` is ``("START",)``; ``("allowed", False)`` is
    ``("START", "COMPLETE")``; ``("approved", True)`` is ``("OTHER",)``.
    """
    if status not in _NEXT_EVENT:
        raise ValueError(f"gate status {status!r} is not one of {', '.join(GATE_STATUSES)}")
    if opened:
        return (_NEXT_EVENT[status],)
    if status == "pending":
        return ("START",)
    return ("START", _NEXT_EVENT[status])


def _utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"event time {moment.isoformat()} has no timezone; give an aware datetime")
    return moment.astimezone(timezone.utc).isoformat()


def _sources(facts: GateFacts) -> dict[str, list[ApprovalClassification]]:
    return {
        key: [ApprovalClassification.of(s) for s in sources]
        for key, sources in facts.classifications.items()
    }


def _tags(asset: Asset, sources: Mapping[str, list[ApprovalClassification]]) -> dict[str, Any]:
    """The dataset's ``tags`` facet: every effective classification, each tag's ``source``
    saying whether the pipeline declared it or Sluicegate derived it (a receiver, Sluicegate's
    own included, must never keep a derived one as the dataset's own: see ``readback``)."""
    declared = set(asset.classifications)
    labels = declared.union(s.classification for s in sources.get(str(asset), ()))
    if not labels:
        return {}
    fields = [
        tags_dataset.TagsDatasetFacetFields(
            key=label,
            value="true",
            source=DECLARED_SOURCE if label in declared else DERIVED_SOURCE,
        )
        for label in sorted(labels)
    ]
    return {"tags": tags_dataset.TagsDatasetFacet(tags=fields, producer=PRODUCER)}


def _approval_facet(facts: GateFacts, sources: dict[str, list[ApprovalClassification]]) -> RunFacet:
    return SluicegateApprovalRunFacet(
        status=facts.status,
        requiredApprovals=facts.required_approvals,
        approvals=facts.approvals,
        requester=ApprovalRequester.of(facts.requester),
        requestId=str(facts.request.id) if facts.request is not None else None,
        rule=facts.rule,
        decisions=[ApprovalDecision.of(d) for d in facts.decisions],
        reviewUrl=facts.review_url,
        classifications=sources,
    )


def gate_event(
    facts: GateFacts, event_type: str, *, event_time: datetime | None = None
) -> RunEvent:
    """The RunEvent of type ``event_type`` (one of :data:`EVENT_TYPES`) about a gate.

    It carries the action's datasets (each with a ``tags`` facet of its effective
    classifications: ``source`` ``PIPELINE`` for those the pipeline declared, ``SLUICEGATE``
    for those Sluicegate derived), a ``jobType`` job facet, the ``sluicegate_approval`` run
    facet and, when ``facts.parent`` is set, a ``parent`` run facet. ``event_time`` defaults
    to now and must be timezone-aware; it is written in UTC.
    """
    kind = str(getattr(event_type, "value", event_type)).upper()
    if kind not in EVENT_TYPES:
        raise ValueError(f"event type {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    sources = _sources(facts)

    run_facets: dict[str, RunFacet] = {FACET_NAME: _approval_facet(facts, sources)}
    if facts.parent is not None:
        # The 1-2-0 facet's `root` is optional; the gate knows only its direct parent, and a
        # consumer that wants the root follows the parent's own events.
        run_facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=str(facts.parent.run_id)),
            job=parent_run.Job(namespace=facts.parent.namespace, name=facts.parent.name),
            producer=PRODUCER,
        )
    job_facets: dict[str, JobFacet] = {
        # Marquez refuses a jobType facet without `jobType` (422), though the spec allows it.
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH",
            integration=GATE_INTEGRATION,
            jobType=GATE_JOB_TYPE,
            producer=PRODUCER,
        )
    }
    return RunEvent(
        eventType=RunState(kind),
        eventTime=_utc_iso(event_time or utcnow()),
        run=Run(runId=str(facts.run_id), facets=run_facets),
        job=Job(namespace=facts.job_namespace, name=facts.job_name, facets=job_facets),
        inputs=[
            InputDataset(namespace=a.namespace, name=a.name, facets=_tags(a, sources))
            for a in facts.action.inputs
        ],
        outputs=[
            OutputDataset(namespace=a.namespace, name=a.name, facets=_tags(a, sources))
            for a in facts.action.outputs
        ],
        producer=PRODUCER,
    )


def event_dict(event: RunEvent) -> dict[str, Any]:
    """The event as the JSON object that goes on the wire (what the HTTP transport posts)."""
    return cast("dict[str, Any]", json.loads(Serde.to_json(event)))
