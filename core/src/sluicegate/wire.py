"""The JSON shapes of HTTP API v1, shared by the server and the client.

One definition for both ends, so that what the server answers and what the client reads can
never drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sluicegate.model import (
    Action,
    Channel,
    ClassificationSource,
    OnTimeout,
    Requester,
    Verdict,
    no_nul,
)

__all__ = [
    "TERMINAL_STATUSES",
    "CancelIn",
    "DecisionIn",
    "DecisionOut",
    "ErrorOut",
    "GateIn",
    "RequestOut",
    "RequestPage",
    "RequesterIn",
    "VerifyOut",
]

#: Answers after which nothing changes any more (``allowed`` and ``denied`` straight from the
#: policy included).
TERMINAL_STATUSES = frozenset({"allowed", "denied", "approved", "expired", "cancelled"})


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _no_nul = field_validator("*", mode="after")(classmethod(lambda cls, v: no_nul(v)))


class RequesterIn(Requester):
    """The requester as a gate's body gives it: a :class:`~sluicegate.model.Requester` with
    the API's restrictions. Its principal comes from the token, never the body, and
    ``try_number`` and ``map_index`` are integers as the document says, never a boolean or a
    string of digits. :meth:`with_principal` makes the requester the server stores."""

    try_number: Annotated[int, Field(ge=0, strict=True)] = 0
    map_index: Annotated[int, Field(strict=True)] = -1

    @field_validator("principal")
    @classmethod
    def _principal_from_the_token(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("the principal comes from the token, never from the body")
        return value

    def with_principal(self, principal: str) -> Requester:
        """The requester as asked, with the principal of the token that asked."""
        return Requester.model_construct(**{**dict(self), "principal": principal})


class GateIn(_In):
    """Open a gate (idempotent on ``idempotency_key``)."""

    idempotency_key: str = Field(min_length=1, max_length=512)
    action: Action
    requester: RequesterIn = Field(default_factory=RequesterIn)


class DecisionIn(_In):
    """A reviewer's decision; the reviewer is the caller."""

    verdict: Verdict
    comment: str = Field("", max_length=4000)
    fingerprint: str | None = Field(
        None, description="the action fingerprint the reviewer was shown; refused if it differs"
    )


class CancelIn(_In):
    """Why the requester withdraws."""

    reason: str = Field("", max_length=2000)


class DecisionOut(BaseModel):
    """One decision."""

    reviewer: str
    verdict: Verdict
    comment: str
    channel: Channel
    decided_at: datetime


class RequestOut(BaseModel):
    """A gate's answer, or a request's state."""

    id: str
    status: Literal["allowed", "denied", "pending", "approved", "expired", "cancelled"]
    rule: str | None
    reason: str = ""
    required_approvals: int = 0
    approvals: int = 0
    denials: int = 0
    expires_at: datetime | None = None
    review_url: str | None = None
    created_at: datetime | None = None
    idempotency_key: str | None = None
    fingerprint: str | None = None
    comment_on_deny: bool = False
    #: What the rule does at the deadline: ``deny`` (the default) or ``allow``.
    on_timeout: OnTimeout = "deny"
    groups: list[str] = []
    action: Action | None = None
    classifications: dict[str, list[str]] = Field(
        default_factory=dict,
        description="each dataset (namespace::name) with its effective classifications",
    )
    classification_sources: dict[str, list[ClassificationSource]] = Field(
        default_factory=dict,
        description="each dataset's classifications with where each came from: "
        "{classification, source, path: [{namespace, name, job}]} (path: through lineage)",
    )
    requester: Requester | None = None
    decisions: list[DecisionOut] = []
    lineage_run_id: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the answer can no longer change."""
        return self.status in TERMINAL_STATUSES

    @property
    def outcome(self) -> str:
        """The answer in words, for the adapters' log line: ``allowed by the policy's
        default``, ``denied by rule 'no-secrets'``, ``pending under rule 'pii-export'``."""
        by = "by" if self.status in ("allowed", "denied") else "under"
        what = f"rule {self.rule!r}" if self.rule else "the policy's default"
        return f"{self.status} {by} {what}"


class RequestPage(BaseModel):
    """A page of the inbox."""

    items: list[RequestOut]
    next: str | None = Field(None, description="pass as `before` for the next page")


class ErrorOut(BaseModel):
    """Every error answer of the API: a stable code to branch on and one sentence for people
    (``{"error": "not_found", "detail": "no request 0197..."}``)."""

    model_config = ConfigDict(extra="forbid")

    error: str = Field(
        description="the kind of error, stable across versions: bad_request, malformed_json, "
        "unauthorized, forbidden, not_found, conflict, too_large, invalid_request, "
        "too_many_requests, unavailable, ..."
    )
    detail: str = Field(description="one sentence that says what was wrong")


class VerifyOut(BaseModel):
    """The audit chain's state."""

    ok: bool
    rows: int
    head: str
    bad_seq: int | None
    problem: str
