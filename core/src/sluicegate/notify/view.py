"""What every channel says about a request: one view, read once from the request.

:meth:`RequestView.of` reads an :class:`~sluicegate.model.ApprovalRequest` into plain,
formatted facts (times in UTC, requester fields in a fixed order, the datasets with their
classifications); each channel (:mod:`sluicegate.notify.channels`) turns the view into its own
document, and the review pages (:mod:`sluicegate.server.pages.view`) extend it with what only a
page shows (the context, the requirement). So a Slack message, a Teams card, a webhook body and
the review page say the same progress, the same classifications, the same rule. Pure data, no
I/O, no escaping: escaping belongs to each channel and to the pages' templates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple, Protocol

from sluicegate.model import ApprovalRequest, Asset, Status, Verdict
from sluicegate.timefmt import span, time_left

__all__ = [
    "DEFAULT_RULE",
    "END_EVENTS",
    "EVENTS",
    "ClassificationLine",
    "Classifier",
    "DatasetLine",
    "DecisionLine",
    "RequestView",
    "check_event",
    "iso_utc",
]

#: The events a notification can be about (the outbox row's ``kind``).
EVENTS = (
    "request.created",
    "decision.recorded",
    "request.approved",
    "request.denied",
    "request.expired",
    "request.cancelled",
    "reminder",
    "escalation",
)
#: The events that end a request (``request.<terminal status>``).
END_EVENTS = frozenset(f"request.{s.value}" for s in Status if s.terminal)

#: What a view says for the rule of a request that no named rule matched.
DEFAULT_RULE = "(the policy's default)"


def check_event(event: str) -> None:
    """Raise ValueError unless ``event`` is one of :data:`EVENTS`."""
    if event not in EVENTS:
        raise ValueError(
            f"unknown notification event {event!r}; expected one of {', '.join(EVENTS)}"
        )


class Classifier(Protocol):
    """Who says what a dataset is classified as, and why (the :class:`~sluicegate.policy.Policy`).

    Asked only for requests stored before the gate recorded its findings.
    """

    def classification_sources(self, asset: Asset) -> Mapping[str, str]:
        """Each effective classification of ``asset`` and where it came from."""
        ...


class ClassificationLine(NamedTuple):
    """One classification of a dataset, where it came from, and the lineage it came through."""

    classification: str
    #: ``given by the pipeline``, ``classify rule on crm::raw, through lineage``...
    source: str
    #: ``crm::raw (job etl::load) → crm::customers``, or ``""`` when not through lineage.
    path: str = ""


@dataclass(frozen=True)
class DatasetLine:
    """One dataset of the action, as every channel shows it."""

    role: str  # "input" | "output"
    namespace: str
    name: str
    #: Sorted by classification.
    classifications: tuple[ClassificationLine, ...]

    @property
    def qualified(self) -> str:
        """``namespace::name``, the way Sluicegate names a dataset everywhere."""
        return f"{self.namespace}::{self.name}"


@dataclass(frozen=True)
class DecisionLine:
    """One reviewer's decision so far."""

    reviewer: str
    verdict: str  # "approve" | "deny"
    comment: str
    channel: str
    decided_at: datetime


@dataclass(frozen=True)
class RequestView:
    """What every channel (and the review page) says about one request, read once.

    All times are timezone-aware UTC. ``requester`` holds ``(key, label, value)`` for each
    requester field (value ``""`` when the pipeline gave none), in a fixed order. ``rule`` is
    ``""`` when no named rule matched (see :attr:`rule_label`).
    """

    request_id: str
    status: str
    #: Still waiting and not past its deadline: the only state in which anyone may decide.
    pending: bool
    summary: str
    kind: str
    environment: str
    destination: str
    datasets: tuple[DatasetLine, ...]
    requester: tuple[tuple[str, str, str], ...]
    rule: str
    required_approvals: int
    required_denials: int
    approvals: int
    denials: int
    decisions: tuple[DecisionLine, ...]
    created_at: datetime
    expires_at: datetime | None
    time_left: str
    review_url: str
    eligible: tuple[str, ...]
    comment_on_deny: bool
    on_timeout: str
    fingerprint: str
    policy_note: str
    as_of: datetime

    @classmethod
    def of(
        cls,
        request: ApprovalRequest,
        *,
        review_url: str,
        now: datetime,
        eligible: Sequence[str] = (),
        policy_note: str = "",
        classifier: Classifier | None = None,
    ) -> RequestView:
        """The view of ``request`` at ``now`` (a naive ``now`` is taken as UTC).

        Classifications are those the server found when the gate opened
        (``request.classifications``). A request stored before the gate recorded them is
        answered by ``classifier`` (the policy: the pipeline's labels plus its own ``classify``
        rules, which is what the server would find now, lineage aside); with no classifier,
        by the dataset's own labels, "given by the pipeline".
        """
        now = _utc(now)
        datasets = tuple(
            DatasetLine(
                role, asset.namespace, asset.name, _classifications(request, asset, classifier)
            )
            for role, assets in (
                ("input", request.action.inputs),
                ("output", request.action.outputs),
            )
            for asset in assets
        )
        r = request.requester
        requester = (
            ("orchestrator", "Orchestrator", r.orchestrator),
            ("job", "Job", r.job),
            ("run_id", "Run id", r.run_id),
            ("step", "Step", r.step),
            ("owner", "Owner", r.owner or ""),
            ("triggered_by", "Triggered by", r.triggered_by or ""),
            ("principal", "Principal", r.principal or ""),
        )
        decisions = tuple(
            DecisionLine(
                d.reviewer, d.verdict.value, d.comment, d.channel.value, _utc(d.decided_at)
            )
            for d in request.decisions
        )
        expires = _utc(request.expires_at) if request.expires_at is not None else None
        return cls(
            request_id=str(request.id),
            status=request.status.value,
            pending=request.status is Status.PENDING and not request.is_expired(now),
            summary=request.action.summary,
            kind=request.action.kind,
            environment=request.action.environment or "",
            destination=request.action.destination or "",
            datasets=datasets,
            requester=requester,
            rule=request.rule or "",
            required_approvals=request.required_approvals,
            required_denials=request.required_denials,
            approvals=request.approvals,
            denials=request.denials,
            decisions=decisions,
            created_at=_utc(request.created_at),
            expires_at=expires,
            time_left=time_left(request.status, expires, now),
            review_url=review_url,
            eligible=tuple(eligible),
            comment_on_deny=request.comment_on_deny,
            on_timeout=request.on_timeout,
            fingerprint=request.fingerprint,
            policy_note=policy_note,
            as_of=now,
        )

    @property
    def rule_label(self) -> str:
        """The rule's name, or :data:`DEFAULT_RULE` when no named rule matched."""
        return self.rule or DEFAULT_RULE

    @property
    def progress(self) -> str:
        """Quorum progress: ``1 of 2 approvals``, and ``1 of 2 denials`` when there are any.

        Counted against what is needed, so a reviewer reads how far the request is from
        either end (``1 of 2 approved`` could be read as one of two reviewers).
        """
        noun = "approval" if self.required_approvals == 1 else "approvals"
        text = f"{self.approvals} of {self.required_approvals} {noun}"
        if self.denials:
            noun = "denial" if self.required_denials == 1 else "denials"
            text += f", {self.denials} of {self.required_denials} {noun}"
        return text

    @property
    def time_left_short(self) -> str:
        """``3 h 5 min left``, ``no deadline``, ``expired``, ``ended``: for one-line texts."""
        if self.status != Status.PENDING.value:
            return "ended"
        if self.expires_at is None:
            return "no deadline"
        if self.as_of >= self.expires_at:
            return "past its deadline"
        return f"{span(self.expires_at - self.as_of)} left"

    @property
    def approvers(self) -> tuple[str, ...]:
        """Reviewers who approved, in the order they did."""
        return _distinct(d.reviewer for d in self.decisions if d.verdict == Verdict.APPROVE.value)

    @property
    def deniers(self) -> tuple[str, ...]:
        """Reviewers who denied, in the order they did."""
        return _distinct(d.reviewer for d in self.decisions if d.verdict == Verdict.DENY.value)

    @property
    def title(self) -> str:
        """Our own words for a message's heading: what is asked, or how it ended."""
        if self.pending:
            return f"Approval needed: {self.kind}"
        status = self.status if self.status != Status.PENDING.value else Status.EXPIRED.value
        return f"{status.capitalize()}: {self.kind}"

    @property
    def outcome(self) -> str:
        """How the request stands, in a few words: ``approved by alice, bob``, ``pending``..."""
        if self.status == Status.APPROVED.value:
            who = ", ".join(self.approvers)
            return (
                f"approved by {who}"
                if who
                else f"approved at its deadline (on timeout: {self.on_timeout})"
            )
        if self.status == Status.DENIED.value:
            who = ", ".join(self.deniers)
            return f"denied by {who}" if who else "denied"
        if self.status == Status.EXPIRED.value:
            return f"expired without a decision (on timeout: {self.on_timeout})"
        if self.status == Status.CANCELLED.value:
            return "cancelled by the requester"
        return "pending" if self.pending else "past its deadline, about to expire"


def iso_utc(moment: datetime | None) -> str | None:
    """``moment`` as ISO-8601 UTC with a ``Z`` (None stays None); naive means UTC."""
    if moment is None:
        return None
    return _utc(moment).isoformat().replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _distinct(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _classifications(
    request: ApprovalRequest, asset: Asset, classifier: Classifier | None
) -> tuple[ClassificationLine, ...]:
    found = request.classifications.get(str(asset))
    if found is not None:
        lines = [
            ClassificationLine(
                c.classification,
                c.source,
                " → ".join(
                    [f"{h.namespace}::{h.name} (job {h.job})" for h in c.path] + [str(asset)]
                )
                if c.path
                else "",
            )
            for c in found
        ]
    elif classifier is not None:
        lines = [
            ClassificationLine(c, why)
            for c, why in classifier.classification_sources(asset).items()
        ]
    else:
        lines = [ClassificationLine(c, "given by the pipeline") for c in asset.classifications]
    return tuple(sorted(lines))
