"""The routes' one way into the workflow: each call on the writer, counted in the metrics.

Every channel of the server (the API, the review pages, Slack's buttons) calls
:class:`GateService`, which calls :class:`~sluicegate.workflow.Workflow` on the group-commit
writer (:mod:`sluicegate.server.group_commit`), the server's one write path. Routes parse
their input, call one method, and map its answer or its error (the table in
:mod:`sluicegate.server.errors`, or a page) onto their medium; none of them checks a rule or
writes by itself. The workflow's methods are plain functions, so the CLI and the tests call
them directly, without a server.

Listings are the one read here: a page is up to 500 requests with their decisions, milliseconds
of work where a status read is microseconds, so it always runs in a worker thread, on both
databases (on SQLite :meth:`Writer.read` runs reads on the event loop, where a listing held up
every long poll and gate open until it was done).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio

from sluicegate.exceptions import ConflictError, ForbiddenError
from sluicegate.lineage.index import LineageIndex
from sluicegate.model import Action, ApprovalRequest, Channel, Requester, Status, Verdict
from sluicegate.server.group_commit import Writer
from sluicegate.server.metrics import Metrics
from sluicegate.store import DecisionOutcome
from sluicegate.workflow import CONFLICT, GateAnswer, Workflow

__all__ = ["GateService"]

T = TypeVar("T")

#: Listings read at once; more wait their turn. Building a page is Python work that holds
#: the GIL: four at once in four threads left the event loop and the writer thread a quarter
#: of it, and a gate opened meanwhile on PostgreSQL waited 0.8 s (p50, bench_inbox.py).
LISTINGS_AT_ONCE = 1


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
        self._listing: anyio.CapacityLimiter | None = None

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

    async def list_requests(
        self,
        render: Callable[[list[ApprovalRequest]], T],
        *,
        status: Status | None = None,
        dataset: str | None = None,
        job: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> T:
        """``render(page)``: a page of :meth:`Store.list_requests
        <sluicegate.store.Store.list_requests>` (newest first, keyset-paged by ``before``)
        and the caller's rendering of it (JSON, a page), both in a worker thread, never on
        the event loop."""
        read = partial(
            self.workflow.store.list_requests,
            status=status,
            dataset=dataset,
            job=job,
            limit=limit,
            before=before,
        )
        if self._listing is None:  # made on the loop: anyio's limiters belong to one
            self._listing = anyio.CapacityLimiter(LISTINGS_AT_ONCE)
        return await anyio.to_thread.run_sync(lambda: render(read()), limiter=self._listing)

    async def expire_due(self) -> list[ApprovalRequest]:
        """End every pending request past its deadline (the expiry sweep)."""
        ended = await self.writer.run(self.workflow.expire_due)
        for _ in ended:
            self.metrics.ended.labels(Status.EXPIRED.value).inc()
        return ended
