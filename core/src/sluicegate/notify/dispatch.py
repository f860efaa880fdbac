"""The dispatcher: sends what the outbox holds, with retries and backoff, and settles each row.

One thread per server process claims due rows (:meth:`OutboxTable.claim`), hands each to the
channel that sends its target (:class:`~sluicegate.notify.channels.Channels`; what each
target receives is in its channel's module), with the request as it is now (so a late update
shows the latest state), and settles the row with its audit row (``notification.sent``, or
``notification.failed`` once it gives up). The dispatcher names no channel.

Each row is held under a lease while it is sent, so that no other replica sends it meanwhile.
The dispatcher claims one row at a time, and a second thread renews that row's lease every
third of ``notify.lease`` for as long as its send lasts, however slow the channel: a lease
lapses only when its holder stops renewing it (the process died, or cannot write to the
database for two thirds of a lease), and then another replica takes the row. Every HTTP send
carries ``X-Sluicegate-Delivery``, an id planned with the row and the same on every resend, for
a receiver to drop the copy a crash can still cause (see :mod:`sluicegate.notify.signing`).

Retries are a schedule, not a loop: a failed send stores when the row is next due, and the row
is claimed again then (by whichever replica is free), so nothing waits in a thread and a
restart loses no retry. A channel that answers 429 is retried after its ``Retry-After``; one
that is down or answers 5xx after a backoff (2, 4, 8 ... s, at most 5 minutes); one that
refuses for good (a bad token, an unknown channel, 4xx) is not retried. A channel that fails
in a way it did not foresee (a bug in a custom channel) is retried after the backoff too, and
given up after :data:`MAX_ATTEMPTS` like any other. Secrets (tokens, webhook URLs, signing
secrets, API keys) go into requests, never into logs, errors or audit rows.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sluicegate.links import sign_link
from sluicegate.model import ApprovalRequest, utcnow
from sluicegate.notify.channels import SKIPPED, Channels, Delivery, scheme_of
from sluicegate.notify.errors import BACKOFF, SendError
from sluicegate.notify.planner import Planner, plan_followups
from sluicegate.notify.view import RequestView
from sluicegate.settings import Settings
from sluicegate.store import Store
from sluicegate.store.notifications import OutboxRow, OutboxTable

if TYPE_CHECKING:
    from sluicegate.policy import Reviewer

__all__ = ["MAX_ATTEMPTS", "Dispatcher", "SendError"]

log = logging.getLogger("sluicegate.notify")

#: Attempts before a row is given up (the backoff then totals about 17 minutes).
MAX_ATTEMPTS = 10


def _backoff(attempts: int) -> float:
    return float(min(2**attempts, 300))


class Dispatcher:
    """Sends the outbox of one server process (see the module's docstring).

    It is also the :class:`~sluicegate.notify.channels.DeliveryContext` its channels use:
    the message view, the earlier answer of a target, a reviewer's own link.
    """

    def __init__(
        self,
        store: Store,
        table: OutboxTable,
        planner: Planner,
        settings: Settings,
        secret_key: bytes,
        link_ttl: timedelta,
        *,
        on_result: Callable[[str, str], None] | None = None,
        poll: float = 0.25,
        followup_every: float = 5.0,
    ) -> None:
        self.store = store
        self.table = table
        self.planner = planner
        self.settings = settings
        self.secret_key = secret_key
        self.link_ttl = link_ttl
        self.on_result = on_result
        self.poll = poll
        self.followup_every = followup_every
        self.worker = f"{uuid.uuid4().hex[:12]}"
        self.lease = timedelta(seconds=settings.notify.lease)
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The row being sent, whose lease the keeper renews; None between sends.
        self._sending: OutboxRow | None = None
        self._keeper: threading.Thread | None = None
        self._keeper_lock = threading.Lock()

    @property
    def channels(self) -> Channels:
        """The channels the planner plans for, and this dispatcher sends through."""
        return self.planner.channels

    @property
    def slack(self) -> Any:
        """The Slack Web API client (``slack_sdk.WebClient``), None without a bot token: the
        server's Slack interactions open their deny modal with it."""
        return getattr(self.channels.get("slack"), "client", None)

    # ---- the thread

    def start(self) -> None:
        if self._thread is None and self.channels.any:
            self._thread = threading.Thread(target=self._run, name="sluicegate-notify", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._keeper is not None:
            self._keeper.join(timeout)
            self._keeper = None
        self.channels.close()

    def _run(self) -> None:
        next_sweep = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_sweep:
                    plan_followups(self.store, self.table, self.planner)
                    next_sweep = time.monotonic() + self.followup_every
                if self.run_once():
                    continue  # there may be more
            except Exception:  # a boundary: the loop lives on, the rows stay in the outbox
                log.exception("the notification dispatcher failed; trying again")
            self.wake.wait(self.poll)
            self.wake.clear()

    def run_once(self, limit: int = 20) -> int:
        """Send up to ``limit`` due rows, each claimed on its own just before its send (see
        the module's docstring); returns how many were claimed."""
        self._keep_leases()
        done = 0
        while done < limit and not self._stop.is_set():
            rows = self.table.claim(self.worker, limit=1, lease=self.lease)
            if not rows:
                break
            self.deliver(rows[0])
            done += 1
        return done

    # ---- leases

    def _keep_leases(self) -> None:
        """Start the lease keeper once (also for callers of :meth:`run_once` alone)."""
        with self._keeper_lock:
            if self._keeper is None and not self._stop.is_set():
                self._keeper = threading.Thread(
                    target=self._renew_leases, name="sluicegate-notify-lease", daemon=True
                )
                self._keeper.start()

    def _renew_leases(self) -> None:
        # Its own thread, because the send it outlasts blocks the dispatcher's. A row claimed
        # at any moment is renewed within a third of its lease, and every third after that.
        every = self.lease.total_seconds() / 3
        while not self._stop.wait(every):
            row = self._sending
            if row is None:
                continue
            try:
                if not self.table.renew(row, self.worker, self.lease) and row is self._sending:
                    log.warning(
                        "notification %d (%s, %s): its lease was lost while it was sent",
                        row.id,
                        row.kind,
                        row.target,
                    )
            except Exception:  # a boundary: the next tick tries again
                log.exception("renewing the lease of notification %d failed", row.id)

    # ---- one row

    def deliver(self, row: OutboxRow) -> None:
        """Send ``row`` (claimed by this dispatcher) and settle it: sent, retried or given up."""
        self._keep_leases()
        self._sending = row  # the keeper renews its lease for as long as the send lasts
        outcome: Mapping[str, Any] | SendError
        try:
            outcome = self._send(row, self.store.get(row.request_id))
        except SendError as err:
            outcome = err
        finally:
            # Settled next, within the two thirds of a lease that are always left.
            self._sending = None
        if isinstance(outcome, SendError):
            self._failed(row, outcome)
        elif self.table.sent(row, self.worker, result=outcome):
            self._count(row, "skipped" if outcome == SKIPPED else "sent")

    def _send(self, row: OutboxRow, request: ApprovalRequest) -> Mapping[str, Any]:
        channel = self.channels.sending(row.target)
        if channel is None:
            raise SendError(f"no notification channel sends {scheme_of(row.target)!r}", None)
        try:
            return channel.send(Delivery(row.kind, row.target, row.delivery_id, request, self))
        except SendError:
            raise
        except Exception as err:  # a boundary: a channel's own bug must not wedge its row
            log.exception(
                "notification %d (%s): the %s channel failed", row.id, row.kind, channel.kind
            )
            raise SendError(f"{channel.kind}: {type(err).__name__}", BACKOFF) from err

    def _failed(self, row: OutboxRow, err: SendError) -> None:
        retry = err.retry_after
        if retry == BACKOFF:
            retry = _backoff(row.attempts)
        if retry is not None and row.attempts < MAX_ATTEMPTS:
            retry_at: datetime | None = utcnow() + timedelta(seconds=max(retry, 0.0))
        else:
            retry_at = None
        self.table.failed(row, self.worker, str(err), retry_at=retry_at)
        self._count(row, "retried" if retry_at else "failed")
        log.warning(
            "notification %d (%s, %s) failed: %s%s",
            row.id,
            row.kind,
            row.target,
            err,
            f"; retrying in {retry:.0f} s" if retry_at else "; giving up",
        )

    def _count(self, row: OutboxRow, outcome: str) -> None:
        if self.on_result is not None:
            self.on_result(scheme_of(row.target), outcome)

    # ---- what channels may ask (DeliveryContext)

    def view_of(self, request: ApprovalRequest) -> RequestView:
        """The message view of ``request`` now, with its reviewers and review page."""
        return RequestView.of(
            request,
            review_url=f"{self.settings.server_url}/r/{request.id}",
            now=utcnow(),
            eligible=self.planner.eligible(request),
            classifier=self.planner.policy,
        )

    def result_of(self, request_id: str, target: str) -> dict[str, Any] | None:
        """What the first send to ``target`` about ``request_id`` answered, if it was sent."""
        found = self.table.result_of(request_id, target)
        return found if isinstance(found, dict) else None

    def own_link(self, request: ApprovalRequest, reviewer: str) -> str:
        """``reviewer``'s signed, single-use review link: for a message only they read."""
        token = sign_link(self.secret_key, str(request.id), reviewer, ttl=self.link_ttl)
        return f"{self.settings.server_url}/r/{request.id}?t={token}"

    def reviewer(self, reviewer_id: str) -> Reviewer | None:
        """The policy's reviewer with this id, or None."""
        return self.planner.policy.reviewer(reviewer_id)
