"""A request and how it ends: the status machine, the one rule of whether a step goes on
(:func:`proceeds`), reviewers' decisions, and where each dataset's classifications came from.

The status machine::

    pending ──> approved | denied | expired | cancelled     (terminal states never change)
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, model_validator

from sluicegate.exceptions import TransitionError
from sluicegate.model.action import Action
from sluicegate.model.base import Frozen, utcnow, uuid7
from sluicegate.model.requester import Requester

__all__ = [
    "TERMINAL",
    "ApprovalRequest",
    "Channel",
    "ClassificationSource",
    "Decision",
    "LineageHop",
    "OnTimeout",
    "Status",
    "Verdict",
    "check_transition",
    "proceeds",
]


class Status(str, enum.Enum):
    """Where a request is in its life. Only ``pending`` can change."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for a state that never changes again."""
        return self is not Status.PENDING


TERMINAL = frozenset(s for s in Status if s.terminal)

_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset(TERMINAL),
    **{s: frozenset() for s in TERMINAL},
}


#: What a rule does when its request expires undecided: refuse the step (the default) or let it
#: go on.
OnTimeout = Literal["deny", "allow"]


def proceeds(status: str, on_timeout: str = "deny") -> bool:
    """Whether a gate that ended in ``status`` lets its step go on: the one rule, for the gate
    that decides it and the server that records the step going on (``release``).

    ``allowed`` (the policy's own answer, no request) and ``approved`` let it; ``expired`` lets
    it only under a rule whose ``on_timeout`` is ``allow``; ``denied``, ``cancelled`` and
    ``pending`` never do: the gate fails closed. ``status`` is a :class:`Status` or the API's
    status text.
    """
    if status == Status.EXPIRED:
        return on_timeout == "allow"
    return status in ("allowed", Status.APPROVED)


def check_transition(current: Status, new: Status) -> None:
    """Raise :class:`TransitionError` unless ``current -> new`` is a legal move."""
    if new not in _TRANSITIONS[current]:
        if current.terminal:
            raise TransitionError(
                f"request is already {current.value}; a terminal state cannot become {new.value}"
            )
        raise TransitionError(f"illegal transition {current.value} -> {new.value}")


class Verdict(str, enum.Enum):
    """What a reviewer says."""

    APPROVE = "approve"
    DENY = "deny"


class Channel(str, enum.Enum):
    """Where a decision came from (recorded in the audit log)."""

    WEB = "web"
    SLACK = "slack"
    TEAMS_LINK = "teams-link"
    LINK = "link"
    CLI = "cli"
    API = "api"


class Decision(Frozen):
    """One reviewer's verdict on one request. A reviewer counts once per request."""

    reviewer: Annotated[str, Field(min_length=1, max_length=256)]
    verdict: Verdict
    comment: Annotated[str, Field(max_length=4000)] = ""
    channel: Channel = Channel.API
    fingerprint: str
    decided_at: datetime = Field(default_factory=utcnow)


class LineageHop(Frozen):
    """One step on the way a classification took: data moved from this dataset through ``job``."""

    namespace: str
    name: str
    job: str  # "namespace::name" of the OpenLineage job


class ClassificationSource(Frozen):
    """Why a dataset of a request carries a classification: the first source found.

    ``source`` says where it started (the pipeline, a ``classify`` rule, an OpenLineage tags
    facet); ``path`` leads from the dataset that carries it on its own to this one, through
    lineage (empty when the dataset carries it itself).
    """

    classification: str
    source: str
    path: tuple[LineageHop, ...] = ()


class ApprovalRequest(Frozen):
    """A gate that an action is waiting at."""

    id: uuid.UUID = Field(default_factory=uuid7)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=512)]
    action: Action
    requester: Requester
    rule: str | None = None
    required_approvals: Annotated[int, Field(ge=0)] = 1
    required_denials: Annotated[int, Field(ge=1)] = 1
    groups: tuple[str, ...] = ()
    comment_on_deny: bool = False
    on_timeout: OnTimeout = "deny"
    status: Status = Status.PENDING
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    fingerprint: str = ""
    lineage_run_id: uuid.UUID = Field(default_factory=uuid7)
    decisions: tuple[Decision, ...] = ()
    #: "namespace::name" of each dataset of the action -> its effective classifications and
    #: where each came from, as the server found them when the gate opened (lineage included).
    classifications: dict[str, tuple[ClassificationSource, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_fingerprint(self) -> ApprovalRequest:
        expected = self.action.fingerprint()
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", expected)
        elif self.fingerprint != expected:
            raise ValueError("fingerprint does not match the action")
        return self

    @classmethod
    def open(
        cls,
        *,
        idempotency_key: str,
        action: Action,
        requester: Requester,
        rule: str | None,
        required_approvals: int,
        timeout: timedelta | None,
        required_denials: int = 1,
        groups: tuple[str, ...] = (),
        comment_on_deny: bool = False,
        on_timeout: OnTimeout = "deny",
        now: datetime | None = None,
        classifications: dict[str, tuple[ClassificationSource, ...]] | None = None,
    ) -> ApprovalRequest:
        """A new pending request; ``timeout`` sets ``expires_at``."""
        created = now or utcnow()
        return cls(
            idempotency_key=idempotency_key,
            action=action,
            requester=requester,
            rule=rule,
            required_approvals=required_approvals,
            required_denials=required_denials,
            groups=groups,
            comment_on_deny=comment_on_deny,
            on_timeout=on_timeout,
            created_at=created,
            expires_at=created + timeout if timeout is not None else None,
            classifications=classifications or {},
        )

    def transition(self, new: Status) -> ApprovalRequest:
        """This request in state ``new``; raises :class:`TransitionError` if not allowed."""
        check_transition(self.status, new)
        return self.model_copy(update={"status": new})

    @property
    def approvals(self) -> int:
        """Distinct reviewers who approved."""
        return len({d.reviewer for d in self.decisions if d.verdict is Verdict.APPROVE})

    @property
    def denials(self) -> int:
        """Distinct reviewers who denied."""
        return len({d.reviewer for d in self.decisions if d.verdict is Verdict.DENY})

    def is_expired(self, now: datetime | None = None) -> bool:
        """True when pending past ``expires_at``."""
        if self.status is not Status.PENDING or self.expires_at is None:
            return False
        return (now or utcnow()) >= self.expires_at
