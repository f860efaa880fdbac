"""Opening a gate: the policy's answer made into what the store keeps, and the caller's answer.

:func:`plan_gate` evaluates the action and builds the new request (or the policy's immediate
answer) with its audit row, touching no database; the store then opens every plan of a batch
together, and :func:`answer_of` says what each caller is told, a refused idempotency key
included (``conflict``, in words that name nothing of another principal's request).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sluicegate.audit import AuditEvent
from sluicegate.model import Action, ApprovalRequest, ClassificationSource, Requester
from sluicegate.policy import Evaluation, Policy
from sluicegate.store import GateStored, request_event

__all__ = ["CONFLICT", "GateAnswer", "GatePlan", "answer_of", "plan_gate"]

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


def plan_gate(
    policy: Policy,
    *,
    idempotency_key: str,
    action: Action,
    requester: Requester,
    inherited: Mapping[tuple[str, str], Iterable[str]] | None = None,
    classifications: Mapping[str, tuple[ClassificationSource, ...]] | None = None,
    now: datetime | None = None,
) -> GatePlan:
    """``policy``'s answer and what opening the gate would store; touches no database.

    ``inherited`` are the classifications lineage gives the action's datasets (the policy
    matches on them); ``classifications`` says where each effective one came from, and is
    kept with the request for its reviewers, its audit row and its lineage facet.
    Apart from the store's work so that a server can evaluate outside its writer.
    """
    ev = policy.evaluate(action, requester, inherited=inherited)
    fingerprint = action.fingerprint()
    sources = dict(classifications or {})
    labels = {key: sorted(c.classification for c in found) for key, found in sources.items()}
    labels = {key: found for key, found in labels.items() if found}
    shown = {"classifications": labels} if labels else {}
    if ev.outcome in ("allow", "deny"):
        event = AuditEvent(
            kind="policy.allowed" if ev.outcome == "allow" else "policy.denied",
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
                "policy": policy.digest,
                **shown,
            },
        )
        return GatePlan(
            idempotency_key, ev, None, (event,), action, requester, sources, fingerprint
        )
    need = ev.requirement
    assert need is not None  # a require outcome always carries its requirement
    request = ApprovalRequest.open(
        idempotency_key=idempotency_key,
        action=action,
        requester=requester,
        rule=ev.rule,
        required_approvals=need.approvals,
        required_denials=need.denials,
        groups=need.groups,
        comment_on_deny=need.comment_on_deny,
        on_timeout=need.on_timeout,
        timeout=need.timeout,
        now=now,
        classifications=sources,
    )
    created = request_event(
        request,
        "request.created",
        actor=requester.principal,
        rule=ev.rule,
        required_approvals=need.approvals,
        groups=list(need.groups),
        eligible=[r.id for r in ev.eligible],
        satisfiable=ev.satisfiable,
        fingerprint=request.fingerprint,
        policy=policy.digest,
        expires_at=request.expires_at.isoformat() if request.expires_at else None,
        triggered_by=requester.triggered_by,
        owner=requester.owner,
        run_id=requester.run_id,
        **shown,
    )
    return GatePlan(
        idempotency_key,
        ev,
        request,
        (created,),
        action,
        requester,
        sources,
        request.fingerprint,
    )


def answer_of(plan: GatePlan, stored: GateStored) -> GateAnswer:
    """What the caller of an opened gate is told, once the store has ``plan``."""
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
