"""The approval workflow: policy and store together. Every channel goes through here.

The HTTP API, the review pages, chat integrations and the CLI demo are thin layers over
:class:`Approvals`, so the rules that matter hold in one place whatever the channel:

- the server decides with the policy; nothing the pipeline sends can change the outcome
  except the facts of the action itself;
- an action the policy allows costs one audit row and nothing else;
- a reviewer must be in the policy, in one of the rule's groups, and not the requester in
  any of its identities; a refusal is recorded as ``decision.rejected``;
- an idempotency key gives its request back only to a retry: the same principal asking for
  the same action (fingerprint). Anyone else reusing it is refused and recorded as
  ``gate.conflict``; a key never lends one gate's approval to another action or principal.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sluicegate.audit import AuditEvent
from sluicegate.exceptions import ConflictError, ExpiredError, ForbiddenError, TransitionError
from sluicegate.lineage.gate import GateLineage
from sluicegate.model import (
    Action,
    ApprovalRequest,
    Channel,
    ClassificationSource,
    Decision,
    Requester,
    Status,
    Verdict,
    utcnow,
)
from sluicegate.policy import Evaluation, Policy
from sluicegate.store import DecisionOutcome, GateOpen, GateStored, Store, request_event

if TYPE_CHECKING:  # openlineage-python takes a second to import: only servers load it
    from sluicegate.lineage.gate import GateLineage

__all__ = ["CONFLICT", "Approvals", "GateAnswer", "GatePlan"]

#: :attr:`GateAnswer.status` of a gate whose idempotency key is another gate's.
CONFLICT = "conflict"


@dataclass(frozen=True)
class GateAnswer:
    """What opening a gate gives back."""

    #: ``allowed`` or ``denied`` straight from the policy, else the request's status;
    #: ``conflict`` when the key belongs to another principal's gate or another action.
    status: str
    evaluation: Evaluation
    #: The request the gate waits on (None for a policy answer, and for a conflict).
    request: ApprovalRequest | None = None
    #: False when the idempotency key already had a request (a retry reattached).
    created: bool = False
    #: For a conflict, one sentence saying why, fit to show the caller: it tells nothing of
    #: another principal's request (not even its id).
    detail: str = ""


@dataclass(frozen=True)
class GatePlan:
    """What opening a gate will store, decided before any database work."""

    idempotency_key: str
    evaluation: Evaluation
    #: The new request when the policy requires approval, else None (allowed or denied).
    request: ApprovalRequest | None
    #: The audit rows to append with it.
    events: tuple[AuditEvent, ...]
    action: Action
    requester: Requester
    #: Each dataset's effective classifications and their sources (for lineage).
    classifications: Mapping[str, tuple[ClassificationSource, ...]] = field(default_factory=dict)
    #: ``action.fingerprint()``: a key's request is given back only for this action.
    fingerprint: str = ""


class Approvals:
    """Open gates and record decisions, enforcing the policy."""

    def __init__(self, store: Store, policy: Policy, lineage: GateLineage | None = None) -> None:
        self.store = store
        #: Where each committed moment of a gate goes as an OpenLineage event (None: nowhere).
        self.lineage = lineage
        self.policy = policy

    def open(
        self,
        *,
        idempotency_key: str,
        action: Action,
        requester: Requester,
        inherited: Mapping[tuple[str, str], Iterable[str]] | None = None,
        classifications: Mapping[str, tuple[ClassificationSource, ...]] | None = None,
        now: datetime | None = None,
    ) -> GateAnswer:
        """Evaluate ``action`` and, if it needs approval, open (or reattach to) its request.

        Raises :class:`ConflictError` when ``idempotency_key`` belongs to another principal's
        gate or to another action (recorded as ``gate.conflict`` first).
        """
        answer = self.commit_open(
            self.plan_open(
                idempotency_key=idempotency_key,
                action=action,
                requester=requester,
                inherited=inherited,
                classifications=classifications,
                now=now,
            )
        )
        if answer.status == CONFLICT:
            raise ConflictError(answer.detail)
        return answer

    def plan_open(
        self,
        *,
        idempotency_key: str,
        action: Action,
        requester: Requester,
        inherited: Mapping[tuple[str, str], Iterable[str]] | None = None,
        classifications: Mapping[str, tuple[ClassificationSource, ...]] | None = None,
        now: datetime | None = None,
    ) -> GatePlan:
        """The policy's answer and what opening the gate would store; touches no database.

        ``inherited`` are the classifications lineage gives the action's datasets (the policy
        matches on them); ``classifications`` says where each effective one came from, and is
        kept with the request for its reviewers, its audit row and its lineage facet.
        Split from :meth:`commit_open` so that a server can evaluate outside its writer.
        """
        ev = self.policy.evaluate(action, requester, inherited=inherited)
        fingerprint = action.fingerprint()
        labels = {
            key: sorted(c.classification for c in found)
            for key, found in (classifications or {}).items()
            if found
        }
        if ev.outcome in ("allow", "deny"):
            kind = "policy.allowed" if ev.outcome == "allow" else "policy.denied"
            event = AuditEvent(
                kind=kind,
                actor=requester.principal,
                job=requester.job or None,
                datasets=[str(a) for a in action.assets],
                data={
                    "idempotency_key": idempotency_key,
                    "rule": ev.rule,
                    "reason": ev.reason,
                    "action_kind": action.kind,
                    "fingerprint": fingerprint,
                    "run_id": requester.run_id,
                    "policy": self.policy.digest,
                    **({"classifications": labels} if labels else {}),
                },
            )
            return GatePlan(
                idempotency_key,
                ev,
                None,
                (event,),
                action,
                requester,
                dict(classifications or {}),
                fingerprint,
            )
        req_spec = ev.requirement
        assert req_spec is not None  # a require outcome always carries its requirement
        request = ApprovalRequest.open(
            idempotency_key=idempotency_key,
            action=action,
            requester=requester,
            rule=ev.rule,
            required_approvals=req_spec.approvals,
            required_denials=req_spec.denials,
            groups=req_spec.groups,
            comment_on_deny=req_spec.comment_on_deny,
            on_timeout=req_spec.on_timeout,
            timeout=req_spec.timeout,
            now=now,
            classifications=dict(classifications or {}),
        )
        created_event = request_event(
            request,
            "request.created",
            actor=requester.principal,
            rule=ev.rule,
            required_approvals=req_spec.approvals,
            groups=list(req_spec.groups),
            eligible=[r.id for r in ev.eligible],
            satisfiable=ev.satisfiable,
            fingerprint=request.fingerprint,
            policy=self.policy.digest,
            expires_at=request.expires_at.isoformat() if request.expires_at else None,
            triggered_by=requester.triggered_by,
            owner=requester.owner,
            run_id=requester.run_id,
            **({"classifications": labels} if labels else {}),
        )
        return GatePlan(
            idempotency_key,
            ev,
            request,
            (created_event,),
            action,
            requester,
            dict(classifications or {}),
            request.fingerprint,
        )

    def commit_open(self, plan: GatePlan) -> GateAnswer:
        """Store what :meth:`plan_open` decided, in one transaction.

        A key that already has a request reattaches to it, whatever the policy says now (a
        retry must find what the first attempt opened), when the same principal asks for the
        same action; nothing new is recorded then. Anyone else is answered ``conflict``
        (recorded as ``gate.conflict``): see :meth:`open`, which raises it instead.
        """
        return self.commit_opens([plan])[0]

    def commit_opens(self, plans: Sequence[GatePlan]) -> list[GateAnswer]:
        """:meth:`commit_open` for many plans in one write (the server's writer batches).

        A conflict is one plan's answer, never an error: the other plans are kept.
        """
        stored = self.store.open_gates(
            [
                GateOpen(
                    p.idempotency_key,
                    p.request,
                    p.events,
                    self.policy.digest,
                    action=p.action,
                    requester=p.requester,
                    fingerprint=p.fingerprint or None,
                )
                for p in plans
            ]
        )
        answers = [_answer(plan, got) for plan, got in zip(plans, stored, strict=True)]
        if self.lineage is not None:
            for plan, answer in zip(plans, answers, strict=True):
                self._tell_opened(self.lineage, plan, answer)
        return answers

    def _tell_opened(self, lineage: GateLineage, plan: GatePlan, answer: GateAnswer) -> None:
        request = answer.request
        if answer.status == CONFLICT:
            return  # nothing was opened or answered: the gate was refused
        if request is None:
            allowed = answer.status == "allowed"
            self.store.on_commit(
                lambda: lineage.answered(
                    plan.action,
                    plan.requester,
                    allowed=allowed,
                    rule=plan.evaluation.rule,
                    classifications=plan.classifications,
                )
            )
        elif answer.created:  # a retry that reattached sends nothing new
            self.store.on_commit(lambda: lineage.opened(request))

    def check_reviewer(self, request: ApprovalRequest, reviewer: str) -> str | None:
        """None if ``reviewer`` may decide ``request``, else why not."""
        return self.policy.may_decide(reviewer, request.groups, request.requester)

    def decide(
        self,
        request_id: uuid.UUID | str,
        *,
        reviewer: str,
        verdict: Verdict,
        comment: str = "",
        channel: Channel = Channel.API,
        fingerprint: str | None = None,
        now: datetime | None = None,
    ) -> DecisionOutcome:
        """Record ``reviewer``'s verdict; raises :class:`ForbiddenError` for one who may not."""
        request = self.store.get(request_id)
        why = self.check_reviewer(request, reviewer)
        if why is not None:
            self.reject(request, actor=reviewer, reason=why, verdict=verdict, channel=channel)
            raise ForbiddenError(why)
        decision = Decision(
            reviewer=reviewer,
            verdict=verdict,
            comment=comment,
            channel=channel,
            fingerprint=fingerprint or request.fingerprint,
            decided_at=now or utcnow(),
        )
        try:
            outcome = self.store.decide(request.id, decision, now=now)
        except ExpiredError as err:  # too late: this call ended it as expired
            self._tell_changed(err.request)
            raise
        self._tell_changed(outcome.request)
        return outcome

    def _tell_changed(self, request: ApprovalRequest | None) -> None:
        lineage = self.lineage
        if lineage is not None and request is not None:
            self.store.on_commit(lambda: lineage.changed(request))

    def expire_due(self, now: datetime | None = None) -> list[ApprovalRequest]:
        """End every pending request past its deadline (the server's sweep)."""
        ended = self.store.expire_due(now)
        for request in ended:
            self._tell_changed(request)
        return ended

    def reject(
        self,
        request: ApprovalRequest | uuid.UUID | str,
        *,
        actor: str | None,
        reason: str,
        verdict: Verdict | None = None,
        channel: Channel = Channel.API,
    ) -> None:
        """Record a refused decision (``decision.rejected``): who tried, through what, and why."""
        if not isinstance(request, ApprovalRequest):
            request = self.store.get(request)
        self.store.record(
            [
                request_event(
                    request,
                    "decision.rejected",
                    actor=actor,
                    reason=reason,
                    verdict=verdict.value if verdict else None,
                    channel=channel.value,
                )
            ]
        )

    def cancel(
        self, request_id: uuid.UUID | str, *, principal: str, reason: str = ""
    ) -> ApprovalRequest:
        """The requester withdraws its request."""
        request = self.store.get(request_id)
        self._only_its_principal(request, principal, "cancel")
        cancelled = self.store.transition(
            request.id, Status.CANCELLED, actor=principal, reason=reason
        )
        self._tell_changed(cancelled)
        return cancelled

    def release(self, request_id: uuid.UUID | str, *, principal: str) -> ApprovalRequest:
        """Record that the gated step went ahead (``gate.released``); returns the request.

        Only the principal that opened the request may, and only for a request that let its
        step go on (approved, or expired under a rule whose timeout allows). Another principal
        is refused with :class:`ForbiddenError` and recorded as ``release.rejected``, never as
        a release; a request that let nothing go on raises :class:`TransitionError`.
        """
        request = self.store.get(request_id)
        self._only_its_principal(request, principal, "release")
        passed = request.status is Status.APPROVED or (
            request.status is Status.EXPIRED and request.on_timeout == "allow"
        )
        if not passed:
            raise TransitionError(
                f"request is {request.status.value}; only a gate that let its step go on "
                "is released"
            )
        self.store.record(
            [request_event(request, "gate.released", actor=principal, status=request.status.value)]
        )
        lineage = self.lineage
        if lineage is not None:
            self.store.on_commit(lambda: lineage.released(request))
        return request

    def _only_its_principal(self, request: ApprovalRequest, principal: str, verb: str) -> None:
        """Refuse (and record as ``{verb}.rejected``) a principal that did not open ``request``."""
        if request.requester.principal == principal:
            return
        self.store.record(
            [
                request_event(
                    request,
                    f"{verb}.rejected",
                    actor=principal,
                    reason=f"only the principal that opened it may {verb}"
                    + (" it" if verb == "release" else ""),
                )
            ]
        )
        raise ForbiddenError(f"only the principal that opened a request may {verb} it")


def _answer(plan: GatePlan, stored: GateStored) -> GateAnswer:
    if stored.conflict is not None:
        return GateAnswer(
            CONFLICT,
            plan.evaluation,
            detail=_conflict_detail(plan, stored.request, stored.conflict),
        )
    if stored.request is not None:
        return GateAnswer(
            stored.request.status.value, plan.evaluation, stored.request, created=stored.created
        )
    allowed = plan.evaluation.outcome == "allow"
    return GateAnswer("allowed" if allowed else "denied", plan.evaluation)


def _conflict_detail(plan: GatePlan, existing: ApprovalRequest | None, reason: str) -> str:
    """Why the key was refused, in one sentence; another principal's request stays unnamed."""
    key = plan.idempotency_key
    if reason == "principal" or existing is None:
        return (
            f"idempotency key {key!r} belongs to another principal's gate; "
            "each gate needs a key of its own"
        )
    return (
        f"idempotency key {key!r} belongs to request {existing.id}, opened for a different "
        "action; a changed action must be asked about again under a new key"
    )
