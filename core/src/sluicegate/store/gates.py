"""Opening gates: a new request, or the one its idempotency key already holds.

A gate is opened with an idempotency key. A retried task asks with the same key and gets the
first request back, with nothing recorded, so nothing downstream (notifications) fires twice;
but only the same principal asking for the same action (its fingerprint) may reattach. Anyone
else reusing a key is a conflict: a ``gate.conflict`` audit row, and no request given back to
wait on. The unique key decides between concurrent openers, even across replicas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from sluicegate.exceptions import ActionError, StoreError
from sluicegate.model import Action, ApprovalRequest, Requester
from sluicegate.store import audit, requests
from sluicegate.store.requests import ChangeHook
from sluicegate.store.rows import dataset_rows, request_row
from sluicegate.store.transactions import Transactions

__all__ = ["GateOpen", "GateStored", "create_request", "open_gate", "open_gates", "request_event"]


def request_event(
    req: ApprovalRequest, kind: str, *, actor: str | None = None, **data: Any
) -> audit.AuditEvent:
    """An audit event about ``req``, carrying its job and datasets so exports can filter."""
    return audit.AuditEvent(
        kind=kind,
        request_id=str(req.id),
        actor=actor,
        job=req.requester.job or None,
        datasets=[str(a) for a in req.action.assets],
        data=data,
    )


@dataclass(frozen=True)
class GateOpen:
    """One gate for :meth:`Store.open_gates` and :meth:`Store.open_gate`.

    ``request`` is the request to create when the policy requires approval (None when it
    allowed or denied the action), ``events`` the audit rows that answer records. ``action``
    and ``requester`` say what is asked and by whom; they default to ``request``'s. A request
    that already holds ``key`` is given back only to the same principal asking for the same
    action (fingerprint); anything else is a conflict.
    """

    key: str
    request: ApprovalRequest | None
    events: Sequence[audit.AuditEvent]
    policy_digest: str | None = None
    action: Action | None = None
    requester: Requester | None = None
    #: ``action``'s fingerprint, when the caller has it already (it is a hash of the action).
    fingerprint: str | None = None

    def claim(self) -> tuple[str | None, str | None]:
        """``(principal, fingerprint)``: who asks, for what; None where nothing says."""
        req = self.request
        requester = self.requester or (req.requester if req is not None else None)
        fingerprint = self.fingerprint or (req.fingerprint if req is not None else None)
        if fingerprint is None and self.action is not None:
            fingerprint = self.action.fingerprint()
        return (requester.principal if requester is not None else None), fingerprint

    def conflict_event(self, existing: ApprovalRequest, reason: str) -> audit.AuditEvent:
        """The ``gate.conflict`` row: who reused ``key``, for which action, and why refused.

        It names the request that holds the key (auditors need it) but records nothing of
        that request's action: the row describes the caller's gate.
        """
        principal, fingerprint = self.claim()
        req = self.request
        action = self.action or (req.action if req is not None else None)
        requester = self.requester or (req.requester if req is not None else None)
        return audit.AuditEvent(
            kind="gate.conflict",
            request_id=str(existing.id),
            actor=principal,
            job=(requester.job or None) if requester is not None else None,
            datasets=[str(a) for a in action.assets] if action is not None else (),
            data={"idempotency_key": self.key, "reason": reason, "fingerprint": fingerprint},
        )


@dataclass(frozen=True)
class GateStored:
    """What opening one gate did (:meth:`Store.open_gates`)."""

    #: The request the gate waits on: new, or the one ``key`` already held (also when that
    #: was a conflict, for the caller to decide what to show); None when the policy answered.
    request: ApprovalRequest | None
    #: True when ``request`` was created by this call.
    created: bool
    #: Why ``key``'s request was not given back: ``principal`` (another principal's key) or
    #: ``fingerprint`` (the same principal, another action); None when there was no conflict.
    conflict: str | None = None


def create_request(
    tx: Transactions,
    req: ApprovalRequest,
    policy_digest: str | None,
    events: Sequence[audit.AuditEvent],
    hooks: Sequence[ChangeHook],
) -> tuple[ApprovalRequest, bool]:
    """``Store.create_request``: insert ``req`` unless its key exists; (request, created)."""
    # No look-up first: the unique key decides, in one round trip, even between replicas.
    try:
        with tx.write() as conn:
            requests.insert(conn, req, policy_digest, events, hooks)
            return req, True
    except IntegrityError:
        return requests.existing(tx, req.idempotency_key), False


def open_gate(tx: Transactions, gate: GateOpen, hooks: Sequence[ChangeHook]) -> GateStored:
    """``Store.open_gate``: one gate in one transaction."""
    _check_keys([gate])
    try:
        with tx.write() as conn:
            existing = requests.by_key(conn, gate.key)
            if existing is not None:
                return _reattach(conn, existing, gate)
            if gate.request is None:
                audit.append(conn, gate.events)
                return GateStored(None, False)
            requests.insert(conn, gate.request, gate.policy_digest, gate.events, hooks)
            return GateStored(gate.request, True)
    except IntegrityError as err:
        # Another writer inserted the key after our look-up: settle against its request.
        with tx.write() as conn:
            existing = requests.by_key(conn, gate.key)
            if existing is None:
                raise StoreError(
                    f"idempotency key {gate.key!r} collided but has no request"
                ) from err
            return _reattach(conn, existing, gate)


def open_gates(
    tx: Transactions, gates: Sequence[GateOpen], hooks: Sequence[ChangeHook]
) -> list[GateStored]:
    """``Store.open_gates``: many gates, in order, as one write (one look-up of every key,
    then one multi-row insert each for requests, datasets and audit rows); one
    :func:`open_gate` per gate should another writer insert one of the keys in between."""
    _check_keys(gates)
    keys = sorted({gate.key for gate in gates})
    try:
        with tx.write() as conn:
            known = requests.by_keys(conn, keys)
            answers: list[GateStored] = []
            new_rows: list[dict[str, Any]] = []
            datasets: list[dict[str, Any]] = []
            audit_groups: list[tuple[Sequence[audit.AuditEvent], datetime | None]] = []
            for gate in gates:
                existing = known.get(gate.key)
                if existing is not None:
                    why = _conflict(existing, gate)
                    if why is not None:
                        audit_groups.append(([gate.conflict_event(existing, why)], None))
                    answers.append(GateStored(existing, False, why))
                    continue
                if gate.request is None:
                    audit_groups.append((gate.events, None))
                    answers.append(GateStored(None, False))
                    continue
                req = gate.request
                known[gate.key] = req
                new_rows.append({**request_row(req), "policy_digest": gate.policy_digest})
                datasets += dataset_rows(req)
                audit_groups.append((gate.events, req.created_at))
                answers.append(GateStored(req, True))
            requests.insert_many(conn, new_rows, datasets)
            audit.append_groups(conn, audit_groups)
            if hooks:
                for answer in answers:
                    if answer.created and answer.request is not None:
                        requests.run_hooks(hooks, conn, "request.created", answer.request)
            return answers
    except IntegrityError:
        return [open_gate(tx, g, hooks) for g in gates]


def _check_keys(gates: Sequence[GateOpen]) -> None:
    for gate in gates:
        if gate.request is not None and gate.request.idempotency_key != gate.key:
            raise ActionError("the request's idempotency key differs from the gate's")


def _conflict(existing: ApprovalRequest, gate: GateOpen) -> str | None:
    """Why ``gate`` may not reattach to ``existing``, the request its key holds, or None.

    Fails closed: a gate that does not say who asks or for what never matches.
    """
    principal, fingerprint = gate.claim()
    if principal is None or existing.requester.principal != principal:
        return "principal"
    if fingerprint is None or existing.fingerprint != fingerprint:
        return "fingerprint"
    return None


def _reattach(conn: Connection, existing: ApprovalRequest, gate: GateOpen) -> GateStored:
    """``existing`` for a retry of its own gate; else the conflict, recorded on ``conn``."""
    why = _conflict(existing, gate)
    if why is not None:
        audit.append(conn, [gate.conflict_event(existing, why)])
    return GateStored(existing, False, why)
