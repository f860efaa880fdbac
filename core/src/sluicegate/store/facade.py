"""The store: requests, decisions, tokens, links and the audit log, on SQLite or PostgreSQL.

:class:`Store` is the one object the rest of Sluicegate holds. Each method is one call into
the module that does the work, given the store's transactions (and its change hooks):

- :mod:`~sluicegate.store.transactions`: writes, group-committed batches, reads, after-commit
  calls;
- :mod:`~sluicegate.store.gates`: opening gates (new requests, reattaching retries, conflicts);
- :mod:`~sluicegate.store.decisions`: decisions, cancellation and expiry (compare-and-set);
- :mod:`~sluicegate.store.requests`: look-ups, lists and counts; :mod:`~sluicegate.store.rows`
  maps rows to models;
- :mod:`~sluicegate.store.tokens`, :mod:`~sluicegate.store.links`: API tokens, single-use links;
- :mod:`~sluicegate.store.audit`: the hash-chained audit log every change appends to in its
  own transaction.

The other tables have their own small classes over a ``Store``: the notification outbox
(:mod:`~sluicegate.store.notifications`), review-page sessions
(:mod:`~sluicegate.store.sessions`) and received lineage (:mod:`~sluicegate.store.lineage`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from sluicegate.model import ApprovalRequest, Decision, Status, utcnow
from sluicegate.store import audit, decisions, links, requests, tokens
from sluicegate.store import gates as opening  # the module; ``gates`` names open_gates' argument
from sluicegate.store.db import make_engine, migrate
from sluicegate.store.decisions import DecisionOutcome
from sluicegate.store.gates import GateOpen, GateStored
from sluicegate.store.requests import ChangeHook
from sluicegate.store.tokens import TokenInfo, TokenRecord
from sluicegate.store.transactions import Transactions

__all__ = ["Store"]


class Store:
    """Persistence for Sluicegate. Open it with a SQLAlchemy URL; migrations run on open."""

    def __init__(self, url: str, *, auto_migrate: bool = True, **engine_kwargs: Any) -> None:
        self.engine = make_engine(url, **engine_kwargs)
        self.url = self.engine.url.render_as_string(hide_password=True)
        self._tx = Transactions(self.engine)
        #: Called with a request id after a transaction that changed its status commits.
        self.listeners: list[Callable[[str], None]] = self._tx.listeners
        #: Called inside the write transaction of every change a request goes through, with
        #: that transaction's connection, the change (``request.created``,
        #: ``decision.recorded``, ``request.<terminal status>``) and the request after it: what
        #: is written there (the notification outbox) commits or rolls back with the change.
        self.on_change: list[ChangeHook] = []
        if auto_migrate:
            with self._tx.lock:  # on SQLite, processes opening a new file migrate in turn
                migrate(self.engine)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions

    def write(self) -> AbstractContextManager[Connection]:
        """A write transaction; database failures become :class:`StoreError`.

        Inside :meth:`batch` (same thread) it is a savepoint of the batch's transaction
        instead: a failing write undoes only itself, and the batch commits the rest at once.
        """
        return self._tx.write()

    def batch(self, *, wait: bool = True) -> AbstractContextManager[None]:
        """Group commit: every write in this thread until the block ends is one transaction.

        The server's writer thread runs many callers' writes inside one batch, so they share
        one commit and one lock of the audit head (SQLite commits, PostgreSQL round trips and
        the head lock were what bounded opens per second). Reads in the block see the batch's
        uncommitted rows. Nothing is announced to listeners before the commit.

        ``wait=False``: :class:`WriteBusy` at once, instead of waiting, when another thread or
        process is writing to this SQLite file (for a caller that must not block).
        """
        return self._tx.batch(wait=wait)

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once what this thread wrote is committed: at the commit of the write
        transaction or batch this thread is in, or at once outside both (the write before this
        call has committed). Dropped if the write it follows is undone. For side effects that
        must not announce a write that was not kept (lineage events, the dispatcher's wake-up);
        ``fn``'s failures are logged, never raised."""
        self._tx.on_commit(fn)

    def read(self) -> AbstractContextManager[Connection]:
        """A read: a read-only transaction on SQLite (a snapshot beside the writer, as WAL
        allows); on PostgreSQL, autocommit statements, each seeing what was committed when it
        ran (the hot reads are single statements).

        Inside :meth:`batch` it reads on the batch's connection, uncommitted rows included.
        """
        return self._tx.read()

    # ------------------------------------------------------------------ audit

    def record(self, events: Sequence[audit.AuditEvent]) -> list[int]:
        """Append audit events on their own (facts with no state change, e.g. a rejection)."""
        with self._tx.write() as conn:
            return audit.append(conn, events)

    def audit_tail(self) -> tuple[int, str]:
        """The newest audit row's seq and hash (0 and the genesis hash when empty)."""
        with self._tx.read() as conn:
            return audit.tail(conn)

    # ------------------------------------------------------------------ opening gates

    def create_request(
        self,
        req: ApprovalRequest,
        *,
        policy_digest: str | None = None,
        events: Sequence[audit.AuditEvent] = (),
    ) -> tuple[ApprovalRequest, bool]:
        """Insert ``req`` unless its idempotency key exists; returns (request, created).

        A retried task asks with the same key and gets the first request back, with no new
        audit rows, so nothing downstream (notifications) fires twice.
        """
        return opening.create_request(self._tx, req, policy_digest, events, self.on_change)

    def open_gate(self, gate: GateOpen) -> GateStored:
        """Open one gate in one transaction (:meth:`open_gates` for a single gate).

        The request already opened with ``gate.key`` comes back as it is, with nothing
        recorded, when the same principal asks for the same action (a retry). Any other
        caller of that key is a conflict: a ``gate.conflict`` audit row, and the request is
        not reattached. Otherwise ``gate.request`` is created with ``gate.events``, or, when
        it is None (the policy allowed or denied the action), only the events are recorded.
        """
        return opening.open_gate(self._tx, gate, self.on_change)

    def open_gates(self, gates: Sequence[GateOpen]) -> list[GateStored]:
        """Open many gates at once, in order, as one write; each answer as :meth:`open_gate`.

        One look-up of every key, then one multi-row insert each for the requests, their
        datasets and the audit rows: a few round trips for a whole batch where one gate at a
        time cost six, all of them under the audit head lock (what bounded gates opened per
        second on PostgreSQL). A key that appears twice reattaches the second to the first
        (or is a conflict, by the same rule). A conflict is an answer, not an error: the other
        gates of the batch are opened all the same. Should another writer insert one of the
        keys in between, the batch falls back to one :meth:`open_gate` per gate, which settles
        each key on its own.
        """
        return opening.open_gates(self._tx, gates, self.on_change)

    # ------------------------------------------------------------------ reading requests

    def get(self, request_id: uuid.UUID | str) -> ApprovalRequest:
        """The request with its decisions; :class:`NotFoundError` if there is none."""
        return requests.get(self._tx, request_id)

    def get_many(self, request_ids: Sequence[str]) -> dict[str, ApprovalRequest]:
        """The requests among ``request_ids`` that exist, by canonical id, in one query."""
        return requests.get_many(self._tx, request_ids)

    def find(self, idempotency_key: str) -> ApprovalRequest | None:
        """The request opened with this idempotency key, if any."""
        return requests.find(self._tx, idempotency_key)

    def list_requests(
        self,
        *,
        status: Status | None = None,
        dataset: str | None = None,
        job: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[ApprovalRequest]:
        """Newest first. ``before`` is the id of the last request of the previous page."""
        return requests.list_requests(
            self._tx, status=status, dataset=dataset, job=job, limit=limit, before=before
        )

    def ended_among(self, request_ids: Sequence[str]) -> list[str]:
        """Those of ``request_ids`` that are no longer pending (one query per 500 ids)."""
        return requests.ended_among(self._tx, request_ids)

    def ended_since(self, seq: int) -> tuple[int, list[str]]:
        """Requests that ended in audit rows after ``seq``, and the newest seq seen."""
        return requests.ended_since(self._tx, seq)

    def count(self, status: Status | None = None) -> int:
        """How many requests there are (in ``status``)."""
        return requests.count(self._tx, status)

    # ------------------------------------------------------------------ deciding, ending

    def transition(
        self,
        request_id: uuid.UUID | str,
        new: Status,
        *,
        actor: str | None = None,
        now: datetime | None = None,
        **data: Any,
    ) -> ApprovalRequest:
        """Move a pending request to ``new`` (cancel, expire), with an audit row.

        Raises :class:`TransitionError` when the request is already terminal, and
        :class:`ConflictError` when another writer ended it between our read and our write.
        """
        return decisions.transition(
            self._tx, request_id, new, self.on_change, actor=actor, now=now or utcnow(), data=data
        )

    def decide(
        self, request_id: uuid.UUID | str, decision: Decision, *, now: datetime | None = None
    ) -> DecisionOutcome:
        """Record one reviewer's decision and end the request if it reaches a threshold.

        The caller has checked that the reviewer may decide (policy); this enforces what
        depends on the request's state: still pending, not expired, the same action the
        reviewer was shown, one decision per reviewer, a comment on deny where required.
        A request found past its deadline is ended as expired (that is kept) and
        :class:`ExpiredError` raised.
        """
        return decisions.decide(self._tx, request_id, decision, self.on_change, now or utcnow())

    def expire_due(self, now: datetime | None = None, *, limit: int = 100) -> list[ApprovalRequest]:
        """End every pending request past its deadline; returns the ones this call ended."""
        return decisions.expire_due(self._tx, self.on_change, now or utcnow(), limit)

    # ------------------------------------------------------------------ tokens, links

    def create_token(self, principal: str, scope: str, *, ttl: timedelta | None = None) -> str:
        """A new bearer token for ``principal``, valid until revoked or, with ``ttl``, until
        ``ttl`` from now; only its hash is stored. Returns the token."""
        return tokens.create_token(self._tx, principal, scope, ttl)

    def token_info(self, token: str) -> TokenInfo | None:
        """The principal and scope of ``token``, or None for an unknown, revoked or expired
        one."""
        return tokens.token_info(self._tx, token)

    def list_tokens(self, principal: str | None = None) -> list[TokenRecord]:
        """Every token (of ``principal``, if given), oldest first, revoked ones included."""
        return tokens.list_tokens(self._tx, principal)

    def revoke_tokens(
        self, *, token_id: str | None = None, principal: str | None = None
    ) -> list[TokenRecord]:
        """Revoke the token ``token_id``, or every token of ``principal``, each with an audit
        row ``token.revoked``. Returns those revoked by this call (not those revoked before);
        :class:`NotFoundError` when no token has that id or principal.

        The sessions signed in with a revoked token end with it (their every page request
        checks the token), and the API refuses it within the token cache's few seconds.
        """
        return tokens.revoke_tokens(self._tx, token_id=token_id, principal=principal)

    def use_link(self, nonce: str, request_id: str, reviewer: str) -> bool:
        """Mark a signed link's nonce used; False if it was used before."""
        return links.use_link(self._tx, nonce, request_id, reviewer)
