"""What Slack shows of a request: Block Kit messages, the deny modal, one-line follow-ups.

Pure builders, no I/O, over :class:`~sluicegate.notify.view.RequestView`, built with
``slack_sdk.models`` (its blocks and views check Block Kit's documented limits as they are
serialised) and returned as the JSON dicts Slack's Web API and incoming webhooks take:

- :func:`slack_message`: ``chat.postMessage`` / ``chat.update`` / incoming-webhook arguments,
  with Approve/Deny buttons (bot token) or the review page's link (incoming webhook);
- :func:`slack_deny_modal`: the ``views.open`` view asking a denying reviewer for a comment;
- :func:`slack_ephemeral`: a ``response_url`` answer only the clicking reviewer sees;
- :func:`followup_text`: one sentence for the channel when a request ends or is reminded.

Escaping. Summaries, context, dataset names, comments and requester fields are written by
whoever wrote the pipeline (or by a reviewer): they are untrusted, and shown as text only.
``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;`` and ``&gt;`` (the only control characters of
Slack's markup), so untrusted text cannot form ``<!channel>``, ``<@U123>``, ``<#C123>`` or
``<url|label>``; every text object holding such text sets ``verbatim: true``, so Slack does not
auto-link the URLs, channel names or mentions it may contain either. Untrusted text never goes
into a ``plain_text`` object (headers, buttons and dialog titles hold our own words) and never
sits inside our own ``*bold*`` markers. Slack has no escape for ``*``, ``_``, ``~`` or
backticks: untrusted text may style itself, never anything else.

Lengths are capped to Slack's limits (50 blocks, section text 3000, fields 2000, header 150,
button text 75, fallback text 4000), counted as :mod:`sluicegate.notify.text` counts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluicegate.model import Verdict
from sluicegate.notify.text import (
    LINE_BREAKS,
    clip,
    dataset_text,
    decision_text,
    more,
    one_line,
    pack,
    units,
)
from sluicegate.notify.view import RequestView, check_event

if TYPE_CHECKING:
    from slack_sdk.models import blocks as bk

# slack_sdk's models are imported where they are used: importing them imports slack_sdk's Web
# API client too, about a fifth of a CPU-second that a server starting without Slack (whose
# interaction routes import this module for its ids) need not pay.

__all__ = [
    "APPROVE_ACTION_ID",
    "DENY_ACTION_ID",
    "DENY_MODAL_CALLBACK_ID",
    "REVIEW_PAGE_ACTION_ID",
    "escape_slack",
    "followup_text",
    "slack_deny_modal",
    "slack_ephemeral",
    "slack_message",
]

#: ``action_id`` of the Approve button; its ``value`` is the request id.
APPROVE_ACTION_ID = "sluicegate_approve"
#: ``action_id`` of the Deny button; its ``value`` is the request id.
DENY_ACTION_ID = "sluicegate_deny"
#: ``action_id`` of the "Review page" link button (Slack still posts a block_actions for it).
REVIEW_PAGE_ACTION_ID = "sluicegate_review_page"
#: ``callback_id`` of the modal asking for a deny comment.
DENY_MODAL_CALLBACK_ID = "sluicegate_deny_comment"

# Slack's documented limits (Block Kit reference, chat.postMessage).
_BLOCKS = 50
_SECTION = 3000
_FIELD = 2000
_FIELDS = 10
_HEADER = 150
_BUTTON = 75
_FALLBACK = 4000
_METADATA = 3000
_INPUT_MAX = 3000


def escape_slack(text: str) -> str:
    """``text`` made inert for Slack mrkdwn: ``&``, ``<``, ``>`` as HTML entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return clip(text, limit, escape_slack)


def _plain_safe(text: str) -> str:
    # For the few untrusted-ish names (reviewer ids, the validated kind) that land in plain
    # text objects: whether a client decodes entities there is not documented, so the control
    # characters are replaced rather than escaped.
    return LINE_BREAKS.sub(" ", text).replace("<", "\u2039").replace(">", "\u203a")


def _link(url: str, label: str) -> str:
    # Inside <url|label> the URL must hold no "|" and no raw control characters.
    return f"<{escape_slack(url).replace('|', '%7C')}|{label}>"


def _mrkdwn(text: str) -> bk.MarkdownTextObject:
    from slack_sdk.models import blocks as bk

    return bk.MarkdownTextObject(text=text, verbatim=True)


def _plain(text: str, limit: int) -> bk.PlainTextObject:
    from slack_sdk.models import blocks as bk

    return bk.PlainTextObject(text=clip(_plain_safe(text), limit, str), emoji=True)


def _section(block_id: str, text: str) -> bk.SectionBlock:
    from slack_sdk.models import blocks as bk

    return bk.SectionBlock(block_id=block_id, text=_mrkdwn(text))


def _status_text(view: RequestView) -> str:
    if view.pending:
        return f"*Status:* pending · {view.progress} · {view.time_left}"
    return f"*Status:* {_clip(view.outcome, 1000)} · {view.progress}"


def _clip_lines(text: str, limit: int) -> str:
    # Already escaped text: cut at a line break so no entity is split.
    if units(text) <= limit:
        return text
    return pack(text.split("\n"), limit, lambda n: "…")


def _facts(view: RequestView) -> bk.SectionBlock:
    from slack_sdk.models import blocks as bk

    fields = [f"*Action*\n{_clip(view.kind, 100)}"]
    if view.environment:
        fields[0] += f" in {_clip(view.environment, 100)}"
    fields.append(f"*Rule*\n{_clip(view.rule_label, 500)}")
    requester = "\n".join(
        f"{label}: {_clip(value, 300)}" for _, label, value in view.requester if value
    )
    fields.append(f"*Requester*\n{_clip_lines(requester or '(unknown)', _FIELD - 20)}")
    fields.append(f"*Approvals*\n{view.progress}")
    fields.append(f"*Time left*\n{view.time_left}" if view.pending else f"*Ended*\n{view.status}")
    if view.destination:
        fields.append(f"*Destination*\n{_clip(view.destination, _FIELD - 20)}")
    if view.eligible and view.pending:
        fields.append(f"*May decide*\n{_clip(', '.join(view.eligible), _FIELD - 20)}")
    return bk.SectionBlock(
        block_id="sluicegate_facts", fields=[_mrkdwn(f) for f in fields[:_FIELDS]]
    )


def slack_message(view: RequestView, *, buttons: bool) -> dict[str, Any]:
    """``{"text", "blocks"}``: the arguments of ``chat.postMessage`` / ``chat.update``, or the
    body of an incoming webhook.

    While the request is pending, ``buttons=True`` (a bot token: interactivity) adds Approve
    (with a confirm dialog) and Deny buttons whose ``value`` is the request id, plus a
    "Review page" link button; ``buttons=False`` (an incoming webhook: no interactivity) adds
    the review page's link, where the reviewer signs in to decide (never a reviewer's signed
    link: see "Identity" in :mod:`sluicegate.notify.channels`). Once the request has ended
    there are neither: the message says how it ended, and who decided. Block ids are stable,
    so ``chat.update`` replaces each block in place.
    """
    from slack_sdk.models import blocks as bk

    blocks: list[bk.Block] = [
        bk.HeaderBlock(block_id="sluicegate_header", text=_plain(view.title, _HEADER)),
        _section("sluicegate_summary", _clip(view.summary or "(no summary given)", _SECTION)),
        _facts(view),
    ]
    if view.datasets:
        lines = [f"• {d.role}: {dataset_text(d, escape_slack)}" for d in view.datasets]
        text = pack(["*Datasets*", *lines], _SECTION, more("datasets"))
        blocks.append(_section("sluicegate_datasets", text))

    blocks.append(_section("sluicegate_status", _status_text(view)))

    if view.decisions:
        lines = [f"• {decision_text(d, escape_slack)}" for d in view.decisions]
        title = "*Decisions so far*" if view.pending else "*Decisions*"
        text = pack([title, *lines], _SECTION, more("decisions"))
        blocks.append(_section("sluicegate_decisions", text))

    footer = [f"Request {view.request_id}"]
    if view.policy_note:
        footer.append(_clip(view.policy_note, 1000))
    if not view.pending:
        footer.append(_link(view.review_url, "View the record"))

    if view.pending and buttons:
        blocks.append(_actions(view))
    elif view.pending:
        blocks.append(_section("sluicegate_review", _review_text(view)))

    blocks.append(
        bk.ContextBlock(block_id="sluicegate_footer", elements=[_mrkdwn(" · ".join(footer))])
    )
    return {"text": _fallback(view), "blocks": [b.to_dict() for b in blocks[:_BLOCKS]]}


def _actions(view: RequestView) -> bk.ActionsBlock:
    from slack_sdk.models import blocks as bk

    confirm_text = (
        f"You approve this {view.kind} as approval {view.approvals + 1} of "
        f"{view.required_approvals}. Your name and the time are recorded in the audit log."
    )
    approve = bk.ButtonElement(
        action_id=APPROVE_ACTION_ID,
        text=_plain("Approve", _BUTTON),
        style="primary",
        value=view.request_id,
        confirm=bk.ConfirmObject(
            title=_plain("Approve this request?", 100),
            text=_plain(confirm_text, 300),
            confirm=_plain("Approve", 30),
            deny=_plain("Cancel", 30),
            style="primary",
        ),
    )
    deny = bk.ButtonElement(
        action_id=DENY_ACTION_ID,
        text=_plain("Deny", _BUTTON),
        style="danger",
        value=view.request_id,
    )
    page = bk.ButtonElement(
        action_id=REVIEW_PAGE_ACTION_ID,
        text=_plain("Review page", _BUTTON),
        url=view.review_url,
    )
    return bk.ActionsBlock(block_id="sluicegate_actions", elements=[approve, deny, page])


def _review_text(view: RequestView) -> str:
    """Where to decide without buttons: the review page, for everyone alike."""
    page = _link(view.review_url, "Open the review page")
    return (
        f"*Decide on the review page:* {page}. Sign in there as yourself (with your review "
        "token); this message is the same for everyone who reads it and proves no one's "
        "identity."
    )


def _fallback(view: RequestView) -> str:
    """The notification text (and what screen readers say): one escaped sentence."""
    if view.pending:
        lead = f"Approval needed for {view.kind} ({view.progress})"
    else:
        lead = f"{view.outcome[:1].upper()}{view.outcome[1:]} — {view.kind}"
    lead = _clip(lead, 1500)
    tail = f" — {escape_slack(view.review_url)}"
    room = _FALLBACK - units(lead) - 2 - units(tail)
    return f"{lead}: {_clip(one_line(view.summary or '(no summary given)'), room)}{tail}"


def slack_deny_modal(view: RequestView, *, private_metadata: str) -> dict[str, Any]:
    """The ``views.open`` view asking a denying reviewer why.

    Its one input is ``block_id`` ``comment`` / ``action_id`` ``comment``, so the submission
    carries ``view.state.values.comment.comment.value``. ``private_metadata`` (at most 3000
    characters) comes back unchanged with the submission.
    """
    from slack_sdk.models import blocks as bk
    from slack_sdk.models import views

    if len(private_metadata) > _METADATA:
        raise ValueError(
            f"private_metadata is {len(private_metadata)} characters; Slack keeps at most "
            f"{_METADATA}"
        )
    note = "Your comment is recorded in the audit log and shown to the requester."
    if view.comment_on_deny:
        note = "The policy asks for a comment when denying. " + note
    comment = bk.InputBlock(
        block_id="comment",
        optional=False,
        label=_plain("Why do you deny it?", 2000),
        element=bk.PlainTextInputElement(
            action_id="comment",
            multiline=True,
            min_length=1,
            max_length=_INPUT_MAX,
            placeholder=_plain("What should the requester change?", 150),
        ),
    )
    modal = views.View(
        type="modal",
        callback_id=DENY_MODAL_CALLBACK_ID,
        private_metadata=private_metadata,
        title=_plain("Deny request", 24),
        submit=_plain("Deny", 24),
        close=_plain("Cancel", 24),
        blocks=[
            _section(
                "sluicegate_summary",
                f"*You are denying:*\n{_clip(view.summary or '(no summary given)', 2500)}",
            ),
            bk.ContextBlock(
                block_id="sluicegate_footer",
                elements=[_mrkdwn(f"Request {view.request_id} · {view.progress}. {note}")],
            ),
            comment,
        ],
    )
    out: dict[str, Any] = modal.to_dict()
    return out


def slack_ephemeral(text: str) -> dict[str, Any]:
    """A ``response_url`` body that only the clicking user sees, leaving the message as is."""
    return {"response_type": "ephemeral", "replace_original": False, "text": _clip(text, _FALLBACK)}


def followup_text(view: RequestView, *, event: str) -> str:
    """One sentence for the channel about ``event``, escaped for Slack mrkdwn.

    For example ``Approved by alice, bob: Export customers to the partner bucket (request
    0193…)``.
    """
    check_event(event)
    if event == "request.approved":
        who = ", ".join(view.approvers)
        lead = f"Approved by {who}" if who else "Approved at its deadline (on timeout: allow)"
    elif event == "request.denied":
        who = ", ".join(view.deniers)
        lead = f"Denied by {who}" if who else "Denied"
        comments = [d.comment for d in view.decisions if d.verdict == "deny" and d.comment]
        if comments:
            lead += f" (“{one_line(comments[-1])[:300]}”)"
    elif event == "request.expired":
        lead = f"Expired without a decision ({view.progress}; on timeout: {view.on_timeout})"
    elif event == "request.cancelled":
        lead = "Cancelled by the requester"
    elif event == "decision.recorded":
        last = view.decisions[-1] if view.decisions else None
        if last is None:
            lead = f"Decision recorded ({view.progress})"
        else:
            verb = "approved" if last.verdict == Verdict.APPROVE.value else "denied"
            lead = f"{last.reviewer} {verb} ({view.progress})"
    elif event == "reminder":
        lead = f"Reminder: still waiting for approval ({view.progress}, {view.time_left_short})"
    elif event == "escalation":
        lead = f"Escalation: no decision yet ({view.progress}, {view.time_left_short})"
    else:  # request.created
        lead = f"Approval needed for {view.kind} ({view.progress})"
    summary = one_line(view.summary) or f"a {view.kind} action"
    return f"{_clip(lead, 2000)}: {_clip(summary, 300)} (request {view.request_id})"
