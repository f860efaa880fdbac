"""The workflow's engine: :class:`Workflow`, whose methods are the paths of a request.

See the package (:mod:`sluicegate.workflow`) for the steps a decision goes through; opening a
gate's plan is :mod:`sluicegate.workflow.opening`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sluicegate.exceptions import (
    ActionError,
    ConflictError,
    ExpiredError,
    ForbiddenError,
    TransitionError,
)
from sluicegate.model import (
    Action,
    ApprovalRequest,
    Channel,
    ClassificationSource,
    Decision,
    Requester,
    Status,
    Verdict,
    proceeds,
    utcnow,
)
from sluicegate.policy import Policy
from sluicegate.store import DecisionOutcome, GateOpen, Store, request_event
from sluicegate.workflow.opening import CONFLICT, GateAnswer, GatePlan, answer_of, plan_gate

if TYPE_CHECKING:  # openlineage-python takes a second to import: only servers load it
    from sluicegate.lineage.approval_runs import ApprovalRuns

__all__ = ["LINK_USED", "CommentRequiredError", "LinkUsedError", "Workflow"]

#: Why a review link's second use is refused (the page and the audit row say the same).
LINK_USED = "this link was already used"


class LinkUsedError(ForbiddenError):
    """A review link that already decided once: refused, and recorded as ``decision.rejected``
    (the link's signature was good, so its reviewer is known)."""


class CommentRequiredError(ActionError):
    """A denial without the comment its rule requires: nothing recorded, the link not spent
    (the review form asks again; Slack opens its comment form)."""


class Workflow:
    """Open gates, record decisions, cancel and release requests, enforcing the policy."""

    def __init__(self, store: Store, policy: Policy, lineage: ApprovalRuns | None = None) -> None:
        self.store = store
        self.policy = policy
        #: Where each committed moment of a request goes as OpenLineage events (None: nowhere).
        self.lineage = lineage

    # ------------------------------------------------------------------ opening a gate

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
        """The policy's answer and what opening the gate would store (:func:`plan_gate`);
        touches no database, so that a server can evaluate outside its writer.

        ``inherited`` are the classifications lineage gives the action's datasets (the policy
        matches on them); ``classifications`` says where each effective one came from, and is
        kept with the request for its reviewers, its audit row and its lineage facet.
        """
        return plan_gate(
            self.policy,
            idempotency_key=idempotency_key,
            action=action,
            requester=requester,
            inherited=inherited,
            classifications=classifications,
            now=now,
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
        answers = [answer_of(plan, got) for plan, got in zip(plans, stored, strict=True)]
        for plan, answer in zip(plans, answers, strict=True):
            self._tell_opened(plan, answer)
        return answers

    # ------------------------------------------------------------------ deciding

    def eligibility(self, request: ApprovalRequest, reviewer: str) -> str | None:
        """None if ``reviewer`` may decide ``request`` under the policy, else why not.

        The one eligibility rule: :meth:`decide` enforces it, and the review pages use it to
        show (or not) the form and to fill a reviewer's inbox.
        """
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
        link: str | None = None,
        refused: str | None = None,
        now: datetime | None = None,
    ) -> DecisionOutcome:
        """Record ``reviewer``'s verdict, or refuse it (see the module for the steps).

        ``link``: the nonce of the signed review link the decision came through (spent here,
        once: :class:`LinkUsedError` the second time). ``refused``: why the channel's identity
        can never decide (recorded, then :class:`ForbiddenError`). An ineligible reviewer
        raises :class:`ForbiddenError`; each of these refusals is recorded as
        ``decision.rejected`` first. A denial without the comment its rule requires raises
        :class:`CommentRequiredError`; the store's own refusals (ended, expired, decided
        already, another action) raise :class:`TransitionError`; these record nothing.
        """
        request = self.store.get(request_id)
        why = refused if refused is not None else self.eligibility(request, reviewer)
        if why is not None:
            self._reject(request, reviewer, why, verdict, channel)
            raise ForbiddenError(why)
        if _wants_a_comment(request, verdict, comment, now):
            raise CommentRequiredError("the rule requires a comment to deny")
        if link is not None and not self.store.use_link(link, str(request.id), reviewer):
            self._reject(request, reviewer, LINK_USED, verdict, channel)
            raise LinkUsedError(LINK_USED)
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

    def _reject(
        self,
        request: ApprovalRequest,
        actor: str,
        reason: str,
        verdict: Verdict,
        channel: Channel,
    ) -> None:
        """Record a refused decision (``decision.rejected``): who tried, through what, and why."""
        self.store.record(
            [
                request_event(
                    request,
                    "decision.rejected",
                    actor=actor,
                    reason=reason,
                    verdict=verdict.value,
                    channel=channel.value,
                )
            ]
        )

    # ------------------------------------------------------------------ the requester's end

    def cancel(
        self, request_id: uuid.UUID | str, *, principal: str, reason: str = ""
    ) -> ApprovalRequest:
        """The requester withdraws its request (another principal: :class:`ForbiddenError`,
        recorded as ``cancel.rejected``)."""
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
        if not proceeds(request.status, request.on_timeout):
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

    def expire_due(self, now: datetime | None = None) -> list[ApprovalRequest]:
        """End every pending request past its deadline (the server's sweep)."""
        ended = self.store.expire_due(now)
        for request in ended:
            self._tell_changed(request)
        return ended

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

    # ------------------------------------------------------------------ lineage, after commit

    def _tell_opened(self, plan: GatePlan, answer: GateAnswer) -> None:
        lineage, request = self.lineage, answer.request
        if lineage is None or answer.status == CONFLICT:
            return  # nowhere to tell, or nothing was opened or answered: the gate was refused
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

    def _tell_changed(self, request: ApprovalRequest | None) -> None:
        lineage = self.lineage
        if lineage is not None and request is not None:
            self.store.on_commit(lambda: lineage.changed(request))


def _wants_a_comment(
    request: ApprovalRequest, verdict: Verdict, comment: str, now: datetime | None
) -> bool:
    """A denial the rule wants a comment for, without one, on a request that still waits (an
    ended or expired one is the store's to refuse as such)."""
    if verdict is not Verdict.DENY or not request.comment_on_deny or comment.strip():
        return False
    return request.status is Status.PENDING and not request.is_expired(now)
