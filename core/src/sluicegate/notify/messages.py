"""What each channel says about a request: Slack Block Kit, a Teams Adaptive Card, a JSON body.

Pure builders, no I/O. :meth:`MessageView.of` reads an :class:`~sluicegate.model.ApprovalRequest`
once into plain, formatted facts; each builder turns that view into one channel's document:

- :func:`slack_message`: ``chat.postMessage`` / ``chat.update`` / incoming-webhook arguments,
  with Approve/Deny buttons (bot token) or the review page's link (incoming webhook);
- :func:`slack_deny_modal`: the ``views.open`` view asking a denying reviewer for a comment;
- :func:`slack_ephemeral`: a ``response_url`` answer only the clicking reviewer sees;
- :func:`teams_card`: the body a Teams Workflows webhook accepts (an Adaptive Card whose only
  action is ``Action.OpenUrl`` to the review page: Workflows cannot carry interactive ones);
- :func:`webhook_body`: a plain JSON document for a generic receiver (paging, ticketing);
- :func:`followup_text`: one sentence for the channel when a request ends or is reminded.

Identity. A channel message is read by everyone in the channel, the job's owner included, so
no builder here puts a reviewer's signed link in one: a link that decides as alice, in a
message carol can read, would let carol decide as alice. Shared messages carry the review
page's plain link (``view.review_url``), where each reviewer proves who they are; Slack
buttons may stay, because Slack signs who clicked. Only a message one person reads (a Slack
direct message) may point at that person's own signed link, passed in as its ``review_url``.

Escaping. Summaries, context, dataset names, comments and requester fields are written by
whoever wrote the pipeline (or by a reviewer): they are untrusted, and shown as text only.

- Slack: ``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;`` and ``&gt;`` (the only control
  characters of Slack's markup), so untrusted text cannot form ``<!channel>``, ``<@U123>``,
  ``<#C123>`` or ``<url|label>``; every text object holding such text sets ``verbatim: true``,
  so Slack does not auto-link the URLs, channel names or mentions it may contain either.
  Untrusted text never goes into a ``plain_text`` object (headers, buttons and dialog titles
  hold our own words) and never sits inside our own ``*bold*`` markers. Slack has no escape
  for ``*``, ``_``, ``~`` or backticks: untrusted text may style itself, never anything else.
- Teams: Adaptive Card renderers disagree on backslash escapes (some show the backslash, some
  still apply the emphasis), so markup characters are replaced by look-alikes that no renderer
  parses: ``[ ]`` and ``< >`` become their fullwidth forms (U+FF3B, U+FF3D, U+FF1C, U+FF1E),
  ``*`` the asterisk operator (U+2217), ``_`` a modifier low macron (U+02CD), a backtick the
  modifier grave accent (U+02CB), ``~`` the tilde operator (U+223C), a backslash the reverse
  solidus operator (U+29F5); ``{{`` is split (no ``{{DATE()}}`` functions), bare
  ``https://`` and ``www.`` get a zero-width space so they are not auto-linked, line breaks
  become spaces and a leading list or heading marker is defused.
  Without ``[`` no Markdown link can form, so parentheses stay as they are.

Lengths are capped to each service's limits (Slack: 50 blocks, section text 3000, fields 2000,
header 150, button text 75, fallback text 4000; Teams: the card stays under 28 KB). Lengths
are counted in UTF-16 code units, never fewer than the characters a service counts; a cut text
ends with ``…`` and a cut list says how many more items the review page holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sluicegate.model import ApprovalRequest, Asset, Status, Verdict
from sluicegate.timefmt import span, time_left, when

__all__ = [
    "APPROVE_ACTION_ID",
    "DENY_ACTION_ID",
    "DENY_MODAL_CALLBACK_ID",
    "EVENTS",
    "REVIEW_PAGE_ACTION_ID",
    "DatasetLine",
    "DecisionLine",
    "MessageView",
    "escape_slack",
    "escape_teams",
    "followup_text",
    "slack_deny_modal",
    "slack_ephemeral",
    "slack_message",
    "teams_card",
    "webhook_body",
]

#: ``action_id`` of the Approve button; its ``value`` is the request id.
APPROVE_ACTION_ID = "sluicegate_approve"
#: ``action_id`` of the Deny button; its ``value`` is the request id.
DENY_ACTION_ID = "sluicegate_deny"
#: ``action_id`` of the "Review page" link button (Slack still posts a block_actions for it).
REVIEW_PAGE_ACTION_ID = "sluicegate_review_page"
#: ``callback_id`` of the modal asking for a deny comment.
DENY_MODAL_CALLBACK_ID = "sluicegate_deny_comment"

#: The events a notification can be about, as :func:`webhook_body` and
#: :func:`followup_text` name them.
EVENTS = (
    "request.created",
    "decision.recorded",
    "request.approved",
    "request.denied",
    "request.expired",
    "request.cancelled",
    "reminder",
    "escalation",
)

# Slack's documented limits (Block Kit reference, chat.postMessage).
_SLACK_BLOCKS = 50
_SLACK_SECTION = 3000
_SLACK_FIELD = 2000
_SLACK_FIELDS = 10
_SLACK_HEADER = 150
_SLACK_BUTTON = 75
_SLACK_FALLBACK = 4000
_SLACK_METADATA = 3000
_SLACK_INPUT_MAX = 3000
# A Teams message (the card included) must stay under 28 KB; keep a margin for the envelope.
_TEAMS_BYTES = 27 * 1024

_ELLIPSIS = "…"
_ZWSP = "\u200b"

# --------------------------------------------------------------------------------------------
# The view


@dataclass(frozen=True)
class DatasetLine:
    """One dataset of the action, as every channel shows it."""

    role: str  # "input" | "output"
    namespace: str
    name: str
    #: (classification, where it came from), sorted by classification.
    classifications: tuple[tuple[str, str], ...]

    @property
    def qualified(self) -> str:
        """``namespace::name``, the way Sluicegate names a dataset everywhere."""
        return f"{self.namespace}::{self.name}"


@dataclass(frozen=True)
class DecisionLine:
    """One reviewer's decision so far."""

    reviewer: str
    verdict: str  # "approve" | "deny"
    comment: str
    channel: str
    decided_at: datetime


@dataclass(frozen=True)
class MessageView:
    """What every channel says about one request, read once from the request.

    All times are timezone-aware UTC. ``requester`` holds ``(key, label, value)`` for each
    requester field (value ``""`` when the pipeline gave none), in a fixed order.
    """

    request_id: str
    status: str
    #: Still waiting and not past its deadline: the only state in which anyone may decide.
    pending: bool
    summary: str
    kind: str
    environment: str
    destination: str
    datasets: tuple[DatasetLine, ...]
    requester: tuple[tuple[str, str, str], ...]
    rule: str
    required_approvals: int
    required_denials: int
    approvals: int
    denials: int
    decisions: tuple[DecisionLine, ...]
    created_at: datetime
    expires_at: datetime | None
    time_left: str
    review_url: str
    eligible: tuple[str, ...]
    comment_on_deny: bool
    on_timeout: str
    fingerprint: str
    policy_note: str
    as_of: datetime

    @classmethod
    def of(
        cls,
        request: ApprovalRequest,
        *,
        review_url: str,
        now: datetime,
        eligible: Sequence[str] = (),
        policy_note: str = "",
    ) -> MessageView:
        """The view of ``request`` at ``now`` (a naive ``now`` is taken as UTC).

        Classifications are those the server found when the gate opened
        (``request.classifications``), else the dataset's own, "given by the pipeline".
        """
        now = _utc(now)
        datasets = tuple(
            DatasetLine(role, asset.namespace, asset.name, _classifications(request, asset))
            for role, assets in (
                ("input", request.action.inputs),
                ("output", request.action.outputs),
            )
            for asset in assets
        )
        r = request.requester
        requester = (
            ("orchestrator", "Orchestrator", r.orchestrator),
            ("job", "Job", r.job),
            ("run_id", "Run id", r.run_id),
            ("step", "Step", r.step),
            ("owner", "Owner", r.owner or ""),
            ("triggered_by", "Triggered by", r.triggered_by or ""),
            ("principal", "Principal", r.principal or ""),
        )
        decisions = tuple(
            DecisionLine(
                d.reviewer, d.verdict.value, d.comment, d.channel.value, _utc(d.decided_at)
            )
            for d in request.decisions
        )
        expires = _utc(request.expires_at) if request.expires_at is not None else None
        return cls(
            request_id=str(request.id),
            status=request.status.value,
            pending=request.status is Status.PENDING and not request.is_expired(now),
            summary=request.action.summary,
            kind=request.action.kind,
            environment=request.action.environment or "",
            destination=request.action.destination or "",
            datasets=datasets,
            requester=requester,
            rule=request.rule or "",
            required_approvals=request.required_approvals,
            required_denials=request.required_denials,
            approvals=request.approvals,
            denials=request.denials,
            decisions=decisions,
            created_at=_utc(request.created_at),
            expires_at=expires,
            time_left=time_left(request.status, expires, now),
            review_url=review_url,
            eligible=tuple(eligible),
            comment_on_deny=request.comment_on_deny,
            on_timeout=request.on_timeout,
            fingerprint=request.fingerprint,
            policy_note=policy_note,
            as_of=now,
        )

    @property
    def progress(self) -> str:
        """Quorum progress: ``1 of 2 approved``, and denials when there are any."""
        text = f"{self.approvals} of {self.required_approvals} approved"
        if self.denials:
            noun = "denial" if self.denials == 1 else "denials"
            text += f", {self.denials} {noun} (of {self.required_denials} that end it)"
        return text

    @property
    def time_left_short(self) -> str:
        """``3 h 5 min left``, ``no deadline``, ``expired``, ``ended``: for one-line texts."""
        if self.status != Status.PENDING.value:
            return "ended"
        if self.expires_at is None:
            return "no deadline"
        if self.as_of >= self.expires_at:
            return "past its deadline"
        return f"{span(self.expires_at - self.as_of)} left"

    @property
    def approvers(self) -> tuple[str, ...]:
        """Reviewers who approved, in the order they did."""
        return _distinct(d.reviewer for d in self.decisions if d.verdict == Verdict.APPROVE.value)

    @property
    def deniers(self) -> tuple[str, ...]:
        """Reviewers who denied, in the order they did."""
        return _distinct(d.reviewer for d in self.decisions if d.verdict == Verdict.DENY.value)

    @property
    def outcome(self) -> str:
        """How the request stands, in a few words: ``approved by alice, bob``, ``pending``..."""
        if self.status == Status.APPROVED.value:
            who = ", ".join(self.approvers)
            return (
                f"approved by {who}"
                if who
                else f"approved at its deadline (on timeout: {self.on_timeout})"
            )
        if self.status == Status.DENIED.value:
            who = ", ".join(self.deniers)
            return f"denied by {who}" if who else "denied"
        if self.status == Status.EXPIRED.value:
            return f"expired without a decision (on timeout: {self.on_timeout})"
        if self.status == Status.CANCELLED.value:
            return "cancelled by the requester"
        return "pending" if self.pending else "past its deadline, about to expire"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _distinct(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _classifications(request: ApprovalRequest, asset: Asset) -> tuple[tuple[str, str], ...]:
    found = request.classifications.get(str(asset))
    if found is None:
        return tuple((c, "given by the pipeline") for c in asset.classifications)
    return tuple(sorted((c.classification, c.source) for c in found))


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return _utc(moment).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Escaping and lengths


def escape_slack(text: str) -> str:
    """``text`` made inert for Slack mrkdwn: ``&``, ``<``, ``>`` as HTML entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_TEAMS_LOOKALIKES = str.maketrans(
    {
        "[": "\uff3b",
        "]": "\uff3d",
        "<": "\uff1c",
        ">": "\uff1e",
        "*": "\u2217",
        "_": "\u02cd",
        "`": "\u02cb",
        "~": "\u223c",
        "\\": "\u29f5",
    }
)
_LINE_BREAKS = re.compile(r"\s*[\r\n\u2028\u2029]+\s*")
_BRACES = re.compile(r"\{(?=\{)")
_BLOCK_MARKER = re.compile(r"^\s*(?:[-+#=|]|\d+[.)])")
_AUTOLINK = re.compile(r"(?i)\b(https?|ftp)://|\b(www)\.")


def escape_teams(text: str) -> str:
    """``text`` made inert for Adaptive Card Markdown (TextBlock, Fact title and value).

    Markup characters become look-alikes (see the module docstring), ``{{`` is split so no
    date function runs, a zero-width space after ``https://`` (``http``, ``ftp``) and ``www``
    stops clients auto-linking bare URLs, line breaks become spaces, and a leading list or
    heading marker is preceded by a zero-width space so it stays text.
    """
    out = _LINE_BREAKS.sub(" ", text.translate(_TEAMS_LOOKALIKES))
    out = _BRACES.sub("{" + _ZWSP, out)
    # Clients auto-link bare URLs; a zero-width space after the scheme keeps them text.
    out = _AUTOLINK.sub(lambda m: f"{m[1]}:{_ZWSP}//" if m[1] else f"{m[2]}{_ZWSP}.", out)
    if _BLOCK_MARKER.match(out):
        out = _ZWSP + out
    return out


def _plain_safe(text: str) -> str:
    # For the few untrusted-ish names (reviewer ids, the validated kind) that land in plain
    # text objects or action titles: whether a client decodes entities there is not
    # documented, so the control characters are replaced rather than escaped.
    return _LINE_BREAKS.sub(" ", text).replace("<", "\u2039").replace(">", "\u203a")


def _units(text: str) -> int:
    """Length in UTF-16 code units: never fewer than the characters Slack or Teams count."""
    return len(text.encode("utf-16-le")) // 2


def _clip(text: str, limit: int, escape: Callable[[str], str] = escape_slack) -> str:
    """``escape(text)`` in at most ``limit`` units, cut (never inside an entity) with ``…``."""
    out = escape(text)
    if _units(out) <= limit:
        return out
    cut = min(len(text), limit)
    while cut > 0:
        out = escape(text[:cut]).rstrip() + _ELLIPSIS
        size = _units(out)
        if size <= limit:
            return out
        # Escaping may have grown the text several times over: shrink in proportion.
        cut = min(cut - 1, cut * (limit - 1) // size)
    return _ELLIPSIS


def _pack(lines: Sequence[str], limit: int, more: Callable[[int], str]) -> str:
    """Lines joined by newlines, as many as fit in ``limit`` with ``more(n_left)`` after."""
    out: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        tail = _units(more(len(lines) - i - 1)) + 1 if i < len(lines) - 1 else 0
        if used + _units(line) + 1 + tail > limit:
            out.append(more(len(lines) - i))
            break
        out.append(line)
        used += _units(line) + 1
    return "\n".join(out)


def _more(noun: str) -> Callable[[int], str]:
    return lambda n: f"{_ELLIPSIS} and {n} more {noun} on the review page"


def _slack_link(url: str, label: str) -> str:
    # Inside <url|label> the URL must hold no "|" and no raw control characters.
    return f"<{escape_slack(url).replace('|', '%7C')}|{label}>"


# --------------------------------------------------------------------------------------------
# Slack


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _clip(_plain_safe(text), limit, str), "emoji": True}


def _section(block_id: str, text: str) -> dict[str, Any]:
    return {"type": "section", "block_id": block_id, "text": _mrkdwn(text)}


def _title(view: MessageView) -> str:
    """Our own words for the header: what is asked, or how it ended."""
    if view.pending:
        return f"Approval needed: {view.kind}"
    status = view.status if view.status != Status.PENDING.value else Status.EXPIRED.value
    return f"{status.capitalize()}: {view.kind}"


def _requester_text(view: MessageView, limit: int, escape: Callable[[str], str]) -> list[str]:
    return [
        f"{label}: {_clip(value, limit, escape)}" for _, label, value in view.requester if value
    ]


def _dataset_text(d: DatasetLine, escape: Callable[[str], str]) -> str:
    text = _clip(d.qualified, 400, escape)
    if d.classifications:
        labels = ", ".join(f"{c} ({s})" for c, s in d.classifications)
        text += f" — {_clip(labels, 300, escape)}"
    return text


def _decision_text(d: DecisionLine, escape: Callable[[str], str]) -> str:
    verb = "approved" if d.verdict == Verdict.APPROVE.value else "denied"
    text = f"{_clip(d.reviewer, 100, escape)} {verb} ({when(d.decided_at)}, via {d.channel})"
    if d.comment:
        text += f": “{_clip(d.comment, 500, escape)}”"
    return text


def _status_text(view: MessageView) -> str:
    if view.pending:
        return f"*Status:* pending · {view.progress} · {view.time_left}"
    outcome = _clip(view.outcome, 1000)
    return f"*Status:* {outcome} · {view.progress}"


def slack_message(view: MessageView, *, buttons: bool) -> dict[str, Any]:
    """``{"text", "blocks"}``: the arguments of ``chat.postMessage`` / ``chat.update``, or the
    body of an incoming webhook.

    While the request is pending, ``buttons=True`` (a bot token: interactivity) adds Approve
    (with a confirm dialog) and Deny buttons whose ``value`` is the request id, plus a
    "Review page" link button; ``buttons=False`` (an incoming webhook: no interactivity) adds
    the review page's link, where the reviewer signs in to decide (never a reviewer's signed
    link: see "Identity" in the module docstring). Once the request has ended there are
    neither: the message says how it ended, and who decided. Block ids are stable, so
    ``chat.update`` replaces each block in place.
    """
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "block_id": "sluicegate_header",
            "text": _plain(_title(view), _SLACK_HEADER),
        },
        _section("sluicegate_summary", _clip(view.summary or "(no summary given)", _SLACK_SECTION)),
    ]

    fields = [f"*Action*\n{_clip(view.kind, 100)}"]
    if view.environment:
        fields[0] += f" in {_clip(view.environment, 100)}"
    fields.append(f"*Rule*\n{_clip(view.rule or '(default)', 500)}")
    requester = "\n".join(_requester_text(view, 300, escape_slack)) or "(unknown)"
    fields.append(f"*Requester*\n{_clip_lines(requester, _SLACK_FIELD - 20)}")
    fields.append(f"*Approvals*\n{view.progress}")
    fields.append(f"*Time left*\n{view.time_left}" if view.pending else f"*Ended*\n{view.status}")
    if view.destination:
        fields.append(f"*Destination*\n{_clip(view.destination, _SLACK_FIELD - 20)}")
    if view.eligible and view.pending:
        names = ", ".join(view.eligible)
        fields.append(f"*May decide*\n{_clip(names, _SLACK_FIELD - 20)}")
    blocks.append(
        {
            "type": "section",
            "block_id": "sluicegate_facts",
            "fields": [_mrkdwn(f) for f in fields[:_SLACK_FIELDS]],
        }
    )

    if view.datasets:
        lines = [f"• {d.role}: {_dataset_text(d, escape_slack)}" for d in view.datasets]
        text = _pack(["*Datasets*", *lines], _SLACK_SECTION, _more("datasets"))
        blocks.append(_section("sluicegate_datasets", text))

    blocks.append(_section("sluicegate_status", _status_text(view)))

    if view.decisions:
        lines = [f"• {_decision_text(d, escape_slack)}" for d in view.decisions]
        title = "*Decisions so far*" if view.pending else "*Decisions*"
        text = _pack([title, *lines], _SLACK_SECTION, _more("decisions"))
        blocks.append(_section("sluicegate_decisions", text))

    footer = [f"Request {view.request_id}"]
    if view.policy_note:
        footer.append(_clip(view.policy_note, 1000))
    if not view.pending:
        footer.append(_slack_link(view.review_url, "View the record"))

    if view.pending and buttons:
        blocks.append(_actions(view))
    elif view.pending:
        blocks.append(_section("sluicegate_review", _review_text(view)))

    blocks.append(
        {
            "type": "context",
            "block_id": "sluicegate_footer",
            "elements": [_mrkdwn(" · ".join(footer))],
        }
    )
    return {"text": _fallback(view), "blocks": blocks[:_SLACK_BLOCKS]}


def _clip_lines(text: str, limit: int) -> str:
    # Already escaped text: cut at a line break so no entity is split.
    if _units(text) <= limit:
        return text
    lines = text.split("\n")
    return _pack(lines, limit, lambda n: _ELLIPSIS)


def _actions(view: MessageView) -> dict[str, Any]:
    nth = view.approvals + 1
    confirm_text = (
        f"You approve this {view.kind} as approval {nth} of {view.required_approvals}. "
        "Your name and the time are recorded in the audit log."
    )
    return {
        "type": "actions",
        "block_id": "sluicegate_actions",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION_ID,
                "text": _plain("Approve", _SLACK_BUTTON),
                "style": "primary",
                "value": view.request_id,
                "confirm": {
                    "title": _plain("Approve this request?", 100),
                    "text": _plain(confirm_text, 300),
                    "confirm": _plain("Approve", 30),
                    "deny": _plain("Cancel", 30),
                    "style": "primary",
                },
            },
            {
                "type": "button",
                "action_id": DENY_ACTION_ID,
                "text": _plain("Deny", _SLACK_BUTTON),
                "style": "danger",
                "value": view.request_id,
            },
            {
                "type": "button",
                "action_id": REVIEW_PAGE_ACTION_ID,
                "text": _plain("Review page", _SLACK_BUTTON),
                "url": view.review_url,
            },
        ],
    }


def _review_text(view: MessageView) -> str:
    """Where to decide without buttons: the review page, for everyone alike."""
    page = _slack_link(view.review_url, "Open the review page")
    return (
        f"*Decide on the review page:* {page}. Sign in there as yourself (with your review "
        "token); this message is the same for everyone who reads it and proves no one's "
        "identity."
    )


def _fallback(view: MessageView) -> str:
    """The notification text (and what screen readers say): one escaped sentence."""
    if view.pending:
        lead = f"Approval needed for {view.kind} ({view.progress})"
    else:
        lead = f"{_capital(view.outcome)} — {view.kind}"
    lead = _clip(lead, 1500)
    tail = f" — {escape_slack(view.review_url)}"
    room = _SLACK_FALLBACK - _units(lead) - 2 - _units(tail)
    return f"{lead}: {_clip(_one_line(view.summary or '(no summary given)'), room)}{tail}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text).strip()


def slack_deny_modal(view: MessageView, *, private_metadata: str) -> dict[str, Any]:
    """The ``views.open`` view asking a denying reviewer why.

    Its one input is ``block_id`` ``comment`` / ``action_id`` ``comment``, so the submission
    carries ``view.state.values.comment.comment.value``. ``private_metadata`` (at most 3000
    characters) comes back unchanged with the submission.
    """
    if len(private_metadata) > _SLACK_METADATA:
        raise ValueError(
            f"private_metadata is {len(private_metadata)} characters; Slack keeps at most "
            f"{_SLACK_METADATA}"
        )
    note = "Your comment is recorded in the audit log and shown to the requester."
    if view.comment_on_deny:
        note = "The policy asks for a comment when denying. " + note
    return {
        "type": "modal",
        "callback_id": DENY_MODAL_CALLBACK_ID,
        "private_metadata": private_metadata,
        "title": _plain("Deny request", 24),
        "submit": _plain("Deny", 24),
        "close": _plain("Cancel", 24),
        "blocks": [
            _section(
                "sluicegate_summary",
                f"*You are denying:*\n{_clip(view.summary or '(no summary given)', 2500)}",
            ),
            {
                "type": "context",
                "block_id": "sluicegate_footer",
                "elements": [_mrkdwn(f"Request {view.request_id} · {view.progress}. {note}")],
            },
            {
                "type": "input",
                "block_id": "comment",
                "optional": False,
                "label": _plain("Why do you deny it?", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "comment",
                    "multiline": True,
                    "min_length": 1,
                    "max_length": _SLACK_INPUT_MAX,
                    "placeholder": _plain("What should the requester change?", 150),
                },
            },
        ],
    }


def slack_ephemeral(text: str) -> dict[str, Any]:
    """A ``response_url`` body that only the clicking user sees, leaving the message as is."""
    return {
        "response_type": "ephemeral",
        "replace_original": False,
        "text": _clip(text, _SLACK_FALLBACK),
    }


# --------------------------------------------------------------------------------------------
# Teams


def _text_block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


_STATUS_COLOR = {
    Status.APPROVED.value: "Good",
    Status.DENIED.value: "Attention",
}


def teams_card(view: MessageView) -> dict[str, Any]:
    """The body of a Teams Workflows webhook: a message holding one Adaptive Card (1.4).

    Its one action is ``Action.OpenUrl`` to the review page. Workflows cards cannot carry
    interactive actions, and a card is read by the whole channel, so it carries no reviewer's
    signed link either: every decision is made on the review page by a reviewer who signs in
    there (see "Identity" in the module docstring).
    """
    card: dict[str, Any] = {}
    for scale in (1.0, 0.5, 0.25, 0.1):
        card = _card(view, scale)
        if len(json.dumps(card, ensure_ascii=False).encode()) <= _TEAMS_BYTES:
            break
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def _card(view: MessageView, scale: float) -> dict[str, Any]:
    def cap(n: int) -> int:
        return max(1, int(n * scale))

    esc = escape_teams
    facts = [
        ("Action", esc(view.kind) + (f" in {esc(view.environment)}" if view.environment else ""))
    ]
    if view.destination:
        facts.append(("Destination", _clip(view.destination, cap(500), esc)))
    facts.append(("Rule", _clip(view.rule or "(default)", cap(300), esc)))
    facts.append(("Approvals", view.progress))
    facts.append(("Time left", view.time_left) if view.pending else ("Ended", view.status))
    facts.extend(
        (label, _clip(value, cap(300), esc)) for _, label, value in view.requester if value
    )
    if view.eligible and view.pending:
        facts.append(("May decide", _clip(", ".join(view.eligible), cap(500), esc)))
    facts.append(("Request", view.request_id))

    body: list[dict[str, Any]] = [
        _text_block(esc(_title(view)), size="Large", weight="Bolder"),
        _text_block(_clip(view.summary or "(no summary given)", cap(2000), esc)),
        _text_block(
            f"**Status:** {_clip(view.outcome, cap(500), esc)} · {view.progress}",
            color="Warning" if view.pending else _STATUS_COLOR.get(view.status, "Default"),
        ),
        {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in facts]},
    ]
    if view.datasets:
        shown = view.datasets[: cap(25)]
        rows = [{"title": d.role.capitalize(), "value": _dataset_text(d, esc)} for d in shown]
        if len(view.datasets) > len(shown):
            rows.append(
                {"title": _ELLIPSIS, "value": _more("datasets")(len(view.datasets) - len(shown))}
            )
        body += [_text_block("**Datasets**", spacing="Medium"), {"type": "FactSet", "facts": rows}]
    if view.decisions:
        shown_d = view.decisions[-cap(15) :]
        rows = []
        for d in shown_d:
            verb = "approved" if d.verdict == Verdict.APPROVE.value else "denied"
            value = f"{verb} · {when(d.decided_at)}"
            if d.comment:
                value += f" · “{_clip(d.comment, cap(400), esc)}”"
            rows.append({"title": _clip(d.reviewer, 100, esc), "value": value})
        if len(view.decisions) > len(shown_d):
            rows.insert(
                0,
                {
                    "title": _ELLIPSIS,
                    "value": _more("decisions")(len(view.decisions) - len(shown_d)),
                },
            )
        body += [
            _text_block(
                "**Decisions so far**" if view.pending else "**Decisions**", spacing="Medium"
            ),
            {"type": "FactSet", "facts": rows},
        ]
    if view.policy_note:
        body.append(_text_block(_clip(view.policy_note, cap(500), esc), isSubtle=True))

    if view.pending:
        body.append(
            _text_block(
                "Decide on the review page: sign in there as yourself, with your review token.",
                isSubtle=True,
                spacing="Medium",
            )
        )
    actions = [{"type": "Action.OpenUrl", "title": "Review page", "url": view.review_url}]
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
        "actions": actions,
    }


# --------------------------------------------------------------------------------------------
# Generic webhook and follow-ups


def _check_event(event: str) -> None:
    if event not in EVENTS:
        raise ValueError(
            f"unknown notification event {event!r}; expected one of {', '.join(EVENTS)}"
        )


def webhook_body(view: MessageView, *, event: str) -> dict[str, Any]:
    """A plain JSON document for a generic receiver: stable keys, ISO-8601 UTC times.

    Nothing in it is escaped: it is data, and the receiver escapes for wherever it shows it.
    Every key is always present (``null`` where there is no value).
    """
    _check_event(event)
    return {
        "version": 1,
        "event": event,
        "generated_at": _iso(view.as_of),
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
            "created_at": _iso(view.created_at),
            "expires_at": _iso(view.expires_at),
            "time_left": view.time_left,
            "requester": {key: value or None for key, _, value in view.requester},
            "datasets": [
                {
                    "role": d.role,
                    "namespace": d.namespace,
                    "name": d.name,
                    "classifications": [
                        {"classification": c, "source": s} for c, s in d.classifications
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
                    "decided_at": _iso(d.decided_at),
                }
                for d in view.decisions
            ],
            "eligible_reviewers": list(view.eligible),
            "policy_note": view.policy_note or None,
        },
    }


def followup_text(view: MessageView, *, event: str) -> str:
    """One sentence for the channel about ``event``, escaped for Slack mrkdwn.

    For example ``Approved by alice, bob: Export customers to the partner bucket (request
    0193…)``.
    """
    _check_event(event)
    if event == "request.approved":
        who = ", ".join(view.approvers)
        lead = f"Approved by {who}" if who else "Approved at its deadline (on timeout: allow)"
    elif event == "request.denied":
        who = ", ".join(view.deniers)
        lead = f"Denied by {who}" if who else "Denied"
        comments = [d.comment for d in view.decisions if d.verdict == "deny" and d.comment]
        if comments:
            lead += f" (“{_one_line(comments[-1])[:300]}”)"
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
    summary = _one_line(view.summary) or f"a {view.kind} action"
    return f"{_clip(lead, 2000)}: {_clip(summary, 300)} (request {view.request_id})"
