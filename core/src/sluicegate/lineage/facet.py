"""The ``sluicegate_approval`` run facet: what a reviewer saw and decided, on the gate's run.

The facet rides on every RunEvent a gate emits (see :mod:`sluicegate.lineage.events`), so that
Marquez, or any OpenLineage consumer, shows who asked, which rule matched, how many approvals
the rule wants, who decided what, and where each dataset's classifications came from.

Its JSON Schema is published in the repository, versioned, under
``spec/facets/<version>/SluicegateApprovalRunFacet.json``; a published version never changes,
and :data:`SCHEMA_URL` names the one this code writes, at the release tag that first shipped
it (never a branch: a consumer that caches or pins the URL must always find the same file).
Keys are camelCase, as OpenLineage's own facets are. Fields that are ``None`` are left out of
the JSON (openlineage-python's ``Serde`` drops nulls), so a consumer reads a missing
``requestId`` as "no request".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timezone
from typing import Any, ClassVar, Literal, get_args

import attr
from openlineage.client.facet_v2 import RunFacet
from openlineage.client.utils import RedactMixin

from sluicegate import __version__
from sluicegate.model import ClassificationSource, LineageHop, Requester
from sluicegate.wire import RequestOut

__all__ = [
    "FACET_NAME",
    "GATE_STATUSES",
    "PRODUCER",
    "SCHEMA_URL",
    "ApprovalClassification",
    "ApprovalDecision",
    "ApprovalRequester",
    "ClassificationHop",
    "GateStatus",
    "SluicegateApprovalRunFacet",
    "facet_of_answer",
]

#: The key of the facet in ``run.facets``.
FACET_NAME = "sluicegate_approval"

#: The ``producer`` of Sluicegate's events and the ``_producer`` of its facets.
PRODUCER = f"https://github.com/sluicegate/sluicegate/tree/v{__version__}/core"

#: The published, versioned schema file this code writes (its ``$id``). Pinned to the tag of
#: the first release that ships the version folder (spec/facets/README.md): a tag is never
#: moved, so the URL names one file forever, where a branch (1-0-0's ``main``) moves.
SCHEMA_URL = (
    "https://raw.githubusercontent.com/sluicegate/sluicegate/v0.1.0/"
    "spec/facets/1-0-1/SluicegateApprovalRunFacet.json"
)

#: Where a gate is. ``allowed`` and ``denied`` without a request are the policy's own answers;
#: ``released`` is an approved gate that let its step run.
GateStatus = Literal["allowed", "denied", "pending", "approved", "expired", "cancelled", "released"]

#: Every :data:`GateStatus`, in the order the schema lists them.
GATE_STATUSES: tuple[str, ...] = get_args(GateStatus)


@attr.define(kw_only=True)
class ClassificationHop(RedactMixin):
    """One dataset on the way a classification came, and the job that read it to derive the next."""

    namespace: str
    name: str
    job: str | None = None

    _skip_redact: ClassVar[list[str]] = ["namespace", "name", "job"]

    @classmethod
    def of(cls, hop: LineageHop | Mapping[str, Any]) -> ClassificationHop:
        """The facet's form of a :class:`~sluicegate.model.LineageHop` (or its JSON)."""
        if isinstance(hop, LineageHop):
            return cls(namespace=hop.namespace, name=hop.name, job=hop.job)
        return cls(namespace=hop["namespace"], name=hop["name"], job=hop.get("job"))


@attr.define(kw_only=True)
class ApprovalClassification(RedactMixin):
    """Why a dataset has a classification, as the facet writes it: the facet's form of a
    :class:`~sluicegate.model.ClassificationSource` (attrs, as openlineage-python serializes
    facets), made from it directly by :meth:`of`.

    ``source`` is ``pipeline`` (the step declared it), ``policy`` (a ``classify`` rule) or
    ``lineage`` (inherited from upstream); ``path`` lists the hops from the dataset where the
    classification was given down to this one, empty when it was given here.
    """

    classification: str
    source: str
    path: list[ClassificationHop] = attr.field(factory=list)

    _skip_redact: ClassVar[list[str]] = ["classification", "source", "path"]

    @classmethod
    def of(cls, found: ClassificationSource | Mapping[str, Any]) -> ApprovalClassification:
        """From the model's :class:`~sluicegate.model.ClassificationSource`, or a plain
        ``{classification, source, path}`` as a lineage graph reports it."""
        if isinstance(found, ClassificationSource):
            hops = [ClassificationHop.of(hop) for hop in found.path]
            return cls(classification=found.classification, source=found.source, path=hops)
        hops = [ClassificationHop.of(hop) for hop in found.get("path", ())]
        return cls(classification=found["classification"], source=found["source"], path=hops)


@attr.define(kw_only=True)
class ApprovalDecision(RedactMixin):
    """One reviewer's verdict, as the audit log records it."""

    reviewer: str
    verdict: str
    comment: str
    channel: str
    decidedAt: str

    @classmethod
    def of(cls, decision: Any) -> ApprovalDecision:
        """From a stored :class:`~sluicegate.model.Decision` or the API's ``DecisionOut``."""
        return cls(
            reviewer=decision.reviewer,
            verdict=decision.verdict.value,
            comment=decision.comment,
            channel=decision.channel.value,
            decidedAt=decision.decided_at.astimezone(timezone.utc).isoformat(),
        )


@attr.define(kw_only=True)
class ApprovalRequester(RedactMixin):
    """Who asked: the pipeline step and the people behind it."""

    orchestrator: str
    job: str
    runId: str
    owner: str | None = None
    triggeredBy: str | None = None
    principal: str | None = None

    @classmethod
    def of(cls, requester: Requester) -> ApprovalRequester:
        return cls(
            orchestrator=requester.orchestrator,
            job=requester.job,
            runId=requester.run_id,
            owner=requester.owner,
            triggeredBy=requester.triggered_by,
            principal=requester.principal,
        )


@attr.define(kw_only=True)
class SluicegateApprovalRunFacet(RunFacet):
    """The gate's approval state, attached to the gate's run as ``sluicegate_approval``.

    :param status: one of :data:`GATE_STATUSES`.
    :param requiredApprovals: distinct eligible reviewers the rule requires (0 when none).
    :param approvals: distinct reviewers who approved so far.
    :param requester: who asked.
    :param requestId: the approval request, or ``None`` for a gate the policy answered alone.
    :param rule: the policy rule that matched, or ``None`` for the default.
    :param decisions: every decision so far, oldest first.
    :param reviewUrl: the review page, when there is a request.
    :param classifications: per dataset key ``namespace::name``, where its classifications
        came from.
    """

    status: str = attr.field(validator=attr.validators.in_(GATE_STATUSES))
    requiredApprovals: int
    approvals: int
    requester: ApprovalRequester
    requestId: str | None = None
    rule: str | None = None
    decisions: list[ApprovalDecision] = attr.field(factory=list)
    reviewUrl: str | None = None
    classifications: dict[str, list[ApprovalClassification]] = attr.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self._producer:
            self._producer = PRODUCER
        super().__attrs_post_init__()

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_URL}#/$defs/SluicegateApprovalRunFacet"


def facet_of_answer(
    answer: RequestOut,
    *,
    status: str | None = None,
    requester: Requester | Mapping[str, Any] | None = None,
) -> SluicegateApprovalRunFacet:
    """The facet of a gate as the API answered it: what an adapter hands to its
    orchestrator's own OpenLineage integration.

    :param requester: the requester the adapter sent, for an answer that carries none (an
        older server leaves it out of a policy's allow or deny); the answer's own, which also
        names the principal, wins.
    """
    is_request = answer.status not in ("allowed", "denied") or bool(answer.decisions)
    asked = Requester.model_validate(answer.requester or requester or {})
    return SluicegateApprovalRunFacet(
        status=status or answer.status,
        requiredApprovals=answer.required_approvals,
        approvals=answer.approvals,
        requester=ApprovalRequester.of(asked),
        requestId=answer.id if is_request else None,
        rule=answer.rule,
        decisions=[ApprovalDecision.of(d) for d in answer.decisions],
        reviewUrl=answer.review_url if is_request else None,
        classifications={
            key: [ApprovalClassification.of(c) for c in found]
            for key, found in answer.classification_sources.items()
        },
    )
