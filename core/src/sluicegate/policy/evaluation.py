"""What evaluating an action gives: the :class:`Evaluation`, and the :class:`Requirement` a
``require`` outcome carries (the compiled ``require`` block: quorum, groups, deadlines)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from sluicegate.policy.eligibility import Reviewer
from sluicegate.policy.schema import Outcome, RequireSpec
from sluicegate.timefmt import parse_duration

__all__ = ["Evaluation", "Requirement"]


@dataclass(frozen=True)
class Requirement:
    """The compiled ``require`` block of a rule (or of the default)."""

    approvals: int
    groups: tuple[str, ...]
    comment_on_deny: bool
    timeout: timedelta
    on_timeout: Literal["deny", "allow"]
    denials: int
    remind_after: timedelta | None = None
    escalate_after: timedelta | None = None
    escalate_to: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, spec: RequireSpec) -> Requirement:
        """Compile a ``require`` block (its durations parsed)."""
        return cls(
            approvals=spec.approvals,
            groups=tuple(spec.groups),
            comment_on_deny=spec.comment_on_deny,
            timeout=parse_duration(spec.timeout),
            on_timeout=spec.on_timeout,
            denials=spec.denials,
            remind_after=None if spec.remind_after is None else parse_duration(spec.remind_after),
            escalate_after=(
                None if spec.escalate_after is None else parse_duration(spec.escalate_after)
            ),
            escalate_to=tuple(spec.escalate_to),
        )


@dataclass(frozen=True)
class Evaluation:
    """What the policy says about one action, and why."""

    outcome: Outcome
    rule: str | None
    reasons: tuple[str, ...] = ()
    requirement: Requirement | None = None
    eligible: tuple[Reviewer, ...] = ()
    excluded: tuple[tuple[Reviewer, str], ...] = ()
    notify: tuple[str, ...] = ()
    reason: str = ""
    classifications: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    trace: tuple[str, ...] = ()

    @property
    def satisfiable(self) -> bool:
        """False when fewer reviewers are eligible than the quorum needs."""
        return self.requirement is None or len(self.eligible) >= self.requirement.approvals

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (for ``--format json`` and the API)."""
        req = self.requirement
        return {
            "outcome": self.outcome,
            "rule": self.rule,
            "reasons": list(self.reasons),
            "reason": self.reason,
            "required_approvals": req.approvals if req else 0,
            "groups": list(req.groups) if req else [],
            "timeout_seconds": int(req.timeout.total_seconds()) if req else None,
            "on_timeout": req.on_timeout if req else None,
            "comment_on_deny": req.comment_on_deny if req else False,
            "eligible_reviewers": [r.id for r in self.eligible],
            "excluded_reviewers": [{"id": r.id, "why": why} for r, why in self.excluded],
            "satisfiable": self.satisfiable,
            "notify": list(self.notify),
            "classifications": {k: list(v) for k, v in self.classifications.items()},
            "trace": list(self.trace),
        }
