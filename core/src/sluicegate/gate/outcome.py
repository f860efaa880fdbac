"""How a gate ended, typed: what the adapters map onto their orchestrator's success, failure,
skip or wait, and the one line they show."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluicegate.wire import RequestOut

__all__ = ["GateOutcome", "OutcomeKind"]


class OutcomeKind(str, enum.Enum):
    """How the gate ended (the request's status, or the policy's own answer)."""

    #: The policy let the action through at once; no request, nobody was asked.
    ALLOWED = "allowed"
    #: Enough reviewers approved the request.
    APPROVED = "approved"
    #: The policy refused the action, or a reviewer denied the request.
    DENIED = "denied"
    #: Nobody decided in time; the rule's ``on_timeout`` says whether the step goes on.
    EXPIRED = "expired"
    #: The requester withdrew the request.
    CANCELLED = "cancelled"
    #: Still undecided: only when a wait ended at its deadline (or the caller did not wait).
    PENDING = "pending"


@dataclass(frozen=True)
class GateOutcome:
    """The end of a gate: whether the step may go on, why, and the request behind it.

    :param kind: how it ended.
    :param proceed: whether the step may go on (:func:`sluicegate.model.proceeds`): allowed,
        approved, or expired under ``on_timeout: allow``. Never for a pending request.
    :param request: the server's answer.
    :param rule: the policy rule that matched (None: the policy's default).
    :param denied_by: the reviewer who denied it (None: nobody did, or the policy did).
    :param reason: why it was denied: the reviewer's comment, or the policy rule's reason.
    :param approvers: the reviewers who approved it, in order.
    :param released: whether the gate recorded that the step went on (``gate.released``).
    :param message: one line for the adapters' logs and errors, e.g. ``request 0197.. was
        denied by bob: not today (rule 'pii-export')``.
    """

    kind: OutcomeKind
    proceed: bool
    request: RequestOut
    rule: str | None
    denied_by: str | None
    reason: str
    approvers: tuple[str, ...]
    message: str
    released: bool = False

    @classmethod
    def of(cls, answer: RequestOut | Mapping[str, Any]) -> GateOutcome:
        """The outcome an answer stands for (a :class:`RequestOut` or its JSON, as a trigger's
        event carries it), with nothing recorded: see :meth:`sluicegate.gate.Gate.settle`."""
        # The models are imported here, by the first gate: importing the gate stays cheap.
        from sluicegate.model import Verdict, proceeds
        from sluicegate.wire import RequestOut

        if not isinstance(answer, RequestOut):
            answer = RequestOut.model_validate(answer)
        kind = OutcomeKind(answer.status)
        denial = next((d for d in reversed(answer.decisions) if d.verdict is Verdict.DENY), None)
        denied_by = denial.reviewer if kind is OutcomeKind.DENIED and denial else None
        reason = denial.comment if denied_by and denial else answer.reason
        approvers = tuple(d.reviewer for d in answer.decisions if d.verdict is Verdict.APPROVE)
        outcome = cls(
            kind=kind,
            proceed=proceeds(answer.status, answer.on_timeout),
            request=answer,
            rule=answer.rule,
            denied_by=denied_by,
            reason=reason,
            approvers=approvers,
            message="",
        )
        return replace(outcome, message=_message(outcome))

    @property
    def is_request(self) -> bool:
        """Whether a request stands behind it (the policy's own allow or deny has none)."""
        answer = self.request
        return self.kind not in (OutcomeKind.ALLOWED, OutcomeKind.DENIED) or bool(answer.decisions)


def _message(outcome: GateOutcome) -> str:
    answer = outcome.request
    by_rule = f"rule {outcome.rule!r}" if outcome.rule else "the policy's default"
    if not outcome.is_request:  # the policy's own answer: there is no request to name
        said = f": {outcome.reason}" if outcome.reason else ""
        return f"{answer.status} by {by_rule}{said}"
    if outcome.kind is OutcomeKind.PENDING:
        return f"request {answer.id} is still pending under {by_rule}"
    who = ""
    if outcome.denied_by:
        who = f" by {outcome.denied_by}" + (f": {outcome.reason}" if outcome.reason else "")
    elif outcome.kind is OutcomeKind.APPROVED and outcome.approvers:
        who = f" by {', '.join(outcome.approvers)}"
    notes = [answer.reason] if answer.reason and not outcome.denied_by else []
    notes.append(by_rule)
    if outcome.kind is OutcomeKind.EXPIRED:
        notes.append(f"on_timeout: {answer.on_timeout}")
    return f"request {answer.id} was {answer.status}{who} ({'; '.join(notes)})"
