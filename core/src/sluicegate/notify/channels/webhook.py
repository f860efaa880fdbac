"""A generic JSON webhook (paging, ticketing): every change, as data, HMAC-signed.

The body (:func:`webhook_body`) has stable keys and ISO-8601 UTC times, and nothing in it is
escaped: it is data, and the receiver escapes for wherever it shows it. With a secret, each
delivery carries ``X-Sluicegate-Timestamp`` and ``X-Sluicegate-Signature`` (see
:mod:`sluicegate.notify.signing` for the receiver's check). The body names no reviewer's
signed link: a receiver passes it on to a pager or a ticket, where many people read it, so it
gets ``review_url``, the plain review page.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from sluicegate.notify.channels._http import HttpChannel
from sluicegate.notify.channels.base import ChannelConfig, Delivery
from sluicegate.notify.signing import sign_webhook
from sluicegate.notify.view import RequestView, check_event, iso_utc
from sluicegate.settings import Settings

__all__ = ["WebhookChannel", "WebhookConfig", "webhook_body"]


def webhook_body(view: RequestView, *, event: str) -> dict[str, Any]:
    """A plain JSON document for a generic receiver: stable keys, ISO-8601 UTC times.

    Every key is always present (``null`` where there is no value).
    """
    check_event(event)
    return {
        "version": 1,
        "event": event,
        "generated_at": iso_utc(view.as_of),
        "review_url": view.review_url,
        "request": {
            "id": view.request_id,
            "status": view.status,
            "pending": view.pending,
            "outcome": view.outcome,
            "summary": view.summary,
            "kind": view.kind,
            "environment": view.environment or None,
            "destination": view.destination or None,
            "fingerprint": view.fingerprint,
            "rule": view.rule or None,
            "required_approvals": view.required_approvals,
            "required_denials": view.required_denials,
            "approvals": view.approvals,
            "denials": view.denials,
            "comment_on_deny": view.comment_on_deny,
            "on_timeout": view.on_timeout,
            "created_at": iso_utc(view.created_at),
            "expires_at": iso_utc(view.expires_at),
            "time_left": view.time_left,
            "requester": {key: value or None for key, _, value in view.requester},
            "datasets": [
                {
                    "role": d.role,
                    "namespace": d.namespace,
                    "name": d.name,
                    "classifications": [
                        {"classification": c.classification, "source": c.source}
                        for c in d.classifications
                    ],
                }
                for d in view.datasets
            ],
            "decisions": [
                {
                    "reviewer": d.reviewer,
                    "verdict": d.verdict,
                    "comment": d.comment,
                    "channel": d.channel,
                    "decided_at": iso_utc(d.decided_at),
                }
                for d in view.decisions
            ],
            "eligible_reviewers": list(view.eligible),
            "policy_note": view.policy_note or None,
        },
    }


class WebhookConfig(ChannelConfig):
    """The receiver's URL and the shared secret that signs each delivery (``webhook.*``)."""

    url: SecretStr
    secret: SecretStr | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig | None:
        if settings.webhook.url is None:
            return None
        return cls(
            url=settings.webhook.url,
            secret=settings.webhook.secret,
            timeout=settings.notify.timeout,
        )


class WebhookChannel(HttpChannel):
    """Posts :func:`webhook_body` for every change, signed (targets ``webhook``)."""

    kind = "webhook"
    config_class = WebhookConfig

    def __init__(self, config: WebhookConfig) -> None:
        super().__init__(config)
        self.config: WebhookConfig = config

    def send(self, delivery: Delivery) -> Mapping[str, Any]:
        body = json.dumps(webhook_body(delivery.view, event=delivery.event), sort_keys=True)
        content = body.encode()
        headers = {"Content-Type": "application/json"}
        if self.config.secret is not None:
            signed = sign_webhook(
                self.config.secret.get_secret_value(), content, timestamp=int(time.time())
            )
            headers.update(signed)
        url = self.config.url.get_secret_value()
        self.post("webhook", url, delivery.delivery_id, content=content, headers=headers)
        return {}
