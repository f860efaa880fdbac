"""Reviewers where they work: Slack, Teams and a webhook, through the outbox, exactly once.

The server runs in process (ASGI, lifespan and dispatcher running) or as a subprocess; Slack's
Web API, its incoming webhook, Teams' Workflows webhook and a generic receiver are one local
HTTP server (``fakechat``) that answers as they do and records what they get. What reviewers
send back through Slack (button clicks, the deny modal) is in
tests/core/server/slack/test_interactions.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate.notify.channels import Channels
from sluicegate.notify.dispatch import Dispatcher
from sluicegate.notify.planner import Planner
from sluicegate.notify.signing import verify_webhook
from sluicegate.policy import load_policy
from sluicegate.settings import load_settings
from sluicegate.store import Store
from sluicegate.store.notifications import OutboxTable
from sluicegate.workflow import Workflow
from tests.core.support.api import Harness
from tests.core.support.fakechat import SIGNING_SECRET, WEBHOOK_SECRET, FakeChat
from tests.core.support.serverproc import GRANT, PII_EXPORT, POLICY, ServerProcess

pytestmark = pytest.mark.usefixtures("isolated")  # none of the developer's settings leaks in

REQUESTER = {"orchestrator": "airflow", "job": "crm.export", "run_id": "r1", "owner": "carol"}


def posts(chat: FakeChat, count: int) -> list[Any]:
    return chat.wait_for("/api/chat.postMessage", count, timeout=10)


def test_a_gate_posts_buttons_and_each_decision_updates_the_message(
    chat_api: Harness, chat: FakeChat
) -> None:
    rid = chat_api.pending(requester=REQUESTER)["id"]
    (post,) = posts(chat, 1)
    assert post.body["channel"] == "#data-approvals"
    actions = [
        e["action_id"]
        for b in post.body["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if "action_id" in e
    ]
    assert {"sluicegate_approve", "sluicegate_deny"} <= set(actions)

    assert chat_api.decide(rid, "alice").status_code == 200
    (update,) = chat.wait_for("/api/chat.update", 1, timeout=10)
    assert update.body["ts"] == post.answer["ts"]
    assert "1 of 2 approvals" in json.dumps(update.body["blocks"])

    assert chat_api.decide(rid, "bob").status_code == 200
    updates = chat.wait_for("/api/chat.update", 3, timeout=10)  # bob's decision, then the end
    final = json.dumps(updates[-1].body["blocks"])
    assert "sluicegate_approve" not in final  # the buttons are gone once it is decided
    replies = [c for c in posts(chat, 2) if c.body.get("thread_ts") == post.answer["ts"]]
    assert replies and "Approved by alice, bob" in replies[0].body["text"]
    sent = chat_api.audit("notification.sent", rid)
    assert {json.loads(r.data)["target"] for r in sent} >= {"slack:#data-approvals", "teams"}


def test_teams_gets_a_card_with_the_review_page_only_and_the_webhook_is_signed(
    chat_api: Harness, chat: FakeChat
) -> None:
    rid = chat_api.pending(requester=REQUESTER)["id"]
    (card,) = chat.wait_for("/teams-webhook/", 1, timeout=10)
    content = card.body["attachments"][0]["content"]
    assert content["type"] == "AdaptiveCard"
    urls = [(a["title"], a["url"]) for a in content["actions"]]
    # The channel reads the card, carol (the job's owner) too: no reviewer's link in it.
    assert urls == [("Review page", f"{chat_api.st.settings.server_url}/r/{rid}")]
    assert "?t=" not in card.raw.decode()
    chat_api.decide(rid, "alice", "deny", "not with this partner")
    hooks = chat.wait_for("/hook/", 3, timeout=10)  # created, decision, denied
    for h in hooks:
        verify_webhook(WEBHOOK_SECRET, h.headers, h.raw)
    assert [h.body["event"] for h in hooks] == [
        "request.created",
        "decision.recorded",
        "request.denied",
    ]


def test_a_failing_slack_is_retried_and_the_message_still_goes_once(
    chat_api1: Harness, chat: FakeChat
) -> None:
    chat.fail_next("/api/chat.postMessage", times=1, status=500)
    chat_api1.pending(requester=REQUESTER)
    calls = chat.wait_for("/api/chat.postMessage", 2, timeout=15)  # the failure, then the send
    time.sleep(0.5)
    assert len(chat.calls("/api/chat.postMessage")) == 2
    assert [c.status for c in calls] == [500, 200]


def test_a_resent_webhook_delivery_carries_the_same_delivery_id(
    chat_api1: Harness, chat: FakeChat
) -> None:
    # The receiver stored the first delivery but its answer was lost (a 502 from its proxy):
    # the resend must say it is the same notification, and a different one must not.
    chat.fail_next("/hook/", times=1, status=502)
    rid = chat_api1.pending(requester=REQUESTER)["id"]
    first, again = chat.wait_for("/hook/", 2, timeout=15)  # the resend, after a 2 s backoff
    assert (first.status, again.status) == (502, 200)
    for hook in (first, again):  # rebuilt for the resend: the same event, a later time
        assert (hook.body["event"], hook.body["request"]["id"]) == ("request.created", rid)
    delivery = first.header("X-Sluicegate-Delivery")
    assert delivery is not None and str(uuid.UUID(delivery)) == delivery
    assert again.header("X-Sluicegate-Delivery") == delivery
    verify_webhook(WEBHOOK_SECRET, again.headers, again.raw)
    chat_api1.decide(rid, "alice", "deny", "not with this partner")
    hooks = chat.wait_for("/hook/", 4, timeout=10)  # + the decision, the end
    assert len({h.header("X-Sluicegate-Delivery") for h in hooks}) == 3


def _dispatchers(url: str, chat: FakeChat, n: int) -> tuple[Store, list[Dispatcher]]:
    settings = load_settings(db_url=url, policy=str(POLICY), **chat.server_settings())
    store = Store(url)
    policy = load_policy(POLICY)
    table = OutboxTable(store)
    channels = Channels.from_settings(settings)  # Slack's bot, Teams and the webhook
    planner = Planner(table, policy, channels)
    store.on_change.append(planner)
    made = [
        Dispatcher(store, table, planner, settings, b"k" * 32, timedelta(hours=1)) for _ in range(n)
    ]
    return store, made


def test_concurrent_dispatchers_never_double_a_message(db_url: str, chat: FakeChat) -> None:
    from sluicegate.model import Action, Requester

    store, dispatchers = _dispatchers(db_url, chat, 4)
    try:
        approvals = Workflow(store, load_policy(POLICY))
        for i in range(10):
            approvals.open(
                idempotency_key=f"k{i}",
                action=Action.model_validate(PII_EXPORT),
                requester=Requester(**REQUESTER, principal="p"),
            )
        barrier = threading.Barrier(len(dispatchers))

        def work(d: Dispatcher) -> None:
            barrier.wait(10)
            while d.run_once(limit=3):
                pass

        threads = [threading.Thread(target=work, args=(d,)) for d in dispatchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(chat.calls("/api/chat.postMessage")) == 10
        assert len(chat.calls("/teams-webhook/")) == 10
        assert len(chat.calls("/hook/")) == 10
        rows = OutboxTable(store).rows()
        assert len(rows) == 30 and {r["status"] for r in rows} == {"sent"}
    finally:
        for d in dispatchers:
            d.stop()
        store.close()


def test_a_dispatcher_that_dies_holding_rows_is_taken_over_after_its_lease(
    sqlite_url: str, chat: FakeChat
) -> None:
    from sluicegate.model import Action, Requester

    store, (dead, alive) = _dispatchers(sqlite_url, chat, 2)
    try:
        Workflow(store, load_policy(POLICY)).open(
            idempotency_key="k-lease",
            action=Action.model_validate(GRANT),  # privilege-change: slack + teams
            requester=Requester(**REQUESTER, principal="p"),
        )
        held = dead.table.claim(dead.worker, lease=timedelta(seconds=0.5))
        assert held and alive.run_once() == 0  # leased: not taken
        time.sleep(0.6)
        assert alive.run_once() == len(held)
        assert not dead.table.sent(held[0], dead.worker)  # too late: the row is not its own
        assert len(chat.calls("/api/chat.postMessage")) == 1
    finally:
        dead.stop()
        alive.stop()
        store.close()


def test_a_server_killed_before_sending_delivers_after_restart(
    sqlite_url: str, tmp_path: Path, chat: FakeChat
) -> None:
    def env(api_url: str) -> dict[str, str]:
        return {
            "SLUICEGATE_SLACK__BOT_TOKEN": chat.bot_token,
            "SLUICEGATE_SLACK__SIGNING_SECRET": SIGNING_SECRET,
            "SLUICEGATE_SLACK__API_URL": api_url,
        }

    # Slack unreachable at first: the row is committed with the request, its send fails.
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}/api/"
    server = ServerProcess(sqlite_url, POLICY, tmp_path, env=env(nowhere)).start()
    with Store(sqlite_url) as store:
        token = store.create_token("airflow-prod", "request")
    r = httpx.post(
        f"{server.url}/api/v1/requests",
        json={"idempotency_key": "k-crash", "action": PII_EXPORT, "requester": REQUESTER},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    with Store(sqlite_url) as store:  # wait until the failed attempt is on record
        deadline = time.monotonic() + 15
        while not any(row["last_error"] for row in OutboxTable(store).rows()):
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.05)
    server.kill()  # SIGKILL: no shutdown of any kind
    assert chat.calls("/api/chat.postMessage") == []
    restarted = ServerProcess(
        sqlite_url, POLICY, tmp_path, name="restarted", env=env(f"{chat.url}/api/")
    ).start()
    try:
        (post,) = chat.wait_for("/api/chat.postMessage", 1, timeout=15)
        assert post.body["channel"] == "#data-approvals"
        time.sleep(0.5)
        assert len(chat.calls("/api/chat.postMessage")) == 1
    finally:
        restarted.stop()


def test_without_a_bot_token_the_incoming_webhook_gets_the_review_page_only(
    sqlite_url: str, make_api: Any, chat: FakeChat
) -> None:
    h: Harness = make_api(sqlite_url, slack={"webhook_url": f"{chat.url}/slack-webhook/w1"})
    rid = h.pending(requester=REQUESTER)["id"]
    (first,) = chat.wait_for("/slack-webhook/", 1, timeout=10)
    text = json.dumps(first.body)
    assert "sluicegate_approve" not in text  # an incoming webhook cannot carry buttons
    assert f"{h.st.settings.server_url}/r/{rid}|Open the review page" in text
    assert "?t=" not in first.raw.decode()  # the channel reads it: no reviewer's link
    h.decide(rid, "alice", "deny", "no")
    second = chat.wait_for("/slack-webhook/", 2, timeout=10)[1]
    assert "Denied by alice" in second.body["text"]


def test_a_direct_message_carries_its_reviewers_own_link_and_the_channel_none(
    sqlite_url: str, make_api: Any, chat: FakeChat
) -> None:
    settings = chat.server_settings()
    settings["slack"] = {**settings["slack"], "dm_reviewers": True}
    h: Harness = make_api(sqlite_url, **settings)
    rid = h.pending(requester=REQUESTER)["id"]
    opened = chat.wait_for("/api/conversations.open", 2, timeout=10)  # alice, bob; not carol
    who = {c.answer["channel"]["id"]: c.args["users"] for c in opened}
    assert sorted(who.values()) == ["U01ALICE", "U01BOB"]
    sent = posts(chat, 3)
    page_urls: dict[str, str] = {}
    for post in sent:
        (actions,) = [b for b in post.body["blocks"] if b["type"] == "actions"]
        (page,) = [e["url"] for e in actions["elements"] if "url" in e]
        page_urls[who.get(post.body["channel"], post.body["channel"])] = page
    base = f"{h.st.settings.server_url}/r/{rid}"
    assert page_urls["#data-approvals"] == base  # the channel: the plain page
    h.c.cookies.clear()
    for slack_id, name in (("U01ALICE", "alice"), ("U01BOB", "bob")):
        assert page_urls[slack_id].startswith(f"{base}?t=")  # a DM: that reviewer's own link
        page = h.c.get(page_urls[slack_id].removeprefix(h.st.settings.server_url))
        assert page.status_code == 200 and f"{name} (from your review link)" in page.text
    assert h.get(rid)["decisions"] == []  # opening a link decides nothing


def test_reminders_and_escalations_are_planned_once(
    sqlite_url: str, chat: FakeChat, tmp_path: Path
) -> None:
    from datetime import timedelta as td

    from sluicegate.model import Action, Requester, utcnow
    from sluicegate.notify.planner import plan_followups

    store, (dispatcher,) = _dispatchers(sqlite_url, chat, 1)
    assert [c.kind for c in dispatcher.planner.channels.all] == ["slack", "teams", "webhook"]
    try:
        opened = Workflow(store, load_policy(POLICY)).open(
            idempotency_key="k-remind",
            action=Action.model_validate(PII_EXPORT),
            requester=Requester(**REQUESTER, principal="p"),
        )
        assert opened.request is not None
        while dispatcher.run_once():
            pass
        table = dispatcher.table
        assert plan_followups(store, table, dispatcher.planner) == 0  # not yet due
        later = utcnow() + td(hours=13)  # past remind_after (4h) and escalate_after (12h)
        planned = plan_followups(store, table, dispatcher.planner, now=later)
        assert planned == 3 + 3 + 1  # reminder and escalation to 3 targets; a DM to bob
        assert plan_followups(store, table, dispatcher.planner, now=later) == 0  # once
        while dispatcher.run_once():
            pass
        kinds = [(r["kind"], r["target"], r["status"]) for r in table.rows()]
        assert ("escalation", "slack-dm:bob", "sent") in kinds
        dm = [c for c in chat.calls("/api/conversations.open")]
        assert dm and "U01BOB" in json.dumps(dm[-1].body)
        thread = [c for c in chat.calls("/api/chat.postMessage") if c.body.get("thread_ts")]
        assert any("eminder" in c.body["text"] for c in thread)
    finally:
        dispatcher.stop()
        store.close()
