"""What reviewers see in each channel: Slack Block Kit, a Teams card, a webhook body, follow-ups.

Every builder is checked as a reviewer would meet it: pending (buttons, or the review page's
link) versus ended (neither), no reviewer's signed link in any message a channel reads, hostile
text inert in every channel, and each service's limits respected with
input far past them (a 100 KB summary, 200 datasets).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from sluicegate.model import (
    Action,
    ApprovalRequest,
    Asset,
    Channel,
    ClassificationSource,
    Decision,
    LineageHop,
    Requester,
    Status,
    Verdict,
)
from sluicegate.notify.channels.slack_blocks import (
    followup_text,
    slack_deny_modal,
    slack_ephemeral,
    slack_message,
)
from sluicegate.notify.channels.teams import escape_teams, teams_card
from sluicegate.notify.channels.webhook import webhook_body
from sluicegate.notify.view import EVENTS, RequestView
from sluicegate.policy import load_policy
from tests.core.support.fakechat import block_kit_problems, view_problems
from tests.core.support.paths import ROOT

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
SERVER = "https://sluicegate.example.com"
HOSTILE = "<!channel> <https://evil|click>"
#: Every kind of markup a hostile pipeline or reviewer might try, in one string.
NASTY = (
    "<!channel> <!here> <@U0ADMIN> <#C0GENERAL> <https://evil|click> "
    "[Approve here](https://evil) **urgent** _now_ `code` ~x~ &lt;b&gt; "
    "{{DATE(2026-01-01T00:00:00Z)}}"
)
CUSTOMERS = Asset(
    namespace="postgres://prod:5432", name="crm.public.customers", classifications=("pii",)
)
BUCKET = Asset(namespace="s3://partner-share", name="exports/customers.csv")


def make_request(
    *,
    summary: str = "Export customers to the partner bucket",
    inputs: tuple[Asset, ...] = (CUSTOMERS,),
    outputs: tuple[Asset, ...] = (BUCKET,),
    requester: Requester | None = None,
    decisions: tuple[Decision, ...] = (),
    status: Status = Status.PENDING,
    approvals: int = 2,
    classifications: dict[str, tuple[ClassificationSource, ...]] | None = None,
    timeout: timedelta | None = timedelta(hours=24),
) -> ApprovalRequest:
    action = Action(
        kind="export",
        summary=summary,
        inputs=inputs,
        outputs=outputs,
        destination="s3://partner-share/exports/customers.csv",
        context={"rows": 120000},
    )
    req = ApprovalRequest.open(
        idempotency_key="airflow:export_customers:manual__2026-11-25:publish:0",
        action=action,
        requester=requester
        or Requester(
            orchestrator="airflow",
            job="export_customers.publish",
            run_id="manual__2026-11-25",
            owner="carol",
            triggered_by="dave",
        ),
        rule="pii-export",
        required_approvals=approvals,
        timeout=timeout,
        comment_on_deny=True,
        now=NOW - timedelta(hours=1),
        classifications=classifications,
    )
    decided = tuple(
        d.model_copy(update={"fingerprint": req.fingerprint}) if not d.fingerprint else d
        for d in decisions
    )
    return req.model_copy(update={"decisions": decided, "status": status})


def decision(reviewer: str, verdict: Verdict, comment: str = "", minutes: int = 30) -> Decision:
    return Decision(
        reviewer=reviewer,
        verdict=verdict,
        comment=comment,
        channel=Channel.SLACK,
        fingerprint="sha256:x",
        decided_at=NOW - timedelta(minutes=minutes),
    )


def view_of(req: ApprovalRequest, **over: Any) -> RequestView:
    return RequestView.of(
        req,
        review_url=f"{SERVER}/r/{req.id}",
        now=over.pop("now", NOW),
        eligible=over.pop("eligible", ("alice", "bob", "erin")),
        policy_note=over.pop("policy_note", "pii-export: 2 approvals from data-stewards"),
    )


def names_a_reviewer(message: dict[str, Any]) -> list[str]:
    """Anything in ``message`` that would identify a reviewer to the page: a link token, or
    a link or button offered to one reviewer by name."""
    text = json.dumps(message)
    found = re.findall(r"[?&](?:t|token)=[^\s\"|>&]+", text)
    return found + re.findall(r"(?:Review as|Approve or deny as) [^\"|<>]+", text)


def strings(value: Any) -> Iterator[str]:
    """Every string anywhere in a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def text_objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every Slack text object (``{"type": "mrkdwn"|"plain_text", "text": ...}``)."""
    if isinstance(value, dict):
        if value.get("type") in ("mrkdwn", "plain_text") and "text" in value:
            yield value
        for item in value.values():
            yield from text_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from text_objects(item)


def blocks_of(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in message["blocks"] if b["type"] == kind]


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------------------------
# The view


def test_view_holds_every_fact_of_the_request() -> None:
    lineage: dict[str, tuple[ClassificationSource, ...]] = {
        str(CUSTOMERS): (
            ClassificationSource(classification="pii", source="given by the pipeline"),
            ClassificationSource(
                classification="restricted",
                source="classify rule on crm::raw, through lineage",
                path=(LineageHop(namespace="crm", name="raw", job="etl::load"),),
            ),
        )
    }
    req = make_request(
        decisions=(decision("alice", Verdict.APPROVE, "fine by me"),), classifications=lineage
    )
    view = view_of(req)

    assert view.request_id == str(req.id)
    assert view.status == "pending" and view.pending
    assert view.summary == "Export customers to the partner bucket"
    assert view.kind == "export"
    assert view.destination == "s3://partner-share/exports/customers.csv"
    assert [(d.role, d.qualified) for d in view.datasets] == [
        ("input", "postgres://prod:5432::crm.public.customers"),
        ("output", "s3://partner-share::exports/customers.csv"),
    ]
    # The server's findings (lineage included) win over the pipeline's own labels...
    assert view.datasets[0].classifications == (
        ("pii", "given by the pipeline", ""),
        (
            "restricted",
            "classify rule on crm::raw, through lineage",
            "crm::raw (job etl::load) → postgres://prod:5432::crm.public.customers",
        ),
    )
    # ...and a dataset the server did not list keeps its own (here: none).
    assert view.datasets[1].classifications == ()
    assert {key: value for key, _, value in view.requester} == {
        "orchestrator": "airflow",
        "job": "export_customers.publish",
        "run_id": "manual__2026-11-25",
        "step": "",
        "owner": "carol",
        "triggered_by": "dave",
        "principal": "",
    }
    assert view.rule == view.rule_label == "pii-export"
    assert (view.required_approvals, view.approvals, view.denials) == (2, 1, 0)
    assert view.progress == "1 of 2 approvals"
    assert [(d.reviewer, d.verdict, d.comment) for d in view.decisions] == [
        ("alice", "approve", "fine by me")
    ]
    assert view.expires_at == NOW + timedelta(hours=23)
    assert view.time_left == "23 h 0 min left (expires 2026-11-26 11:00 UTC)"
    assert view.time_left_short == "23 h 0 min left"
    assert view.review_url == f"{SERVER}/r/{req.id}"
    assert view.eligible == ("alice", "bob", "erin")
    assert view.comment_on_deny is True
    assert view.fingerprint == req.fingerprint


def test_view_falls_back_to_the_assets_own_classifications() -> None:
    view = view_of(make_request())
    assert view.datasets[0].classifications == (("pii", "given by the pipeline", ""),)


def test_a_request_stored_before_the_gate_recorded_findings_asks_the_policy() -> None:
    # The same answer the review page gives: the pipeline's labels plus the classify rules.
    policy = load_policy(ROOT / "examples" / "policy.yaml")
    view = RequestView.of(make_request(), review_url=SERVER, now=NOW, classifier=policy)
    customers, bucket = view.datasets
    assert [(c.classification, c.source) for c in customers.classifications] == [
        ("pii", "given by the pipeline"),
        ("prod", "classify[1] 'postgres://prod:5432::*'"),
    ]
    assert bucket.classifications == ()
    assert "prod (classify[1]" in json.dumps(slack_message(view, buttons=True))


def test_a_pending_request_past_its_deadline_is_not_pending_for_reviewers() -> None:
    view = view_of(make_request(), now=NOW + timedelta(days=2))
    assert view.status == "pending" and not view.pending
    assert view.time_left.startswith("expired at ")
    message = slack_message(view, buttons=True)
    assert not blocks_of(message, "actions")


def test_progress_counts_denials_too() -> None:
    req = make_request(
        approvals=2,
        decisions=(decision("alice", Verdict.APPROVE), decision("bob", Verdict.DENY, "no")),
    )
    assert view_of(req).progress == "1 of 2 approvals, 1 of 1 denial"


# --------------------------------------------------------------------------------------------
# Slack


def test_slack_message_while_pending_has_approve_and_deny_buttons() -> None:
    req = make_request(decisions=(decision("alice", Verdict.APPROVE, "ok"),))
    view = view_of(req)
    message = slack_message(view, buttons=True)

    assert set(message) == {"text", "blocks"}
    assert block_kit_problems(message["blocks"]) == []
    assert message["blocks"][0]["type"] == "header"
    assert message["blocks"][0]["text"]["text"] == "Approval needed: export"

    (actions,) = blocks_of(message, "actions")
    assert actions["block_id"] == "sluicegate_actions"
    approve, deny, page = actions["elements"]
    assert approve["action_id"] == "sluicegate_approve"
    assert approve["value"] == str(req.id)
    assert approve["style"] == "primary"
    assert approve["confirm"]["confirm"]["text"] == "Approve"
    assert "approval 2 of 2" in approve["confirm"]["text"]["text"]
    assert deny["action_id"] == "sluicegate_deny"
    assert deny["value"] == str(req.id)
    assert deny["style"] == "danger"
    assert "confirm" not in deny
    assert page["url"] == f"{SERVER}/r/{req.id}" and "value" not in page

    text = json.dumps(message)
    for fact in (
        "Export customers to the partner bucket",
        "pii-export",
        "1 of 2 approvals",
        "airflow",
        "export_customers.publish",
        "carol",
        "dave",
        "postgres://prod:5432::crm.public.customers",
        "pii (given by the pipeline)",
        "s3://partner-share/exports/customers.csv",
        "23 h 0 min left",
        "alice approved",
        "ok",
    ):
        assert fact in text, fact
    assert message["text"].startswith("Approval needed for export (1 of 2 approvals): Export")


def test_slack_block_ids_are_stable_across_updates() -> None:
    first = slack_message(view_of(make_request()), buttons=True)
    later = slack_message(
        view_of(make_request(decisions=(decision("alice", Verdict.APPROVE, "ok"),))),
        buttons=True,
    )
    ids = [b["block_id"] for b in first["blocks"]]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("sluicegate_") for i in ids)
    # The update adds the decisions block and keeps every other block under its id.
    assert [
        b["block_id"] for b in later["blocks"] if b["block_id"] != "sluicegate_decisions"
    ] == ids


def test_slack_message_for_an_incoming_webhook_points_everyone_to_the_review_page() -> None:
    """A channel reads it, the job's owner too: it carries the page's link and no identity."""
    view = view_of(make_request())
    message = slack_message(view, buttons=False)

    assert block_kit_problems(message["blocks"]) == []
    assert not blocks_of(message, "actions")
    (review,) = [b for b in message["blocks"] if b["block_id"] == "sluicegate_review"]
    text = review["text"]["text"]
    assert f"<{SERVER}/r/{view.request_id}|Open the review page>" in text
    assert "Sign in there as yourself" in text
    assert names_a_reviewer(message) == []
    urls = re.findall(r"https?://[^\s\"|<>]+", json.dumps(message))
    assert set(urls) == {f"{SERVER}/r/{view.request_id}"}
    (facts,) = [b for b in message["blocks"] if b["block_id"] == "sluicegate_facts"]
    assert "*May decide*\nalice, bob, erin" in [f["text"] for f in facts["fields"]]  # not links


@pytest.mark.parametrize(
    ("status", "decisions", "says"),
    [
        (
            Status.APPROVED,
            (decision("alice", Verdict.APPROVE, "ok", 40), decision("bob", Verdict.APPROVE)),
            "approved by alice, bob",
        ),
        (Status.DENIED, (decision("erin", Verdict.DENY, "too many rows"),), "denied by erin"),
        (Status.EXPIRED, (), "expired without a decision"),
        (Status.CANCELLED, (), "cancelled by the requester"),
    ],
)
@pytest.mark.parametrize("buttons", [True, False])
def test_slack_message_once_ended_has_no_buttons_and_no_links(
    status: Status, decisions: tuple[Decision, ...], says: str, buttons: bool
) -> None:
    view = view_of(make_request(status=status, decisions=decisions))
    message = slack_message(view, buttons=buttons)

    assert block_kit_problems(message["blocks"]) == []
    assert not blocks_of(message, "actions")
    text = json.dumps(message)
    assert "sluicegate_approve" not in text and "sluicegate_deny" not in text
    assert "sluicegate_review" not in text and names_a_reviewer(message) == []
    assert message["blocks"][0]["text"]["text"] == f"{status.value.capitalize()}: export"
    status_block = next(b for b in message["blocks"] if b["block_id"] == "sluicegate_status")
    assert says in status_block["text"]["text"]
    assert message["text"].lower().startswith(says)
    for d in decisions:
        assert d.comment in text


def test_slack_summary_with_mentions_and_links_comes_out_inert() -> None:
    view = view_of(make_request(summary=HOSTILE))
    message = slack_message(view, buttons=True)
    summary = next(b for b in message["blocks"] if b["block_id"] == "sluicegate_summary")
    assert summary["text"] == {
        "type": "mrkdwn",
        "text": "&lt;!channel&gt; &lt;https://evil|click&gt;",
        "verbatim": True,
    }
    assert "&lt;!channel&gt; &lt;https://evil|click&gt;" in message["text"]
    assert "<!channel>" not in json.dumps(message)


def test_slack_hostile_text_is_inert_everywhere_it_appears() -> None:
    """Summary, dataset names, comments, requester fields, reviewer ids: no control sequence."""
    evil = Asset(namespace="s3://x", name=NASTY, classifications=("pii",))
    req = make_request(
        summary=NASTY,
        inputs=(CUSTOMERS, evil),
        requester=Requester(
            orchestrator="airflow", job=NASTY, run_id=NASTY, owner=NASTY, triggered_by=NASTY
        ),
        decisions=(decision("alice", Verdict.APPROVE, NASTY), decision(NASTY, Verdict.APPROVE)),
    )
    view = view_of(req, eligible=(NASTY,), policy_note=NASTY)
    ours = re.compile(r"<https://sluicegate\.example\.com/[^|<>]*\|[^<>]*>")
    for buttons in (True, False):
        message = slack_message(view, buttons=buttons)
        assert block_kit_problems(message["blocks"]) == []
        texts = [o["text"] for o in text_objects(message["blocks"])] + [message["text"]]
        for text in texts:
            # The only angle brackets left are our own links to our own server.
            assert "<" not in ours.sub("", text) and ">" not in ours.sub("", text), text
            assert not re.search(r"&(?!amp;|lt;|gt;)", text), text
        for obj in text_objects(message["blocks"]):
            if obj["type"] == "mrkdwn":
                assert obj["verbatim"] is True
        assert "&amp;lt;b&amp;gt;" in json.dumps(message)  # an entity typed in stays text

    for event in EVENTS:
        sentence = followup_text(view, event=event)
        assert "<" not in sentence and ">" not in sentence


def test_slack_limits_hold_for_input_far_past_them() -> None:
    datasets = tuple(
        Asset(
            namespace=f"postgres://db{i}:5432", name="t" * 900 + f"_{i}", classifications=("pii",)
        )
        for i in range(200)
    )
    decisions = tuple(
        decision(f"reviewer{i:02d}" + "r" * 200, Verdict.APPROVE, "&<>" * 1300, i)
        for i in range(60)
    )
    req = make_request(inputs=datasets, decisions=decisions, approvals=100)
    view = dataclasses.replace(
        view_of(req, eligible=tuple(f"reviewer{i}" for i in range(300))),
        summary="A&<" * 34_000,  # 100 KB, past the model's own limit: the builder must cope
        rule="r" * 5000,
        policy_note="n" * 5000,
    )
    for message in (slack_message(view, buttons=True), slack_message(view, buttons=False)):
        blocks = message["blocks"]
        assert block_kit_problems(blocks) == []
        assert len(blocks) <= 50
        assert units(message["text"]) <= 4000
        assert blocks[0]["type"] == "header" and units(blocks[0]["text"]["text"]) <= 150
        for block in blocks:
            if block["type"] == "section":
                if "text" in block:
                    assert units(block["text"]["text"]) <= 3000
                assert len(block.get("fields", [])) <= 10
                for f in block.get("fields", []):
                    assert units(f["text"]) <= 2000
        for obj in text_objects(blocks):
            assert not re.search(r"&(?!amp;|lt;|gt;)", obj["text"]), "an entity was cut in two"
        datasets_block = next(b for b in blocks if b["block_id"] == "sluicegate_datasets")
        assert re.search(
            r"and \d+ more datasets on the review page", datasets_block["text"]["text"]
        )
        json.dumps(message)
        assert names_a_reviewer(message) == []


def test_slack_button_texts_are_within_limits() -> None:
    message = slack_message(view_of(make_request()), buttons=True)
    (actions,) = blocks_of(message, "actions")
    for element in actions["elements"]:
        assert 0 < units(element["text"]["text"]) <= 75


def test_slack_deny_modal() -> None:
    view = view_of(make_request(summary=HOSTILE))
    metadata = json.dumps({"request_id": view.request_id, "reviewer": "U0ALICE01"})
    modal = slack_deny_modal(view, private_metadata=metadata)

    assert view_problems(modal) == []
    assert modal["type"] == "modal"
    assert modal["callback_id"] == "sluicegate_deny_comment"
    assert modal["private_metadata"] == metadata
    assert modal["submit"]["text"] == "Deny"
    (field,) = [b for b in modal["blocks"] if b["type"] == "input"]
    assert field["block_id"] == "comment"
    assert field["optional"] is False
    assert field["element"]["type"] == "plain_text_input"
    assert field["element"]["action_id"] == "comment"
    assert field["element"]["multiline"] is True
    text = json.dumps(modal)
    assert "&lt;!channel&gt; &lt;https://evil|click&gt;" in text and "<!channel>" not in text
    assert "The policy asks for a comment" in text


def test_slack_deny_modal_refuses_metadata_slack_would_drop() -> None:
    with pytest.raises(ValueError, match="private_metadata is 3001 characters"):
        slack_deny_modal(view_of(make_request()), private_metadata="x" * 3001)


def test_slack_ephemeral() -> None:
    assert slack_ephemeral("You approved <!channel> & co") == {
        "response_type": "ephemeral",
        "replace_original": False,
        "text": "You approved &lt;!channel&gt; &amp; co",
    }
    assert units(slack_ephemeral("x" * 10_000)["text"]) <= 4000


# --------------------------------------------------------------------------------------------
# Teams


def card_of(body: dict[str, Any]) -> dict[str, Any]:
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card: dict[str, Any] = attachment["content"]
    return card


def check_adaptive_card(card: dict[str, Any]) -> None:
    """The structure an Adaptive Card (1.4 / 1.5) must have, and what Teams' Workflows accept."""
    assert card["type"] == "AdaptiveCard"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["version"] in ("1.4", "1.5")
    assert isinstance(card["body"], list) and card["body"]
    for element in card["body"]:
        assert element["type"] in ("TextBlock", "FactSet", "ActionSet"), element
        if element["type"] == "TextBlock":
            assert isinstance(element["text"], str) and element["text"]
        elif element["type"] == "FactSet":
            assert element["facts"]
            for fact in element["facts"]:
                assert set(fact) == {"title", "value"}
                assert isinstance(fact["title"], str) and isinstance(fact["value"], str)
        else:
            for action in element["actions"]:
                assert action["type"] == "Action.OpenUrl" and action["url"].startswith("https://")
    assert card["actions"]
    for action in card["actions"]:
        assert action["type"] == "Action.OpenUrl"  # Workflows cannot carry interactive actions
        assert action["url"].startswith("https://") and action["title"]


def all_actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    nested = [a for e in card["body"] if e["type"] == "ActionSet" for a in e["actions"]]
    return list(card["actions"]) + nested


def test_teams_card_while_pending_points_everyone_to_the_review_page() -> None:
    """A channel reads the card, the job's owner too: the page's link, and no identity."""
    view = view_of(make_request(decisions=(decision("alice", Verdict.APPROVE, "ok"),)))
    body = teams_card(view)
    json.dumps(body)
    card = card_of(body)
    check_adaptive_card(card)

    assert [(a["title"], a["url"]) for a in all_actions(card)] == [
        ("Review page", f"{SERVER}/r/{view.request_id}"),
    ]
    assert names_a_reviewer(body) == []
    assert "sign in there as yourself" in json.dumps(card)
    facts = {
        f["title"]: f["value"] for e in card["body"] if e["type"] == "FactSet" for f in e["facts"]
    }
    assert facts["Approvals"] == "1 of 2 approvals"
    assert facts["Rule"] == "pii-export"
    assert facts["Owner"] == "carol"
    assert (
        facts["Input"] == "postgres://prod:5432::crm.public.customers — pii (given by the pipeline)"
    )
    assert facts["alice"].startswith("approved · 2026-11-25 11:30 UTC")


def test_teams_card_with_many_reviewers_names_them_but_links_only_the_page() -> None:
    view = view_of(make_request(), eligible=tuple(f"r{i}" for i in range(12)))
    card = card_of(teams_card(view))
    check_adaptive_card(card)
    assert [a["url"] for a in all_actions(card)] == [f"{SERVER}/r/{view.request_id}"]
    facts = {
        f["title"]: f["value"] for e in card["body"] if e["type"] == "FactSet" for f in e["facts"]
    }
    assert facts["May decide"] == ", ".join(f"r{i}" for i in range(12))


@pytest.mark.parametrize(
    "status", [Status.APPROVED, Status.DENIED, Status.EXPIRED, Status.CANCELLED]
)
def test_teams_card_once_ended_has_only_the_review_page(status: Status) -> None:
    view = view_of(make_request(status=status, decisions=(decision("bob", Verdict.APPROVE),)))
    card = card_of(teams_card(view))
    check_adaptive_card(card)
    assert [a["title"] for a in all_actions(card)] == ["Review page"]
    assert "token=" not in json.dumps(card)
    assert card["body"][0]["text"] == f"{status.value.capitalize()}: export"


def test_teams_hostile_text_cannot_make_links_or_formatting() -> None:
    evil = Asset(namespace="s3://x", name=NASTY)
    req = make_request(
        summary="- " + NASTY + "\n\n# heading",
        inputs=(evil,),
        requester=Requester(orchestrator="airflow", job=NASTY, owner=NASTY),
        decisions=(decision("alice", Verdict.APPROVE, NASTY),),
    )
    view = view_of(req, eligible=(NASTY,), policy_note=NASTY)
    card = card_of(teams_card(view))
    check_adaptive_card(card)
    texts = [e["text"] for e in card["body"] if e["type"] == "TextBlock"] + [
        v for e in card["body"] if e["type"] == "FactSet" for f in e["facts"] for v in f.values()
    ]
    ours = ("**Status:**", "**Datasets**", "**Decisions so far**", "**Decisions**")
    for text in texts:
        for label in ours:
            text = text.replace(label, "")
        for char in "[]<>*_`~\n\r":
            assert char not in text, (char, text)
        assert "{{" not in text
        assert "https://evil" not in text  # not even as a bare URL a client would auto-link
    summary = card["body"][1]["text"]
    assert summary.startswith("\u200b- ")  # a leading "- " stays text, not a list
    assert "Approve here" in summary and "urgent" in summary  # the words survive, as text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("[click](https://evil)", "\uff3bclick\uff3d(https:\u200b//evil)"),
        ("**bold** _it_", "\u2217\u2217bold\u2217\u2217 \u02cdit\u02cd"),
        ("<at>Admin</at>", "\uff1cat\uff1eAdmin\uff1c/at\uff1e"),
        ("`x` ~y~ a\\b", "\u02cbx\u02cb \u223cy\u223c a\u29f5b"),
        ("{{DATE(2026-01-01T00:00:00Z)}}", "{\u200b{DATE(2026-01-01T00:00:00Z)}}"),
        ("line\n\n- item\r\n1. two", "line - item 1. two"),
        ("1. first", "\u200b1. first"),
        ("see www.evil.io", "see www\u200b.evil.io"),
        ("plain text (with parentheses) & more", "plain text (with parentheses) & more"),
    ],
)
def test_escape_teams(raw: str, shown: str) -> None:
    assert escape_teams(raw) == shown


def test_teams_card_stays_under_the_message_size_limit() -> None:
    datasets = tuple(
        Asset(namespace="n" * 1000, name="\u4e2d" * 1000 + str(i), classifications=("pii",))
        for i in range(200)
    )
    decisions = tuple(decision(f"rev{i}", Verdict.APPROVE, "\u4e2d" * 4000, i) for i in range(50))
    req = make_request(inputs=datasets, decisions=decisions, approvals=100)
    view = dataclasses.replace(view_of(req), summary="\u4e2d" * 100_000)
    body = teams_card(view)
    assert len(json.dumps(body, ensure_ascii=False).encode()) <= 28 * 1024
    card = card_of(body)
    check_adaptive_card(card)
    assert "more datasets on the review page" in json.dumps(card, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Generic webhook and follow-ups


REQUEST_KEYS = {
    "id",
    "status",
    "pending",
    "outcome",
    "summary",
    "kind",
    "environment",
    "destination",
    "fingerprint",
    "rule",
    "required_approvals",
    "required_denials",
    "approvals",
    "denials",
    "comment_on_deny",
    "on_timeout",
    "created_at",
    "expires_at",
    "time_left",
    "requester",
    "datasets",
    "decisions",
    "eligible_reviewers",
    "policy_note",
}


def parse_utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    moment = datetime.fromisoformat(text[:-1] + "+00:00")
    assert moment.utcoffset() == timedelta(0)
    return moment


@pytest.mark.parametrize("event", EVENTS)
def test_webhook_body_has_stable_keys_and_utc_times(event: str) -> None:
    req = make_request(decisions=(decision("alice", Verdict.APPROVE, HOSTILE),))
    body = webhook_body(view_of(req), event=event)
    assert json.loads(json.dumps(body)) == body

    assert set(body) == {"version", "event", "generated_at", "review_url", "request"}
    assert body["event"] == event
    assert body["review_url"] == f"{SERVER}/r/{req.id}"
    assert parse_utc(body["generated_at"]) == NOW
    r = body["request"]
    assert set(r) == REQUEST_KEYS
    assert r["id"] == str(req.id) and r["status"] == "pending"
    assert parse_utc(r["created_at"]) == NOW - timedelta(hours=1)
    assert parse_utc(r["expires_at"]) == NOW + timedelta(hours=23)
    assert set(r["requester"]) == {
        "orchestrator",
        "job",
        "run_id",
        "step",
        "owner",
        "triggered_by",
        "principal",
    }
    assert r["requester"]["step"] is None and r["requester"]["owner"] == "carol"
    assert r["datasets"][0] == {
        "role": "input",
        "namespace": "postgres://prod:5432",
        "name": "crm.public.customers",
        "classifications": [{"classification": "pii", "source": "given by the pipeline"}],
    }
    (d,) = r["decisions"]
    assert set(d) == {"reviewer", "verdict", "comment", "channel", "decided_at"}
    assert d["comment"] == HOSTILE  # data, not markup: the receiver escapes for its own screen
    assert parse_utc(d["decided_at"]) == NOW - timedelta(minutes=30)
    assert r["eligible_reviewers"] == ["alice", "bob", "erin"]


def test_webhook_body_without_a_deadline() -> None:
    body = webhook_body(view_of(make_request(timeout=None)), event="request.created")
    assert body["request"]["expires_at"] is None
    assert body["request"]["time_left"] == "no deadline"


def test_unknown_events_are_refused() -> None:
    view = view_of(make_request())
    with pytest.raises(
        ValueError, match=re.escape("unknown notification event 'request.exploded'")
    ):
        webhook_body(view, event="request.exploded")
    with pytest.raises(ValueError, match=re.escape("request.created")):
        followup_text(view, event="nope")


def test_followup_sentences() -> None:
    approved = view_of(
        make_request(
            status=Status.APPROVED,
            decisions=(
                decision("alice", Verdict.APPROVE, minutes=40),
                decision("bob", Verdict.APPROVE),
            ),
        )
    )
    rid = approved.request_id
    assert followup_text(approved, event="request.approved") == (
        f"Approved by alice, bob: Export customers to the partner bucket (request {rid})"
    )
    denied = view_of(
        make_request(status=Status.DENIED, decisions=(decision("erin", Verdict.DENY, "too <big>"),))
    )
    assert followup_text(denied, event="request.denied") == (
        "Denied by erin (“too &lt;big&gt;”): Export customers to the partner bucket "
        f"(request {denied.request_id})"
    )
    pending = view_of(make_request(decisions=(decision("alice", Verdict.APPROVE),)))
    rid = pending.request_id
    assert followup_text(pending, event="decision.recorded") == (
        f"alice approved (1 of 2 approvals): Export customers to the partner bucket (request {rid})"
    )
    assert followup_text(pending, event="reminder").startswith(
        "Reminder: still waiting for approval (1 of 2 approvals, 23 h 0 min left): Export"
    )
    assert followup_text(pending, event="escalation").startswith("Escalation: no decision yet")
    assert followup_text(pending, event="request.created").startswith(
        "Approval needed for export (1 of 2 approvals): Export"
    )
    expired = view_of(make_request(status=Status.EXPIRED))
    assert followup_text(expired, event="request.expired").startswith(
        "Expired without a decision (0 of 2 approvals; on timeout: deny): Export"
    )
    cancelled = view_of(make_request(status=Status.CANCELLED))
    assert followup_text(cancelled, event="request.cancelled").startswith(
        "Cancelled by the requester"
    )


def test_followup_is_one_escaped_line_of_bounded_length() -> None:
    view = dataclasses.replace(view_of(make_request()), summary=("line\n" + HOSTILE) * 5000)
    for event in EVENTS:
        sentence = followup_text(view, event=event)
        assert "\n" not in sentence
        assert units(sentence) <= 4000
        assert "<!channel>" not in sentence
