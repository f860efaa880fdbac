"""The chat fake answers as Slack and Teams do, to the real clients (slack_sdk, httpx).

If the fake is wrong, every notification test built on it proves nothing; so here slack_sdk's
own ``WebClient`` and ``WebhookClient`` talk to it over a real socket, with our messages.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

pytest.importorskip("slack_sdk")

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from sluicegate.model import Action, ApprovalRequest, Asset, Requester, utcnow
from sluicegate.notify.channels.slack_blocks import (
    slack_deny_modal,
    slack_ephemeral,
    slack_message,
)
from sluicegate.notify.channels.teams import teams_card
from sluicegate.notify.channels.webhook import webhook_body
from sluicegate.notify.signing import sign_webhook, verify_slack_request, verify_webhook
from sluicegate.notify.view import RequestView
from tests.core.support.fakechat import (
    FakeChat,
    block_actions_payload,
    channel_id,
    interaction_body,
    signed_interaction,
    view_submission_payload,
)

TOKEN = "xoxb-sluicegate-test"
OTHER_APP = "xoxb-another-app"
TS = re.compile(r"^\d{10}\.\d{6}$")


@pytest.fixture
def fake() -> Iterator[FakeChat]:
    with FakeChat(TOKEN, other_tokens=(OTHER_APP,)) as chat:
        yield chat


@pytest.fixture
def web_client(fake: FakeChat) -> WebClient:
    return WebClient(token=TOKEN, base_url=fake.api_url, timeout=5)


@pytest.fixture
def view() -> RequestView:
    now = utcnow()
    req = ApprovalRequest.open(
        idempotency_key="k1",
        action=Action(
            kind="export",
            summary="Export customers <!channel>",
            inputs=(
                Asset(namespace="postgres://prod", name="crm.customers", classifications=("pii",)),
            ),
        ),
        requester=Requester(orchestrator="airflow", job="export.publish", owner="carol"),
        rule="pii-export",
        required_approvals=2,
        timeout=timedelta(hours=1),
        now=now,
    )
    return RequestView.of(req, review_url=f"https://sg.example.com/r/{req.id}", now=now)


# --------------------------------------------------------------------------------------------
# The Web API through slack_sdk


def test_post_then_update_the_same_message(
    fake: FakeChat, web_client: WebClient, view: RequestView
) -> None:
    posted = web_client.chat_postMessage(
        channel="#data-approvals", **slack_message(view, buttons=True)
    )
    assert posted["ok"] is True
    channel, ts = posted["channel"], posted["ts"]
    assert channel == channel_id("#data-approvals") and channel.startswith("C")
    assert TS.match(ts)
    assert posted["message"]["blocks"][0]["text"]["text"] == "Approval needed: export"

    ended = slack_message(view, buttons=False)
    updated = web_client.chat_update(channel=channel, ts=ts, **ended)
    assert (updated["ok"], updated["channel"], updated["ts"]) == (True, channel, ts)
    assert fake.message(channel, ts)["blocks"] == ended["blocks"]
    assert fake.message(channel, ts)["edits"] == 1

    # What slack_sdk sent: JSON, the token as a bearer header and never in the body.
    call = fake.calls("/api/chat.postMessage")[0]
    assert call.method == "POST"
    assert call.content_type == "application/json"
    assert call.header("Authorization") == f"Bearer {TOKEN}"
    assert "token" not in call.body
    assert call.body["channel"] == "#data-approvals"
    assert call.body["blocks"] == slack_message(view, buttons=True)["blocks"]


def test_each_post_gets_its_own_ts(web_client: WebClient) -> None:
    stamps = [
        web_client.chat_postMessage(channel="C0APPROVALS", text=f"m{i}")["ts"] for i in range(5)
    ]
    assert len(set(stamps)) == 5 and stamps == sorted(stamps)


def test_the_same_channel_name_always_gets_the_same_id(web_client: WebClient) -> None:
    first = web_client.chat_postMessage(channel="#data-approvals", text="a")["channel"]
    second = web_client.chat_postMessage(channel="data-approvals", text="b")["channel"]
    other = web_client.chat_postMessage(channel="#elsewhere", text="c")["channel"]
    assert first == second != other


def test_update_with_another_apps_token_is_refused(fake: FakeChat, web_client: WebClient) -> None:
    posted = web_client.chat_postMessage(channel="#data-approvals", text="hi")
    other = WebClient(token=OTHER_APP, base_url=fake.api_url)
    with pytest.raises(SlackApiError) as caught:
        other.chat_update(channel=posted["channel"], ts=posted["ts"], text="edited")
    assert caught.value.response["error"] == "cant_update_message"
    assert fake.message(posted["channel"], posted["ts"])["text"] == "hi"


def test_update_of_an_unknown_message_is_refused(web_client: WebClient) -> None:
    posted = web_client.chat_postMessage(channel="#data-approvals", text="hi")
    with pytest.raises(SlackApiError) as caught:
        web_client.chat_update(channel=posted["channel"], ts="1600000000.000001", text="x")
    assert caught.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as caught:  # chat.update takes the id, not the name
        web_client.chat_update(channel="#data-approvals", ts=posted["ts"], text="x")
    assert caught.value.response["error"] == "channel_not_found"


def test_a_wrong_token_gets_invalid_auth_with_http_200(fake: FakeChat) -> None:
    bad = WebClient(token="xoxb-wrong", base_url=fake.api_url)
    with pytest.raises(SlackApiError) as caught:
        bad.chat_postMessage(channel="#data-approvals", text="hi")
    assert caught.value.response.status_code == 200
    assert caught.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as caught:
        bad.auth_test()
    assert caught.value.response["error"] == "invalid_auth"


def test_blocks_past_slacks_limits_are_refused(web_client: WebClient) -> None:
    too_many = [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}] * 51
    with pytest.raises(SlackApiError) as caught:
        web_client.chat_postMessage(channel="#data-approvals", text="x", blocks=too_many)
    assert caught.value.response["error"] == "invalid_blocks"
    long_text = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    with pytest.raises(SlackApiError) as caught:
        web_client.chat_postMessage(channel="#data-approvals", text="x", blocks=long_text)
    assert "3001" in json.dumps(caught.value.response["errors"])


def test_form_bodies_as_slack_sdk_sends_them(fake: FakeChat, web_client: WebClient) -> None:
    assert web_client.auth_test()["user_id"].startswith("U")
    opened = web_client.conversations_open(users="U0ALICE0001")
    assert opened["channel"]["id"] == channel_id("U0ALICE0001", "D")
    call = fake.calls("/api/conversations.open")[0]
    assert call.content_type == "application/x-www-form-urlencoded"
    assert call.body == {"users": "U0ALICE0001"}
    assert call.header("Authorization") == f"Bearer {TOKEN}"


def test_the_token_may_come_in_the_form_as_slack_allows(fake: FakeChat) -> None:
    answer = httpx.post(
        fake.api_url + "chat.postMessage",
        data={"token": TOKEN, "channel": "#data-approvals", "text": "hi", "blocks": "[]"},
    ).json()
    assert answer["ok"] is True and answer["channel"] == channel_id("#data-approvals")
    assert httpx.post(fake.api_url + "auth.test", data={"token": "nope"}).json() == {
        "ok": False,
        "error": "invalid_auth",
    }
    assert httpx.post(fake.api_url + "auth.test").json()["error"] == "not_authed"


def test_ephemeral_dm_and_modal(fake: FakeChat, web_client: WebClient, view: RequestView) -> None:
    dm = web_client.conversations_open(users="U0ALICE0001")["channel"]["id"]
    assert web_client.chat_postMessage(channel=dm, text="for you")["channel"] == dm
    ephemeral = web_client.chat_postEphemeral(channel="C0APPROVALS", user="U0ALICE0001", text="hi")
    assert TS.match(ephemeral["message_ts"])

    modal = slack_deny_modal(view, private_metadata='{"request_id": "x"}')
    opened = web_client.views_open(trigger_id="1700000001.42.abc", view=modal)
    assert opened["view"]["callback_id"] == "sluicegate_deny_comment"
    assert opened["view"]["private_metadata"] == '{"request_id": "x"}'
    assert fake.calls("/api/views.open")[0].body["view"] == modal
    with pytest.raises(SlackApiError) as caught:
        web_client.views_open(trigger_id="", view=modal)
    assert caught.value.response["error"] == "invalid_arguments"


# --------------------------------------------------------------------------------------------
# Failure injection


def test_a_500_makes_slack_sdk_raise_then_the_next_call_succeeds(
    fake: FakeChat, web_client: WebClient
) -> None:
    fake.fail_next("/api/chat.postMessage", times=2, status=500)
    for _ in range(2):
        with pytest.raises(SlackApiError) as caught:
            web_client.chat_postMessage(channel="#data-approvals", text="hi")
        assert caught.value.response.status_code == 500
    assert web_client.chat_postMessage(channel="#data-approvals", text="hi")["ok"] is True
    assert [c.status for c in fake.calls("/api/chat.postMessage")] == [500, 500, 200]


def test_a_429_carries_retry_after(fake: FakeChat, web_client: WebClient) -> None:
    fake.fail_next("/api/chat.update", status=429)
    with pytest.raises(SlackApiError) as caught:
        web_client.chat_update(channel="C0APPROVALS", ts="1.2", text="x")
    response = caught.value.response
    assert response.status_code == 429
    assert response["error"] == "ratelimited"
    assert response.headers["Retry-After"] == "1"


def test_slack_sdks_rate_limit_handler_waits_and_retries(fake: FakeChat) -> None:
    fake.fail_next("/api/chat.postMessage", status=429, retry_after=1)
    patient = WebClient(
        token=TOKEN,
        base_url=fake.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    started = time.monotonic()
    assert patient.chat_postMessage(channel="#data-approvals", text="hi")["ok"] is True
    assert time.monotonic() - started >= 1
    assert [c.status for c in fake.calls("/api/chat.postMessage")] == [429, 200]


def test_a_hanging_answer_times_the_client_out(fake: FakeChat) -> None:
    fake.hang_next("/api/chat.postMessage", 2)
    impatient = WebClient(token=TOKEN, base_url=fake.api_url, timeout=1)
    with pytest.raises(TimeoutError):
        impatient.chat_postMessage(channel="#data-approvals", text="hi")
    (call,) = fake.wait_for("/api/chat.postMessage", 1, timeout=5)
    assert call.status == 200  # answered after the hang, to nobody


def test_failures_are_injected_per_path(fake: FakeChat) -> None:
    fake.fail_next("/hook/", status=503)
    assert httpx.post(fake.hook_url("a"), json={}).status_code == 503
    assert httpx.post(fake.hook_url("a"), json={}).status_code == 200
    fake.fail_next("/teams-webhook/", status=429)
    answer = httpx.post(fake.teams_webhook_url(), json={"type": "message"})
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "1")


# --------------------------------------------------------------------------------------------
# Webhooks and response_url


def test_slack_incoming_webhook_takes_our_message(fake: FakeChat, view: RequestView) -> None:
    answer = WebhookClient(fake.slack_webhook_url()).send_dict(slack_message(view, buttons=False))
    assert (answer.status_code, answer.body) == (200, "ok")
    call = fake.calls("/slack-webhook/")[0]
    assert call.content_type == "application/json"
    assert call.body["blocks"][0]["type"] == "header"

    bad = WebhookClient(fake.slack_webhook_url()).send_dict({"blocks": [{"type": "nope"}]})
    assert (bad.status_code, bad.body) == (400, "invalid_blocks")
    empty = WebhookClient(fake.slack_webhook_url()).send_dict({"text": ""})
    assert (empty.status_code, empty.body) == (400, "no_text")


def test_teams_workflows_webhook_answers_202(fake: FakeChat, view: RequestView) -> None:
    body = teams_card(view)
    answer = httpx.post(fake.teams_webhook_url(), json=body)
    assert answer.status_code == 202 and answer.content == b""
    assert fake.calls("/teams-webhook/")[0].body == body


def test_generic_hook_records_the_signed_delivery(fake: FakeChat, view: RequestView) -> None:
    raw = json.dumps(webhook_body(view, event="request.created")).encode()
    now = int(time.time())
    headers = {"Content-Type": "application/json", **sign_webhook("s3cret", raw, timestamp=now)}
    assert httpx.post(fake.hook_url("pager"), content=raw, headers=headers).status_code == 200
    (call,) = fake.wait_for("/hook/pager", 1)
    verify_webhook("s3cret", call.headers, call.raw, now=now)
    assert call.body["event"] == "request.created"


def test_response_url_answers_ok(fake: FakeChat) -> None:
    answer = httpx.post(fake.response_url(), json=slack_ephemeral("Recorded."))
    assert (answer.status_code, answer.text) == (200, "ok")
    assert fake.calls("/slack-response/")[0].body["response_type"] == "ephemeral"


# --------------------------------------------------------------------------------------------
# Recording and waiting


def test_calls_are_recorded_in_order_from_many_threads(fake: FakeChat) -> None:
    web_client = WebClient(token=TOKEN, base_url=fake.api_url)

    def post(n: int) -> None:
        for i in range(5):
            web_client.chat_postMessage(channel="#data-approvals", text=f"{n}-{i}")

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = fake.wait_for("/api/chat.postMessage", 40)
    assert len({c.answer["ts"] for c in calls}) == 40
    assert len(list(fake.messages())) == 40
    for n in range(8):  # each thread's own posts arrive in its order
        mine = [c.body["text"] for c in calls if c.body["text"].startswith(f"{n}-")]
        assert mine == [f"{n}-{i}" for i in range(5)]


def test_wait_for_says_what_did_arrive(fake: FakeChat) -> None:
    httpx.post(fake.hook_url(), json={})
    with pytest.raises(
        AssertionError, match=r"got 0\. All requests: \['POST /hook/receiver -> 200'\]"
    ):
        fake.wait_for("/teams-webhook/", 1, timeout=0.2)


# --------------------------------------------------------------------------------------------
# What Slack sends to us


def test_interaction_body_is_form_encoded_json() -> None:
    payload = block_actions_payload(
        user_id="U0ALICE0001",
        action_id="sluicegate_approve",
        request_id="0193-req",
        response_url="http://127.0.0.1:1/slack-response/x",
    )
    body = interaction_body(payload)
    (value,) = urllib.parse.parse_qs(body.decode())["payload"]
    assert json.loads(value) == payload


def test_block_actions_payload_is_shaped_like_slacks() -> None:
    payload = block_actions_payload(
        user_id="U0ALICE0001",
        action_id="sluicegate_deny",
        request_id="0193-req",
        response_url="https://hooks.slack.com/actions/T/1/x",
        channel_id="C0APPROVALS",
        message_ts="1700000000.000100",
    )
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == "U0ALICE0001" and payload["user"]["username"]
    assert payload["container"] == {
        "type": "message",
        "message_ts": "1700000000.000100",
        "channel_id": "C0APPROVALS",
        "is_ephemeral": False,
    }
    assert payload["channel"]["id"] == "C0APPROVALS"
    assert payload["message"]["ts"] == "1700000000.000100"
    assert payload["trigger_id"] and payload["api_app_id"] and payload["token"]
    assert payload["team"]["id"].startswith("T")
    assert payload["response_url"] == "https://hooks.slack.com/actions/T/1/x"
    (action,) = payload["actions"]
    assert action["action_id"] == "sluicegate_deny"
    assert action["block_id"] == "sluicegate_actions"
    assert action["value"] == "0193-req"
    assert action["type"] == "button" and action["action_ts"]


def test_view_submission_payload_carries_the_comment_where_slack_puts_it() -> None:
    payload = view_submission_payload(
        user_id="U0ALICE0001", private_metadata='{"request_id": "r1"}', comment="too many rows"
    )
    assert payload["type"] == "view_submission"
    assert payload["view"]["callback_id"] == "sluicegate_deny_comment"
    assert payload["view"]["private_metadata"] == '{"request_id": "r1"}'
    assert payload["view"]["state"]["values"]["comment"]["comment"]["value"] == "too many rows"


def test_signed_interaction_verifies_as_slacks_would() -> None:
    payload = view_submission_payload(user_id="U0BOB00001", private_metadata="m", comment="no")
    body, headers = signed_interaction(payload, signing_secret="shh", timestamp=1_764_590_400)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    verify_slack_request(
        "shh",
        timestamp=headers["X-Slack-Request-Timestamp"],
        signature=headers["X-Slack-Signature"],
        body=body,
        now=1_764_590_400,
    )
