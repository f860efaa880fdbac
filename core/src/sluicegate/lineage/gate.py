"""The gate's own lineage: which OpenLineage event each moment of a gate sends.

:class:`GateLineage` is what :class:`~sluicegate.approvals.Approvals` calls after each change
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
from typing import Any

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

__all__ = ["GateLineage"]


class GateLineage:
    """Turns gate moments into RunEvents on one emitter."""

    def __init__(
        self,
        emitter: LineageEmitter,
        *,
        review_url: Callable[[str], str | None] = lambda request_id: None,
        namespace: str = GATE_JOB_NAMESPACE,
    ) -> None:
        self.emitter = emitter
        self.review_url = review_url
        self.namespace = namespace

    @property
    def enabled(self) -> bool:
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
                classifications=_plain(classifications),
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
            review_url=self.review_url(str(request.id)),
            namespace=self.namespace,
            classifications=_plain(request.classifications),
        )

    def _send(self, facts: Callable[[], GateFacts], event_types: Sequence[str]) -> None:
        """Queue the events; they are built in the emitter's thread (building one cost more
        than the rest of an allowed gate's answer), stamped with the time of this call."""
        if not self.emitter.enabled:
            return
        now = utcnow()
        for event_type in event_types:
            self.emitter.emit(partial(_build, facts, event_type, now))


def _plain(
    found: Mapping[str, Sequence[ClassificationSource]],
) -> dict[str, list[Mapping[str, Any]]]:
    return {key: [c.model_dump(mode="json") for c in sources] for key, sources in found.items()}


def _build(facts: Callable[[], GateFacts], event_type: str, when: datetime) -> RunEvent:
    return gate_event(facts(), event_type, event_time=when)
