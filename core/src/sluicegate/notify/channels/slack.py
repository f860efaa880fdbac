"""Slack: channel posts and direct messages through the Web API, or an incoming webhook.

What each target receives (the message is built by :mod:`.slack_blocks`):

    target          created                      decided / ended / reminded / escalated
    slack:#chan     chat.postMessage, buttons    chat.update in place; the end, a reminder or
                                                 an escalation also as a reply in the thread
    (webhook only)  the message, the page link   the end, a reminder, an escalation: one line
    slack-dm:<id>   DM with buttons and the      chat.update of that DM (an escalation: a DM)
                    reviewer's own signed link

With a bot token (``slack.bot_token``) channel messages carry Approve and Deny buttons, which
stay in channels because Slack signs who clicked; with only an incoming webhook
(``slack.webhook_url``) they carry the review page's plain link. Direct messages need the bot
token: with ``slack.dm_reviewers`` each reviewer who may decide (and has a ``slack_id`` in the
policy) gets one, and an escalation sends one to each reviewer it escalates to. A DM is read by
its reviewer alone, so its page link may be that reviewer's own signed link.

Slack's rate limit (429, ``ratelimited``) is retried after its ``Retry-After``; a 5xx or a
network error after the row's backoff; any other refusal (a bad token, an unknown channel) is
final.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from sluicegate.notify.channels._http import HttpChannel, retry_after
from sluicegate.notify.channels.base import SKIPPED, Change, ChannelConfig, Delivery, scheme_of
from sluicegate.notify.errors import BACKOFF, SendError
from sluicegate.notify.view import RequestView
from sluicegate.settings import Settings

__all__ = ["SlackChannel", "SlackConfig"]

#: The target scheme of a reviewer's direct message: ``slack-dm:<reviewer id>``.
DM = "slack-dm"

# The senders below import .slack_blocks, which builds the messages with slack_sdk's models:
# that import (slack_sdk's Web API client with it) costs about a fifth of a CPU-second, paid at
# the first send rather than by every server that starts and asks whether Slack is configured.


class SlackConfig(ChannelConfig):
    """A bot token (buttons, updates in place, DMs) or an incoming webhook URL (``slack.*``)."""

    bot_token: SecretStr | None = None
    webhook_url: SecretStr | None = None
    #: The Web API's base URL, with its trailing slash (slack_sdk joins method names to it).
    api_url: str = "https://slack.com/api/"
    #: Also send each eligible reviewer with a ``slack_id`` a direct message.
    dm_reviewers: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackConfig | None:
        s = settings.slack
        if s.bot_token is None and s.webhook_url is None:
            return None
        return cls(
            bot_token=s.bot_token,
            webhook_url=s.webhook_url,
            api_url=s.api_url,
            dm_reviewers=s.dm_reviewers,
            timeout=settings.notify.timeout,
        )


class SlackChannel(HttpChannel):
    """Targets ``slack:<channel>`` and ``slack-dm:<reviewer>`` (see the module's docstring)."""

    kind = "slack"
    schemes = ("slack", DM)
    config_class = SlackConfig

    def __init__(self, config: SlackConfig) -> None:
        super().__init__(config)
        self.config: SlackConfig = config
        #: The Web API client (``slack_sdk.WebClient``), None without a bot token.
        self.client: Any = None
        if config.bot_token is not None:
            from slack_sdk import WebClient

            self.client = WebClient(
                token=config.bot_token.get_secret_value(),
                base_url=config.api_url,
                timeout=math.ceil(config.timeout),  # whole seconds, as it is typed
            )

    # ---- planning

    def accept(self, entry: str) -> str | None:
        scheme = scheme_of(entry)
        if scheme == "slack":
            return entry if entry.startswith("slack:") else "slack"
        if scheme == DM and self.client is not None:
            return DM
        return None

    def targets(self, change: Change) -> Sequence[str]:
        if self.client is None:
            return ()
        dm_all = change.event == "request.created" and self.config.dm_reviewers
        if not dm_all and change.event != "escalation":
            return ()
        return [f"{DM}:{r.id}" for r in change.people if r.slack_id]

    # ---- sending

    def send(self, delivery: Delivery) -> Mapping[str, Any]:
        if scheme_of(delivery.target) == DM:
            return self._direct(delivery)
        if self.client is not None:
            return self._channel(delivery)
        return self._webhook(delivery)

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        from slack_sdk.errors import SlackApiError

        try:
            response = getattr(self.client, method)(**kwargs)
        except SlackApiError as err:
            status = err.response.status_code
            error = err.response.get("error", "") if isinstance(err.response.data, dict) else ""
            if status == 429 or error == "ratelimited":
                wait = retry_after(err.response.headers)
                raise SendError(f"Slack {method}: rate limited", wait) from None
            if status >= 500:
                raise SendError(f"Slack {method}: HTTP {status}", BACKOFF) from None
            raise SendError(f"Slack {method}: {error or status}", None) from None
        except Exception as err:  # the network: retried
            raise SendError(f"Slack {method}: {type(err).__name__}", BACKOFF) from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    def _channel(self, delivery: Delivery) -> Mapping[str, Any]:
        from sluicegate.notify.channels.slack_blocks import followup_text, slack_message

        view, event = delivery.view, delivery.event
        message = slack_message(view, buttons=True)
        if event == "request.created":
            answer = self._call(
                "chat_postMessage", channel=delivery.address, unfurl_links=False, **message
            )
            return {"channel": answer.get("channel"), "ts": answer.get("ts")}
        posted = delivery.previous()
        if not posted or not posted.get("ts"):
            raise SendError("the channel message this updates was never posted", None)
        if event not in ("reminder", "escalation"):
            self._call("chat_update", channel=posted["channel"], ts=posted["ts"], **message)
        if event != "decision.recorded":
            self._call(
                "chat_postMessage",
                channel=posted["channel"],
                thread_ts=posted["ts"],
                reply_broadcast=True,
                text=followup_text(view, event=event),
            )
        return {}

    def _direct(self, delivery: Delivery) -> Mapping[str, Any]:
        from sluicegate.notify.channels.slack_blocks import followup_text, slack_message

        if self.client is None:
            raise SendError("direct messages need a Slack bot token", None)
        reviewer, event = delivery.address, delivery.event
        person = delivery.context.reviewer(reviewer)
        if person is None or not person.slack_id:
            raise SendError(f"reviewer {reviewer!r} has no slack_id in the policy", None)
        view: RequestView = delivery.view
        may_decide = reviewer in view.eligible
        if may_decide and view.pending:
            # A DM is read by its reviewer alone: its page link may name them.
            own = delivery.context.own_link(delivery.request, reviewer)
            view = dataclasses.replace(view, review_url=own)
        message = slack_message(view, buttons=may_decide)
        if event in ("request.created", "escalation"):
            dm = self._call("conversations_open", users=person.slack_id)
            channel = (dm.get("channel") or {}).get("id")
            if event == "escalation":
                text = followup_text(view, event="escalation")
                message = {"text": text, "blocks": message.get("blocks", [])}
            answer = self._call("chat_postMessage", channel=channel, unfurl_links=False, **message)
            return {"channel": answer.get("channel"), "ts": answer.get("ts")}
        posted = delivery.previous()
        if not posted or not posted.get("ts"):
            return SKIPPED  # this reviewer was never sent a DM to update
        if event == "reminder":
            self._call(
                "chat_postMessage",
                channel=posted["channel"],
                thread_ts=posted["ts"],
                text=followup_text(view, event="reminder"),
            )
            return {}
        self._call("chat_update", channel=posted["channel"], ts=posted["ts"], **message)
        return {}

    def _webhook(self, delivery: Delivery) -> Mapping[str, Any]:
        from sluicegate.notify.channels.slack_blocks import followup_text, slack_message

        if self.config.webhook_url is None:
            raise SendError("no Slack bot token and no Slack webhook URL", None)
        if delivery.event == "decision.recorded":
            return SKIPPED  # a webhook's message cannot be updated
        if delivery.event == "request.created":
            # A channel: the page link only.
            body = slack_message(delivery.view, buttons=False)
        else:
            body = {"text": followup_text(delivery.view, event=delivery.event)}
        url = self.config.webhook_url.get_secret_value()
        self.post("Slack webhook", url, delivery.delivery_id, json=body)
        return {}
