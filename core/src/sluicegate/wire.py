"""The JSON shapes of HTTP API v1, shared by the server and the client.

One definition for both ends, so that what the server answers and what the client reads can
never drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sluicegate.model import Action, Channel, ParentRun, Verdict, no_nul

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


class RequesterIn(_In):
    """The requester as a pipeline describes it; the principal comes from the token."""

    orchestrator: str = Field("api", min_length=1, max_length=64)
    job: str = Field("", max_length=512)
    run_id: str = Field("", max_length=512)
    step: str = Field("", max_length=512)
    # Strict: an integer, as the document says, never a boolean or a string of digits.
    try_number: int = Field(0, ge=0, strict=True)
    map_index: int = Field(-1, strict=True)
    owner: str | None = Field(None, max_length=512)
    triggered_by: str | None = Field(None, max_length=512)
    #: The orchestrator run the gate belongs to (its OpenLineage parent); adapters fill it.
    parent: ParentRun | None = None


class GateIn(_In):
    """Open a gate (idempotent on ``idempotency_key``)."""

    idempotency_key: str = Field(min_length=1, max_length=512)
    action: Action
    requester: RequesterIn = Field(default_factory=lambda: RequesterIn())


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
    on_timeout: Literal["deny", "allow"] = "deny"
    groups: list[str] = []
    action: dict[str, Any] | None = None
    classifications: dict[str, list[str]] = Field(
        default_factory=dict,
        description="each dataset (namespace::name) with its effective classifications",
    )
    classification_sources: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict,
        description="each dataset's classifications with where each came from: "
        "{classification, source, path: [{namespace, name, job}]} (path: through lineage)",
    )
    requester: dict[str, Any] | None = None
    decisions: list[DecisionOut] = []
    lineage_run_id: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the answer can no longer change."""
        return self.status in TERMINAL_STATUSES

    @property
    def may_proceed(self) -> bool:
        """True only when the gated step may run: allowed by policy, approved, or expired
        under a rule whose timeout allows (``on_timeout: allow``)."""
        if self.status == "expired":
            return self.on_timeout == "allow"
        return self.status in ("allowed", "approved")

    @property
    def releases(self) -> bool:
        """True when going on should be recorded (``release``): a request let the step pass
        (approved, or expired under ``on_timeout: allow``); a policy answer has no request."""
        return self.may_proceed and self.status != "allowed"

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
