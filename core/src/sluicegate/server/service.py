"""The routes' one way into the workflow: each call on the writer, counted in the metrics.

Every channel of the server (the API, the review pages, Slack's buttons) calls
:class:`GateService`, which calls :class:`~sluicegate.workflow.Workflow` on the group-commit
writer (:mod:`sluicegate.server.group_commit`), the server's one write path. Routes parse
their input, call one method, and map its answer or its error (the table in
:mod:`sluicegate.server.errors`, or a page) onto their medium; none of them checks a rule or
writes by itself. The workflow's methods are plain functions, so the CLI and the tests call
them directly, without a server.
"""

from __future__ import annotations

import uuid

from sluicegate.exceptions import ConflictError, ForbiddenError
from sluicegate.lineage.index import LineageIndex
from sluicegate.model import Action, ApprovalRequest, Channel, Requester, Status, Verdict
from sluicegate.server.group_commit import Writer
from sluicegate.server.metrics import Metrics
from sluicegate.store import DecisionOutcome
from sluicegate.workflow import CONFLICT, GateAnswer, Workflow

__all__ = ["GateService"]


class GateService:
    """Open gates, decide, cancel, release and expire, through the writer (see the module)."""

    def __init__(
        self, workflow: Workflow, writer: Writer, metrics: Metrics, lineage: LineageIndex
    ) -> None:
        self.workflow = workflow
        self.writer = writer
        self.metrics = metrics
        #: The dataset graph the gates classify with (what lineage says is the server's to
        #: know, never the pipeline's).
        self.lineage = lineage

    async def open(
        self, *, idempotency_key: str, action: Action, requester: Requester
    ) -> GateAnswer:
        """Classify, evaluate and open (or reattach to) a gate; :class:`ConflictError` when the
        key is another principal's gate or another action's (recorded as ``gate.conflict``)."""
        if self.lineage.stale:
            await self.writer.read(self.lineage.refresh)
        found = self.lineage.classify(action)
        # Evaluated here, outside the writer: only the store's work waits for the batch.
        plan = self.workflow.plan_open(
            idempotency_key=idempotency_key,
            action=action,
            requester=requester,
            inherited=found.inherited,
            classifications=found.sources,
        )
        answer = await self.writer.run_together(self.workflow.commit_opens, plan)
        if answer.status == CONFLICT:
            self.metrics.gates.labels(CONFLICT).inc()
            raise ConflictError(answer.detail)
        reattached = answer.request is not None and not answer.created
        self.metrics.gates.labels("reattached" if reattached else answer.status).inc()
        return answer

    async def decide(
        self,
        request_id: uuid.UUID | str,
        *,
        reviewer: str,
        verdict: Verdict,
        channel: Channel,
        comment: str = "",
        fingerprint: str | None = None,
        link: str | None = None,
        refused: str | None = None,
    ) -> DecisionOutcome:
        """:meth:`Workflow.decide <sluicegate.workflow.Workflow.decide>`: record the verdict
        or refuse it (a refusal is audited, counted and raised as :class:`ForbiddenError`)."""
        try:
            outcome = await self.writer.run(
                self.workflow.decide,
                request_id,
                reviewer=reviewer,
                verdict=verdict,
                comment=comment,
                channel=channel,
                fingerprint=fingerprint,
                link=link,
                refused=refused,
            )
        except ForbiddenError:
            self.metrics.rejected.inc()
            raise
        self.metrics.count_decision(outcome, verdict, channel)
        return outcome

    async def cancel(
        self, request_id: uuid.UUID | str, *, principal: str, reason: str = ""
    ) -> ApprovalRequest:
        """The requester withdraws its request."""
        cancelled = await self.writer.run(
            self.workflow.cancel, request_id, principal=principal, reason=reason
        )
        self.metrics.ended.labels(Status.CANCELLED.value).inc()
        return cancelled

    async def release(self, request_id: uuid.UUID | str, *, principal: str) -> ApprovalRequest:
        """The gated step went ahead (``gate.released``)."""
        return await self.writer.run(self.workflow.release, request_id, principal=principal)

    async def expire_due(self) -> list[ApprovalRequest]:
        """End every pending request past its deadline (the expiry sweep)."""
        ended = await self.writer.run(self.workflow.expire_due)
        for _ in ended:
            self.metrics.ended.labels(Status.EXPIRED.value).inc()
        return ended
