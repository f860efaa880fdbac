"""Approval requests as OpenLineage runs: which event each moment of a request sends.

Each request (and each answer the policy gives at once) is one run of its gate's job.
:class:`ApprovalRuns` is what :class:`~sluicegate.workflow.Workflow` calls after each change
is committed (never before: an event must not announce a write that was undone):

    gate opened, pending                START
    policy allowed / denied at once     START, COMPLETE / START, FAIL
    a decision, request still pending   OTHER  (1 of 2 approvals)
    the quorum reached (approved)       OTHER  (status approved; the step has not run yet)
    denied by a reviewer                FAIL
    expired, cancelled                  ABORT
    released (the gated step goes on)   COMPLETE

Sending is the emitter's business (a background thread), so none of this ever waits on the
lineage backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial

from openlineage.client.event_v2 import RunEvent
from openlineage.client.uuid import generate_new_uuid

from sluicegate.lineage.emitter import LineageEmitter
from sluicegate.lineage.events import (
    GATE_JOB_NAMESPACE,
    GateFacts,
    event_types_for,
    facts_for_policy_answer,
    facts_for_request,
    gate_event,
)
from sluicegate.model import (
    Action,
    ApprovalRequest,
    ClassificationSource,
    Requester,
    utcnow,
)

__all__ = ["ApprovalRuns"]


class ApprovalRuns:
    """Turns the moments of approval requests into RunEvents on one emitter."""

    def __init__(
        self,
        emitter: LineageEmitter,
        *,
        server_url: str | None = None,
        namespace: str = GATE_JOB_NAMESPACE,
    ) -> None:
        self.emitter = emitter
        #: The review server's address: each request's event links to its review page.
        self.server_url = server_url
        self.namespace = namespace

    @property
    def enabled(self) -> bool:
        """Whether events go anywhere (OpenLineage's configuration names a transport)."""
        return self.emitter.enabled

    def opened(self, request: ApprovalRequest) -> None:
        """A new request waits (START)."""
        self._send(lambda: self._facts(request), event_types_for("pending", opened=False))

    def answered(
        self,
        action: Action,
        requester: Requester,
        *,
        allowed: bool,
        rule: str | None,
        classifications: Mapping[str, Sequence[ClassificationSource]],
    ) -> None:
        """The policy allowed (START, COMPLETE) or denied (START, FAIL) with no request."""
        status = "allowed" if allowed else "denied"
        run_id = generate_new_uuid()  # one run for both events

        def facts() -> GateFacts:
            return facts_for_policy_answer(
                action,
                requester,
                status=status,
                rule=rule,
                namespace=self.namespace,
                classifications=classifications,
                run_id=run_id,
            )

        self._send(facts, event_types_for(status, opened=False))

    def changed(self, request: ApprovalRequest) -> None:
        """A decision landed or the request ended: OTHER while pending or approved, FAIL when
        denied, ABORT when expired or cancelled."""
        self._send(lambda: self._facts(request), event_types_for(request.status.value, opened=True))

    def released(self, request: ApprovalRequest) -> None:
        """The gated step went ahead (COMPLETE)."""
        self._send(lambda: self._facts(request, status="released"), ("COMPLETE",))

    def _facts(self, request: ApprovalRequest, status: str | None = None) -> GateFacts:
        return facts_for_request(
            request,
            status=status,
            review_url=f"{self.server_url}/r/{request.id}" if self.server_url else None,
            namespace=self.namespace,
            classifications=request.classifications,
        )

    def _send(self, facts: Callable[[], GateFacts], event_types: Sequence[str]) -> None:
        """Queue the events; they are built in the emitter's thread (building one cost more
        than the rest of an allowed gate's answer), stamped with the time of this call."""
        if not self.emitter.enabled:
            return
        now = utcnow()
        for event_type in event_types:
            self.emitter.emit(partial(_build, facts, event_type, now))


def _build(facts: Callable[[], GateFacts], event_type: str, when: datetime) -> RunEvent:
    return gate_event(facts(), event_type, event_time=when)
