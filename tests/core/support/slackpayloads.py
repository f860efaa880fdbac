"""What Slack sends to *us*: interaction payloads, form-encoded and signed as Slack does it.

Payloads are shaped as Slack's own (``block_actions`` when someone clicks a message button,
``view_submission`` when someone submits a modal), with the ids of one fake workspace.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from sluicegate.notify.signing import sign_slack_request

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_ID",
    "VERIFICATION_TOKEN",
    "block_actions_payload",
    "interaction_body",
    "signed_interaction",
    "view_submission_payload",
]

TEAM_ID = "T0SLUICE1"
APP_ID = "A0SLUICE1"
BOT_ID = "B0SLUICE1"
BOT_USER_ID = "U0SLUICEBOT"
#: The legacy verification token Slack still puts in interaction payloads (never trust it).
VERIFICATION_TOKEN = "legacy-verification-token"


def interaction_body(payload: Mapping[str, Any]) -> bytes:
    """The raw body Slack posts to the interactivity URL: form-encoded ``payload=<json>``."""
    return urllib.parse.urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def signed_interaction(
    payload: Mapping[str, Any], *, signing_secret: str, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """``(body, headers)`` of an interaction request as Slack sends it, signed."""
    body = interaction_body(payload)
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        **sign_slack_request(signing_secret, body, ts),
    }
    return body, headers


def _user(user_id: str, username: str | None) -> dict[str, Any]:
    name = username or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID}


def block_actions_payload(
    *,
    user_id: str,
    action_id: str,
    request_id: str,
    response_url: str,
    trigger_id: str = "1700000001.4242424242.0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    channel_id: str = "C0APPROVALS",
    message_ts: str = "1700000000.000100",
    username: str | None = None,
    block_id: str = "sluicegate_actions",
) -> dict[str, Any]:
    """A ``block_actions`` payload as Slack posts it when someone clicks a message button."""
    label = {"sluicegate_approve": "Approve", "sluicegate_deny": "Deny"}.get(action_id, "Button")
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": request_id,
        "type": "button",
        "action_ts": f"{int(float(message_ts)) + 1}.000001",
    }
    if action_id == "sluicegate_approve":
        action["style"] = "primary"
    elif action_id == "sluicegate_deny":
        action["style"] = "danger"
    return {
        "type": "block_actions",
        "user": _user(user_id, username),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id,
        "team": {"id": TEAM_ID, "domain": "sluicegate-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "data-approvals"},
        "message": {
            "type": "message",
            "subtype": "bot_message",
            "text": "Approval needed",
            "ts": message_ts,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "blocks": [],
        },
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def view_submission_payload(
    *,
    user_id: str,
    private_metadata: str,
    comment: str,
    callback_id: str = "sluicegate_deny_comment",
    username: str | None = None,
) -> dict[str, Any]:
    """A ``view_submission`` payload as Slack posts it when someone submits the deny modal."""
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "sluicegate-test"},
        "user": _user(user_id, username),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": "1700000002.4242424242.aabbccddeeff00112233445566778899",
        "view": {
            "id": "V0DENYVIEW1",
            "team_id": TEAM_ID,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "title": {"type": "plain_text", "text": "Deny request", "emoji": True},
            "blocks": [],
            "state": {
                "values": {
                    "comment": {"comment": {"type": "plain_text_input", "value": comment}},
                }
            },
            "hash": "1700000002.fakehash",
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
