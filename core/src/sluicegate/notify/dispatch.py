"""The dispatcher: sends what the outbox holds, with retries and backoff, and settles each row.

One thread per server process claims due rows (:meth:`OutboxTable.claim`), builds each message
from the request as it is now (so a late update shows the latest state), sends it, and settles
the row with its audit row (``notification.sent``, or ``notification.failed`` once it gives
up). What a target receives for each change:

    target          created                      decided / ended / reminded / escalated
    slack:#chan     chat.postMessage, buttons    chat.update in place; the end, a reminder or
                                                 an escalation also as a reply in the thread
    (webhook only)  the message, the page link   the end, a reminder, an escalation: one line
    slack-dm:<id>   DM with buttons and the      chat.update of that DM (an escalation: a DM)
                    reviewer's own signed link
    teams           Adaptive Card, page link     the end, a reminder, an escalation: a card
    webhook         JSON, HMAC-signed            every change: JSON, HMAC-signed
    prefect:<run>   (nothing)                    the end: resumes the paused flow run

Who can act on what was sent. A signed review link decides as the reviewer it names, so it
goes only where that reviewer alone reads it: their direct message. A channel message (Slack
by bot or incoming webhook, a Teams card) is read by everyone in the channel, the requester
and the job's owner included, and carries only the review page's plain link, where a reviewer
signs in; Slack's buttons stay in channels because Slack signs who clicked. The generic
webhook carries no signed link either: it goes to a machine that passes it on to a pager or a
ticket, where many people read it; its receiver gets ``review_url``, the plain page.

Each row is held under a lease while it is sent, so that no other replica sends it meanwhile.
The dispatcher claims one row at a time, and a second thread renews that row's lease every
third of ``notify.lease`` for as long as its send lasts, however slow the channel: a lease
lapses only when its holder stops renewing it (the process died, or cannot write to the
database for two thirds of a lease), and then another replica takes the row. Every HTTP send
carries ``X-Sluicegate-Delivery``, an id planned with the row and the same on every resend, for
a receiver to drop the copy a crash can still cause (see :mod:`sluicegate.notify.signing`).

A channel that answers 429 is retried after its ``Retry-After``; one that is down or answers
5xx after a backoff (2, 4, 8 ... s, at most 5 minutes); one that refuses for good (a bad token,
an unknown channel, 4xx) is not retried. Prefect answering that the run is not paused (its
gate resumed it itself, or it already ended) is final too: the gate does not depend on it.
Secrets (tokens, webhook URLs, the signing secret, Prefect's API key) go into requests, never
into logs, errors or audit rows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from sluicegate.links import sign_link
from sluicegate.model import ApprovalRequest, utcnow
from sluicegate.notify.errors import BACKOFF, SendError
from sluicegate.notify.messages import (
    MessageView,
    followup_text,
    slack_message,
    teams_card,
    webhook_body,
)
from sluicegate.notify.outbox import Planner, plan_followups
from sluicegate.notify.prefect import resume_flow_run
from sluicegate.notify.signing import WEBHOOK_DELIVERY_HEADER, sign_webhook
from sluicegate.settings import Settings
from sluicegate.store import Store
from sluicegate.store.outbox import OutboxRow, OutboxTable

__all__ = ["Dispatcher", "SendError"]

log = logging.getLogger("sluicegate.notify")

#: Attempts before a row is given up (the backoff then totals about 17 minutes).
MAX_ATTEMPTS = 10
_SKIP = {"skipped": True}


def _backoff(attempts: int) -> float:
    return float(min(2**attempts, 300))


class Dispatcher:
    """Sends the outbox of one server process (see the module's docstring)."""

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
        self._http = httpx.Client(timeout=settings.notify.timeout)
        self._slack: Any = None
        bot = settings.slack.bot_token
        if bot is not None:
            from slack_sdk import WebClient

            self._slack = WebClient(
                token=bot.get_secret_value(),
                base_url=settings.slack.api_url,
                timeout=math.ceil(settings.notify.timeout),  # whole seconds, as it is typed
            )

    @property
    def slack(self) -> Any:
        """The Slack Web API client (``slack_sdk.WebClient``), None without a bot token."""
        return self._slack

    # ---- the thread

    def start(self) -> None:
        if self._thread is None and self.planner.channels.any:
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
        self._http.close()

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
        outcome: dict[str, Any] | SendError
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
            self._count(row, "skipped" if outcome == _SKIP else "sent")

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
            self.on_result(row.target.split(":", 1)[0], outcome)

    def _view(self, request: ApprovalRequest) -> MessageView:
        return MessageView.of(
            request,
            review_url=f"{self.settings.server_url}/r/{request.id}",
            now=utcnow(),
            eligible=self.planner.eligible(request),
        )

    def _own_link(self, request: ApprovalRequest, reviewer: str) -> str:
        """``reviewer``'s signed, single-use review link: for a message only they read."""
        token = sign_link(self.secret_key, str(request.id), reviewer, ttl=self.link_ttl)
        return f"{self.settings.server_url}/r/{request.id}?t={token}"

    def _send(self, row: OutboxRow, request: ApprovalRequest) -> dict[str, Any]:
        scheme, _, rest = row.target.partition(":")
        if scheme == "prefect":
            return resume_flow_run(self._http, self.settings.prefect, rest, request)
        view = self._view(request)
        if scheme == "webhook":
            return self._webhook(view, row)
        if scheme == "teams":
            return self._teams(view, row)
        if scheme == "slack-dm":
            return self._slack_dm(view, row, request, rest)
        if self._slack is not None:
            return self._slack_channel(view, row, rest)
        return self._slack_webhook(view, row)

    # ---- channels

    def _slack_call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        from slack_sdk.errors import SlackApiError

        try:
            response = getattr(self._slack, method)(**kwargs)
        except SlackApiError as err:
            status = err.response.status_code
            error = err.response.get("error", "") if isinstance(err.response.data, dict) else ""
            if status == 429 or error == "ratelimited":
                retry = float(err.response.headers.get("Retry-After", "1") or 1)
                raise SendError(f"Slack {method}: rate limited", retry) from None
            if status >= 500:
                raise SendError(f"Slack {method}: HTTP {status}", BACKOFF) from None
            raise SendError(f"Slack {method}: {error or status}", None) from None
        except Exception as err:  # the network: retried
            raise SendError(f"Slack {method}: {type(err).__name__}", BACKOFF) from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    def _slack_channel(self, view: MessageView, row: OutboxRow, channel: str) -> dict[str, Any]:
        message = slack_message(view, buttons=True)
        if row.kind == "request.created":
            answer = self._slack_call(
                "chat_postMessage", channel=channel, unfurl_links=False, **message
            )
            return {"channel": answer.get("channel"), "ts": answer.get("ts")}
        posted = self.table.result_of(row.request_id, row.target)
        if not posted or not posted.get("ts"):
            raise SendError("the channel message this updates was never posted", None)
        if row.kind not in ("reminder", "escalation"):
            self._slack_call("chat_update", channel=posted["channel"], ts=posted["ts"], **message)
        if row.kind != "decision.recorded":
            self._slack_call(
                "chat_postMessage",
                channel=posted["channel"],
                thread_ts=posted["ts"],
                reply_broadcast=True,
                text=followup_text(view, event=row.kind),
            )
        return {}

    def _slack_dm(
        self, view: MessageView, row: OutboxRow, request: ApprovalRequest, reviewer: str
    ) -> dict[str, Any]:
        if self._slack is None:
            raise SendError("direct messages need a Slack bot token", None)
        person = self.planner.policy.reviewer(reviewer)
        if person is None or not person.slack_id:
            raise SendError(f"reviewer {reviewer!r} has no slack_id in the policy", None)
        may_decide = reviewer in view.eligible
        if may_decide and view.pending:
            # A DM is read by its reviewer alone: its page link may name them.
            view = dataclasses.replace(view, review_url=self._own_link(request, reviewer))
        message = slack_message(view, buttons=may_decide)
        if row.kind in ("request.created", "escalation"):
            dm = self._slack_call("conversations_open", users=person.slack_id)
            channel = (dm.get("channel") or {}).get("id")
            if row.kind == "escalation":
                message = {"text": followup_text(view, event="escalation"), **_blocks(message)}
            answer = self._slack_call(
                "chat_postMessage", channel=channel, unfurl_links=False, **message
            )
            return {"channel": answer.get("channel"), "ts": answer.get("ts")}
        posted = self.table.result_of(row.request_id, row.target)
        if not posted or not posted.get("ts"):
            return _SKIP  # this reviewer was never sent a DM to update
        if row.kind == "reminder":
            self._slack_call(
                "chat_postMessage",
                channel=posted["channel"],
                thread_ts=posted["ts"],
                text=followup_text(view, event="reminder"),
            )
            return {}
        self._slack_call("chat_update", channel=posted["channel"], ts=posted["ts"], **message)
        return {}

    def _slack_webhook(self, view: MessageView, row: OutboxRow) -> dict[str, Any]:
        url = self.settings.slack.webhook_url
        if url is None:
            raise SendError("no Slack bot token and no Slack webhook URL", None)
        if row.kind == "decision.recorded":
            return _SKIP  # a webhook's message cannot be updated
        if row.kind == "request.created":
            body = slack_message(view, buttons=False)  # a channel: the page link only
        else:
            body = {"text": followup_text(view, event=row.kind)}
        self._post("Slack webhook", url.get_secret_value(), body, row)
        return {}

    def _teams(self, view: MessageView, row: OutboxRow) -> dict[str, Any]:
        url = self.settings.teams.webhook_url
        if url is None:
            raise SendError("no Teams webhook URL", None)
        if row.kind == "decision.recorded":
            return _SKIP
        self._post("Teams webhook", url.get_secret_value(), teams_card(view), row)  # a channel
        return {}

    def _webhook(self, view: MessageView, row: OutboxRow) -> dict[str, Any]:
        url = self.settings.webhook.url
        if url is None:
            raise SendError("no webhook URL", None)
        body = json.dumps(webhook_body(view, event=row.kind), sort_keys=True).encode()
        headers = {"Content-Type": "application/json"}
        secret = self.settings.webhook.secret
        if secret is not None:
            headers.update(
                sign_webhook(secret.get_secret_value(), body, timestamp=int(time.time()))
            )
        self._post("webhook", url.get_secret_value(), body, row, headers=headers)
        return {}

    def _post(
        self,
        what: str,
        url: str,
        body: Any,
        row: OutboxRow,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        headers = {**(headers or {}), WEBHOOK_DELIVERY_HEADER: row.delivery_id}
        try:
            if isinstance(body, bytes):
                response = self._http.post(url, content=body, headers=headers)
            else:
                response = self._http.post(url, json=body, headers=headers)
        except httpx.HTTPError as err:  # the URL stays out of the message: it is a secret
            raise SendError(f"{what}: {type(err).__name__}", BACKOFF) from None
        if response.status_code == 429:
            retry = float(response.headers.get("Retry-After", "1") or 1)
            raise SendError(f"{what}: rate limited", retry)
        if response.status_code >= 500:
            raise SendError(f"{what}: HTTP {response.status_code}", BACKOFF)
        if response.status_code >= 400:
            raise SendError(f"{what}: HTTP {response.status_code}", None)


def _blocks(message: dict[str, Any]) -> dict[str, Any]:
    return {"blocks": message.get("blocks", [])}
