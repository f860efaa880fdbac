"""Slack's buttons and the deny modal: what a reviewer's click does, and who may click.

The app runs in process (ASGI, lifespan and dispatcher running) with its Slack bot posting to
a local server that answers as Slack's Web API does (``fakechat``); each interaction is signed
exactly as Slack signs it, with the app's signing secret (or not, for the refusals). How the
messages with the buttons reach Slack is in tests/core/notify/test_dispatch.py.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from sluicegate.notify.signing import sign_slack_request
from tests.core.support.api import Harness, assert_error
from tests.core.support.fakechat import (
    SIGNING_SECRET,
    FakeChat,
    block_actions_payload,
    interaction_body,
    view_submission_payload,
)

pytestmark = pytest.mark.usefixtures("isolated")  # none of the developer's settings leaks in

REQUESTER = {"orchestrator": "airflow", "job": "crm.export", "run_id": "r1", "owner": "carol"}


def signed(
    payload: dict[str, Any], *, at: int | None = None, secret: str = SIGNING_SECRET
) -> tuple[bytes, dict[str, str]]:
    body = interaction_body(payload)
    headers = sign_slack_request(secret, body, at if at is not None else int(time.time()))
    return body, {**headers, "Content-Type": "application/x-www-form-urlencoded"}


def click(h: Harness, chat: FakeChat, user: str, action: str, request_id: str) -> httpx.Response:
    payload = block_actions_payload(
        user_id=user,
        action_id=action,
        request_id=request_id,
        response_url=f"{chat.url}/slack-response/{uuid.uuid4().hex}",
    )
    body, headers = signed(payload)
    return h.c.post("/integrations/slack/interactions", content=body, headers=headers)


def test_a_click_decides_as_the_reviewer_behind_the_slack_id(
    chat_api: Harness, chat: FakeChat
) -> None:
    rid = chat_api.pending(requester=REQUESTER)["id"]
    r = click(chat_api, chat, "U01ALICE", "sluicegate_approve", rid)
    assert r.status_code == 200, r.text
    req = chat_api.get(rid)
    assert [(d["reviewer"], d["channel"]) for d in req["decisions"]] == [("alice", "slack")]


@pytest.mark.parametrize(
    ("user", "why"),
    [("U0STRANGER", "not a reviewer"), ("U01CAROL", "cannot decide")],  # carol owns the job
)
def test_an_unknown_or_self_approving_clicker_is_told_why_and_audited(
    chat_api1: Harness, chat: FakeChat, user: str, why: str
) -> None:
    rid = chat_api1.pending(requester=REQUESTER)["id"]
    assert click(chat_api1, chat, user, "sluicegate_approve", rid).status_code == 200
    (told,) = chat.wait_for("/slack-response/", 1, timeout=10)
    assert told.body["response_type"] == "ephemeral" and why in told.body["text"]
    assert chat_api1.get(rid)["decisions"] == []
    assert chat_api1.audit("decision.rejected", rid)


def test_forged_stale_and_replayed_signatures_are_refused(
    chat_api1: Harness, chat: FakeChat
) -> None:
    rid = chat_api1.pending(requester=REQUESTER)["id"]
    payload = block_actions_payload(
        user_id="U01ALICE", action_id="sluicegate_approve", request_id=rid, response_url=""
    )
    url = "/integrations/slack/interactions"
    body, forged = signed(payload, secret="not-the-secret")
    assert_error(chat_api1.c.post(url, content=body, headers=forged), 401, "bad_signature")
    body, stale = signed(payload, at=int(time.time()) - 6 * 60)
    assert_error(chat_api1.c.post(url, content=body, headers=stale), 401, "bad_signature")
    body, good = signed(payload)
    assert_error(chat_api1.c.post(url, content=body, headers={}), 401, "bad_signature")
    assert chat_api1.c.post(url, content=body, headers=good).status_code == 200
    assert_error(chat_api1.c.post(url, content=body, headers=good), 401, "replayed")
    assert len(chat_api1.get(rid)["decisions"]) == 1


def test_deny_opens_a_modal_for_the_comment_and_its_submission_denies(
    chat_api1: Harness, chat: FakeChat
) -> None:
    rid = chat_api1.pending(requester=REQUESTER)["id"]  # pii-export: a comment is required to deny
    assert click(chat_api1, chat, "U01BOB", "sluicegate_deny", rid).status_code == 200
    (opened,) = chat.wait_for("/api/views.open", 1, timeout=5)
    view = opened.body["view"]
    if isinstance(view, str):
        view = json.loads(view)
    assert chat_api1.get(rid)["status"] == "pending"  # nothing decided before the comment
    submission = view_submission_payload(
        user_id="U01BOB", private_metadata=view["private_metadata"], comment="no contract"
    )
    body, headers = signed(submission)
    r = chat_api1.c.post("/integrations/slack/interactions", content=body, headers=headers)
    assert r.status_code == 200 and r.json() == {"response_action": "clear"}
    req = chat_api1.get(rid)
    assert req["status"] == "denied"
    assert [(d["reviewer"], d["comment"]) for d in req["decisions"]] == [("bob", "no contract")]
