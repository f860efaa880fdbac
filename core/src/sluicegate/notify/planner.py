"""What to notify, planned inside the change's own transaction, and who is told.

:class:`Planner` is a :attr:`Store.on_change <sluicegate.store.Store.on_change>` hook: when a
request is created, decided or ended it writes the outbox rows for that change on the same
connection, so they commit (or roll back) with it. A request's creation goes to the targets of
its rule's ``notify`` that a configured channel accepts (``slack:#channel``, ``teams``,
``webhook``...), plus those the channels add themselves (a direct message to each eligible
reviewer); every later change of the request goes to the targets its creation went to, so a
policy edited meanwhile changes nothing for requests already open, plus again those the
channels add for that change (a paused flow run to resume once the request ends).

:func:`plan_followups` (the dispatcher's periodic sweep) plans reminders (``remind_after``,
to the same targets) and escalations (``escalate_after``, to those targets and to those the
channels add for the reviewers of ``escalate_to``), each once.

Which targets exist is the channels' business (:mod:`sluicegate.notify.channels`): the planner
asks each whether it accepts a rule's entry and which targets a change adds, and names none.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Connection, select

from sluicegate.model import ApprovalRequest, Status, utcnow
from sluicegate.notify.channels import Change, Channels
from sluicegate.policy import Policy, Reviewer
from sluicegate.store import Store
from sluicegate.store.notifications import OutboxTable
from sluicegate.store.schema import outbox, requests

__all__ = ["Channels", "Planner", "plan_followups"]


def _row(rid: str, kind: str, target: str, extra: str = "") -> tuple[str, str, str, dict[str, str]]:
    key = f"{rid}:{kind}:{extra + ':' if extra else ''}{target}"
    # Planned once with the row (a second planning of the same key inserts nothing), so every
    # resend carries the same id: see OutboxRow.delivery_id.
    return key, target, kind, {"delivery_id": str(uuid.uuid4())}


def _given(people: tuple[Reviewer, ...]) -> Callable[[], tuple[Reviewer, ...]]:
    return lambda: people


def _add(targets: list[str], more: Sequence[str]) -> list[str]:
    return targets + [t for t in dict.fromkeys(more) if t not in targets]


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
            change = Change(kind, rid, request)
            targets = _add(self.table.targets_of(conn, rid), self.channels.targets(change))
            rows = [_row(rid, kind, t, extra) for t in targets]
        self.table.enqueue(conn, rid, rows)
        if rows and self.wake is not None:
            self.table.store.on_commit(self.wake)

    def targets_for(self, request: ApprovalRequest) -> list[str]:
        """Where the creation of ``request`` is announced."""
        _, notify = self.policy.rule_named(request.rule)
        accepted = (self.channels.accept(entry) for entry in notify)
        targets = list(dict.fromkeys(t for t in accepted if t is not None))
        change = Change(
            "request.created", str(request.id), request, lambda: self._may_decide(request)
        )
        return _add(targets, self.channels.targets(change))

    def eligible(self, request: ApprovalRequest) -> list[str]:
        """The reviewers who may decide ``request`` (never its requester, owner or trigger)."""
        return [r.id for r in self._may_decide(request)]

    def _may_decide(self, request: ApprovalRequest) -> list[Reviewer]:
        return [
            r
            for r in self.policy.members(request.groups)
            if self.policy.may_decide(r.id, request.groups, request.requester) is None
        ]


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
    due: list[tuple[str, str, tuple[Reviewer, ...]]] = []
    for rid, rule, created in waiting:
        requirement, _ = planner.policy.rule_named(rule)
        if requirement is None:
            continue
        if requirement.remind_after is not None and created + requirement.remind_after <= now:
            due.append((rid, "reminder", ()))
        if requirement.escalate_after is not None and created + requirement.escalate_after <= now:
            due.append((rid, "escalation", planner.policy.members(requirement.escalate_to)))
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
            change = Change(kind, rid, None, _given(to))
            targets = _add(table.targets_of(conn, rid), planner.channels.targets(change))
            rows = [_row(rid, kind, t) for t in targets]
            table.enqueue(conn, rid, rows)
            planned += len(rows)
    return planned
