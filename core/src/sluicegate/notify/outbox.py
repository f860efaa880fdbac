"""What to notify, planned inside the change's own transaction, and who is told.

:class:`Planner` is a :attr:`Store.on_change <sluicegate.store.Store.on_change>` hook: when a
request is created, decided or ended it writes the outbox rows for that change on the same
connection, so they commit (or roll back) with it. A request's creation goes to the targets of
its rule's ``notify`` (``slack:#channel``, ``teams``, ``webhook``; those whose channel is not
configured are left out), plus a direct message to each eligible reviewer when
``slack.dm_reviewers`` is on; every later change of the request goes to the targets its
creation went to, so a policy edited meanwhile changes nothing for requests already open.

:func:`plan_followups` (the dispatcher's periodic sweep) plans reminders (``remind_after``,
to the same targets) and escalations (``escalate_after``, to those targets and to the
reviewers of ``escalate_to``), each once.

A request opened by a Prefect flow run (requester orchestrator ``prefect``, its ``run_id`` the
flow run's UUID) also gets the target ``prefect:<flow run id>`` when Prefect's API is
configured: the dispatcher resumes that paused run once the request ends. Only the request's
terminal change goes there (not its creation, no decision in between, no reminder): a paused
run is resumed once, with the outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from sluicegate.model import ApprovalRequest, Status, utcnow
from sluicegate.policy import Policy
from sluicegate.store import Store
from sluicegate.store.outbox import OutboxTable
from sluicegate.store.schema import outbox, requests

__all__ = ["END_KINDS", "Channels", "Planner", "plan_followups", "prefect_target"]

#: The changes that end a request (``request.<terminal status>``).
END_KINDS = frozenset(f"request.{s.value}" for s in Status if s.terminal)


@dataclass(frozen=True)
class Channels:
    """Which channels are configured (tokens and URLs live in the settings, never here)."""

    slack_bot: bool = False
    slack_webhook: bool = False
    teams: bool = False
    webhook: bool = False
    slack_dm_reviewers: bool = False
    #: Prefect's API is configured: paused Prefect flow runs are resumed by the server.
    prefect: bool = False

    @property
    def any(self) -> bool:
        return self.slack_bot or self.slack_webhook or self.teams or self.webhook or self.prefect

    def accepts(self, target: str) -> bool:
        scheme = target.split(":", 1)[0]
        if scheme == "slack":
            return self.slack_bot or self.slack_webhook
        if scheme == "slack-dm":
            return self.slack_bot
        if scheme == "teams":
            return self.teams
        return scheme == "webhook" and self.webhook


def prefect_target(request: ApprovalRequest) -> str | None:
    """``prefect:<flow run id>`` for a request a Prefect flow run opened, else None.

    The run id must be a UUID (what Prefect's flow run ids are): anything else cannot name a
    flow run, and would only fail at every resume attempt.
    """
    requester = request.requester
    if requester.orchestrator != "prefect":
        return None
    try:
        return f"prefect:{uuid.UUID(requester.run_id)}"
    except ValueError:
        return None


def _row(rid: str, kind: str, target: str, extra: str = "") -> tuple[str, str, str, dict[str, str]]:
    key = f"{rid}:{kind}:{extra + ':' if extra else ''}{target}"
    # Planned once with the row (a second planning of the same key inserts nothing), so every
    # resend carries the same id: see OutboxRow.delivery_id.
    return key, target, kind, {"delivery_id": str(uuid.uuid4())}


class Planner:
    """The outbox rows of each change (see the module's docstring)."""

    def __init__(self, table: OutboxTable, policy: Policy, channels: Channels) -> None:
        self.table = table
        self.policy = policy
        self.channels = channels
        #: Called once planned rows are committed (the dispatcher's wake-up).
        self.wake: Callable[[], None] | None = None

    def __call__(self, conn: Connection, kind: str, request: ApprovalRequest) -> None:
        if not self.channels.any:
            return
        rid = str(request.id)
        if kind == "request.created":
            rows = [_row(rid, kind, t) for t in self.targets_for(request)]
        else:
            extra = ""
            if kind == "decision.recorded" and request.decisions:
                extra = request.decisions[-1].reviewer
            targets = self.table.targets_of(conn, rid)
            prefect = prefect_target(request) if self.channels.prefect else None
            if prefect is not None and kind in END_KINDS:
                targets.append(prefect)
            rows = [_row(rid, kind, t, extra) for t in targets]
        self.table.enqueue(conn, rid, rows)
        if rows and self.wake is not None:
            self.table.store.on_commit(self.wake)

    def targets_for(self, request: ApprovalRequest) -> list[str]:
        """Where the creation of ``request`` is announced."""
        _, notify = self.policy.rule_named(request.rule)
        targets = [t if t.startswith("slack:") else t.split(":", 1)[0] for t in notify]
        targets = [t for t in dict.fromkeys(targets) if self.channels.accepts(t)]
        if self.channels.slack_dm_reviewers and self.channels.slack_bot:
            targets += [f"slack-dm:{r}" for r in self.eligible(request) if self._slack_id(r)]
        return targets

    def eligible(self, request: ApprovalRequest) -> list[str]:
        """The reviewers who may decide ``request`` (never its requester, owner or trigger)."""
        return [
            r.id
            for r in self.policy.members(request.groups)
            if self.policy.may_decide(r.id, request.groups, request.requester) is None
        ]

    def _slack_id(self, reviewer: str) -> str | None:
        r = self.policy.reviewer(reviewer)
        return r.slack_id if r is not None else None


def plan_followups(
    store: Store, table: OutboxTable, planner: Planner, now: datetime | None = None
) -> int:
    """Plan the reminders and escalations that are due; returns how many rows were planned
    (a row already planned is not planned again)."""
    now = now or utcnow()
    planned = 0
    with store.read() as conn:
        waiting = conn.execute(
            select(requests.c.id, requests.c.rule, requests.c.created_at).where(
                requests.c.status == Status.PENDING.value
            )
        ).all()
    due: list[tuple[str, str, list[str]]] = []
    for rid, rule, created in waiting:
        requirement, _ = planner.policy.rule_named(rule)
        if requirement is None:
            continue
        if requirement.remind_after is not None and created + requirement.remind_after <= now:
            due.append((rid, "reminder", []))
        if requirement.escalate_after is not None and created + requirement.escalate_after <= now:
            to = [r.id for r in planner.policy.members(requirement.escalate_to)]
            due.append((rid, "escalation", to))
    if not due:
        return 0
    with store.read() as conn:  # planned before: skip (most sweeps find nothing new)
        done = {
            (row.request_id, row.kind)
            for row in conn.execute(
                select(outbox.c.request_id, outbox.c.kind).where(
                    outbox.c.kind.in_(("reminder", "escalation")),
                    outbox.c.request_id.in_(sorted({rid for rid, _, _ in due})),
                )
            )
        }
    due = [d for d in due if (d[0], d[1]) not in done]
    if not due:
        return 0
    with store.write() as conn:
        for rid, kind, to in due:
            targets: list[str] = table.targets_of(conn, rid)
            if kind == "escalation" and planner.channels.slack_bot:
                dms = [f"slack-dm:{r}" for r in to if planner._slack_id(r)]
                targets += [t for t in dms if t not in targets]
            rows = [_row(rid, kind, t) for t in targets]
            table.enqueue(conn, rid, rows)
            planned += len(rows)
    return planned
