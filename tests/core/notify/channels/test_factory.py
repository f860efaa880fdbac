"""The channel registry: kinds and dotted paths, what the planner asks, what the dispatcher sends.

A channel of one's own is loaded by its dotted path and gets every row the planner plans for
it, through the same dispatcher as the built-in ones; the built-in kinds take their settings
sections, refuse configs they do not understand, and keep Prefect's resume to Prefect's runs.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from sluicegate.exceptions import ConfigError
from sluicegate.model import Action, ApprovalRequest, Requester, Status
from sluicegate.notify.channels import (
    SKIPPED,
    Change,
    Channel,
    ChannelConfig,
    ChannelFactory,
    Channels,
    Delivery,
    default_factory,
    register_channel,
)
from sluicegate.notify.channels.prefect import PrefectChannel, PrefectConfig
from sluicegate.notify.channels.slack import SlackChannel, SlackConfig
from sluicegate.notify.dispatch import Dispatcher
from sluicegate.notify.planner import Planner
from sluicegate.policy import load_policy
from sluicegate.settings import load_settings
from sluicegate.store import Store
from sluicegate.store.notifications import OutboxTable
from sluicegate.workflow import Workflow
from tests.core.support.serverproc import PII_EXPORT, POLICY

REQUESTER = {"orchestrator": "airflow", "job": "crm.export", "run_id": "r1", "owner": "carol"}


class PagerConfig(ChannelConfig):
    """A pager's service key."""

    service: str


class Pager(Channel):
    """A channel of one's own: pages the reviewers who may decide, once per request."""

    kind = "pager"
    config_class = PagerConfig
    sent: ClassVar[list[tuple[str, str, str, list[str]]]] = []

    def targets(self, change: Change) -> list[str]:
        if change.event != "request.created":
            return []
        return [f"pager:{r.id}" for r in change.people]

    def send(self, delivery: Delivery) -> Mapping[str, Any]:
        view = delivery.view
        Pager.sent.append((delivery.event, delivery.target, view.summary, list(view.eligible)))
        return {"paged": delivery.address}


PAGER = f"{Pager.__module__}.{Pager.__qualname__}"


def _dispatcher(store: Store, channels: Channels) -> Dispatcher:
    settings = load_settings(db_url=store.engine.url.render_as_string(False), policy=str(POLICY))
    policy = load_policy(POLICY)
    table = OutboxTable(store)
    planner = Planner(table, policy, channels)
    store.on_change.append(planner)
    return Dispatcher(store, table, planner, settings, b"k" * 32, timedelta(hours=1))


def _open(store: Store, requester: dict[str, str] = REQUESTER) -> ApprovalRequest:
    opened = Workflow(store, load_policy(POLICY)).open(
        idempotency_key=uuid.uuid4().hex,
        action=Action.model_validate(PII_EXPORT),
        requester=Requester(**requester, principal="p"),
    )
    assert opened.request is not None
    return opened.request


def test_a_channel_of_ones_own_is_loaded_by_its_dotted_path_and_sent_to(
    sqlite_store: Store,
) -> None:
    Pager.sent.clear()
    channels = Channels([default_factory().create({"type": PAGER, "service": "dba"})])
    dispatcher = _dispatcher(sqlite_store, channels)
    try:
        request = _open(sqlite_store)  # pii-export: alice and bob may decide; carol owns the job
        while dispatcher.run_once():
            pass
    finally:
        dispatcher.stop()
    assert sorted(t for _, t, _, _ in Pager.sent) == ["pager:alice", "pager:bob"]
    assert {(e, s) for e, _, s, _ in Pager.sent} == {("request.created", PII_EXPORT["summary"])}
    assert all(eligible == ["alice", "bob"] for *_, eligible in Pager.sent)
    rows = OutboxTable(sqlite_store).rows(str(request.id))
    assert {(r["target"], r["status"]) for r in rows} == {
        ("pager:alice", "sent"),
        ("pager:bob", "sent"),
    }
    # The rule's own targets (slack, teams, webhook) have no channel here: none was planned.
    assert OutboxTable(sqlite_store).result_of(str(request.id), "pager:bob") == {"paged": "bob"}


def test_console_logs_each_notification_and_noop_skips_it(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    factory = default_factory()
    channels = Channels([factory.create({"type": "console"}), factory.create({"type": "noop"})])
    assert channels.accept("console") == "console" and channels.accept("noop:x") == "noop"
    dispatcher = _dispatcher(sqlite_store, channels)
    request = _open(sqlite_store)
    try:
        for target in ("console", "noop"):
            with sqlite_store.write() as conn:
                OutboxTable(sqlite_store).enqueue(
                    conn,
                    str(request.id),
                    [(f"k-{target}", target, "reminder", {"delivery_id": str(uuid.uuid4())})],
                )
        with caplog.at_level(logging.INFO, logger="sluicegate.notify.console"):
            while dispatcher.run_once():
                pass
    finally:
        dispatcher.stop()
    (logged,) = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("console")]
    assert (logged["event"], logged["request"]["id"]) == ("reminder", str(request.id))
    rows = {r["target"]: r for r in OutboxTable(sqlite_store).rows(str(request.id))}
    assert rows["console"]["status"] == rows["noop"]["status"] == "sent"
    assert json.loads(rows["noop"]["result"]) == SKIPPED


def test_the_settings_configure_the_built_in_channels() -> None:
    assert not Channels.from_settings(load_settings()).any
    settings = load_settings(
        teams={"webhook_url": "https://example.com/teams"},
        webhook={"url": "https://example.com/hook", "secret": "hook-secret-42"},
        prefect={"api_url": "http://prefect:4200/api/"},
        notify={"timeout": 3.5},
    )
    channels = Channels.from_settings(settings, extra=[{"type": "console"}])
    assert [c.kind for c in channels.all] == ["teams", "webhook", "prefect", "console"]
    assert {c.config.timeout for c in channels.all} == {3.5, 10.0}
    assert channels.sending("webhook") is channels.get("webhook")
    assert channels.sending("slack:#x") is None  # no Slack here
    assert "hook-secret-42" not in repr([c.config for c in channels.all])  # SecretStr


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"webhook_url": "x"}, "needs a type"),
        ({"type": "carrier-pigeon"}, "not a kind or a dotted path"),
        ({"type": "no_such_module.Channel"}, "cannot be imported"),
        ({"type": "json.JSONDecoder"}, "not a Channel subclass"),
        ({"type": "teams"}, "teams: webhook_url: Field required"),
        ({"type": "teams", "webhook_url": "x", "colour": "red"}, "colour: Extra inputs"),
        ({"type": "prefect", "api_url": "prefect:4200"}, "must start with http"),
    ],
)
def test_a_config_that_cannot_make_a_channel_says_why(config: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        default_factory().create(config)


def test_two_channels_cannot_send_the_same_targets() -> None:
    factory = ChannelFactory()
    factory.register("also-teams", "sluicegate.notify.channels.teams.TeamsChannel")
    one = factory.create({"type": "also-teams", "webhook_url": "https://a"})
    other = default_factory().create({"type": "teams", "webhook_url": "https://b"})
    with pytest.raises(ConfigError, match="two notification channels send 'teams' targets"):
        Channels([one, other])


def test_register_channel_adds_a_kind_to_the_default_factory() -> None:
    @register_channel
    class Carrier(Channel):
        kind = "carrier-test"

    try:
        assert isinstance(default_factory().create({"type": "carrier-test"}), Carrier)
    finally:
        del default_factory().kinds["carrier-test"]


def test_slack_accepts_channels_and_adds_direct_messages_only_with_a_bot() -> None:
    policy = load_policy(POLICY)
    people = policy.members(["data-stewards"])
    with_bot = SlackChannel(SlackConfig(bot_token="xoxb-1", dm_reviewers=True))
    webhook_only = SlackChannel(SlackConfig(webhook_url="https://hooks.slack.com/x"))
    assert with_bot.accept("slack:#data-approvals") == "slack:#data-approvals"
    assert with_bot.accept("slack") == "slack" and with_bot.accept("teams") is None
    assert with_bot.accept("slack-dm:alice") == "slack-dm"
    assert webhook_only.accept("slack-dm:alice") is None
    created = Change("request.created", "r", None, lambda: people)
    dms = [f"slack-dm:{r.id}" for r in people if r.slack_id]
    assert dms and list(with_bot.targets(created)) == dms
    assert list(webhook_only.targets(created)) == []
    assert list(with_bot.targets(Change("reminder", "r", None, lambda: people))) == []
    no_dms = SlackChannel(SlackConfig(bot_token="xoxb-1"))
    assert list(no_dms.targets(created)) == []
    assert list(no_dms.targets(Change("escalation", "r", None, lambda: people))) == dms


def test_prefect_is_told_only_of_the_end_of_a_prefect_flow_runs_request(
    make_request: Any,
) -> None:
    prefect = PrefectChannel(PrefectConfig(api_url="http://prefect:4200/api"))
    run = str(uuid.uuid4())

    def of(requester: Requester, status: Status = Status.PENDING) -> ApprovalRequest:
        req: ApprovalRequest = make_request()
        return req.model_copy(update={"requester": requester, "status": status})

    flow_run = Requester(orchestrator="prefect", job="j", run_id=run)
    assert prefect.accept("prefect") is None  # never a rule's target
    ended = of(flow_run, Status.APPROVED)
    assert list(prefect.targets(Change("request.approved", "r", ended))) == [f"prefect:{run}"]
    assert list(prefect.targets(Change("request.created", "r", of(flow_run)))) == []
    assert list(prefect.targets(Change("decision.recorded", "r", of(flow_run)))) == []
    assert list(prefect.targets(Change("reminder", "r", None))) == []
    for requester in (
        Requester(orchestrator="prefect", job="j", run_id="manual-7"),  # not a flow run id
        Requester(orchestrator="airflow", job="j", run_id=run),
    ):
        denied = of(requester, Status.DENIED)
        assert list(prefect.targets(Change("request.denied", "r", denied))) == []


class Broken(Channel):
    """A channel of one's own with a bug."""

    kind = "broken"

    def targets(self, change: Change) -> list[str]:
        return ["broken"] if change.event == "request.created" else []

    def send(self, delivery: Delivery) -> Mapping[str, Any]:
        raise RuntimeError("a bug, with a secret-free message")


def test_a_channel_that_fails_unexpectedly_is_retried_not_wedged(sqlite_store: Store) -> None:
    dispatcher = _dispatcher(sqlite_store, Channels([Broken(ChannelConfig())]))
    try:
        request = _open(sqlite_store)
        assert dispatcher.run_once() == 1
    finally:
        dispatcher.stop()
    (row,) = OutboxTable(sqlite_store).rows(str(request.id))
    assert (row["status"], row["attempts"]) == ("pending", 1)  # due again after the backoff
    assert row["last_error"] == "broken: RuntimeError"
