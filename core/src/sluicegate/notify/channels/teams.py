"""Microsoft Teams: an Adaptive Card posted to a Workflows webhook.

The card's only action is ``Action.OpenUrl`` to the review page: Workflows cards cannot carry
interactive actions, and a card is read by the whole channel, so it carries no reviewer's
signed link either (see "Identity" in :mod:`sluicegate.notify.channels`). A card goes out for
the request's creation, its end, a reminder and an escalation; a decision along the way is
skipped (a posted card cannot be updated).

Escaping. Adaptive Card renderers disagree on backslash escapes (some show the backslash, some
still apply the emphasis), so markup characters are replaced by look-alikes that no renderer
parses: ``[ ]`` and ``< >`` become their fullwidth forms (U+FF3B, U+FF3D, U+FF1C, U+FF1E),
``*`` the asterisk operator (U+2217), ``_`` a modifier low macron (U+02CD), a backtick the
modifier grave accent (U+02CB), ``~`` the tilde operator (U+223C), a backslash the reverse
solidus operator (U+29F5); ``{{`` is split (no ``{{DATE()}}`` functions), bare ``https://``
and ``www.`` get a zero-width space so they are not auto-linked, line breaks become spaces and
a leading list or heading marker is defused. Without ``[`` no Markdown link can form, so
parentheses stay as they are. The card stays under Teams' 28 KB message limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from sluicegate.model import Status, Verdict
from sluicegate.notify.channels._http import HttpChannel
from sluicegate.notify.channels.base import SKIPPED, ChannelConfig, Delivery
from sluicegate.notify.text import ELLIPSIS, LINE_BREAKS, ZWSP, clip, dataset_text, more
from sluicegate.notify.view import RequestView
from sluicegate.settings import Settings
from sluicegate.timefmt import when

__all__ = ["TeamsChannel", "TeamsConfig", "escape_teams", "teams_card"]

# A Teams message (the card included) must stay under 28 KB; keep a margin for the envelope.
_TEAMS_BYTES = 27 * 1024

_LOOKALIKES = str.maketrans(
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
    out = LINE_BREAKS.sub(" ", text.translate(_LOOKALIKES))
    out = _BRACES.sub("{" + ZWSP, out)
    out = _AUTOLINK.sub(lambda m: f"{m[1]}:{ZWSP}//" if m[1] else f"{m[2]}{ZWSP}.", out)
    if _BLOCK_MARKER.match(out):
        out = ZWSP + out
    return out


def _text_block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


_STATUS_COLOR = {
    Status.APPROVED.value: "Good",
    Status.DENIED.value: "Attention",
}


def teams_card(view: RequestView) -> dict[str, Any]:
    """The body of a Teams Workflows webhook: a message holding one Adaptive Card (1.4).

    Its one action is ``Action.OpenUrl`` to the review page (see the module's docstring).
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


def _card(view: RequestView, scale: float) -> dict[str, Any]:
    def cap(n: int) -> int:
        return max(1, int(n * scale))

    esc = escape_teams
    facts = [
        ("Action", esc(view.kind) + (f" in {esc(view.environment)}" if view.environment else ""))
    ]
    if view.destination:
        facts.append(("Destination", clip(view.destination, cap(500), esc)))
    facts.append(("Rule", clip(view.rule_label, cap(300), esc)))
    facts.append(("Approvals", view.progress))
    facts.append(("Time left", view.time_left) if view.pending else ("Ended", view.status))
    facts.extend((label, clip(value, cap(300), esc)) for _, label, value in view.requester if value)
    if view.eligible and view.pending:
        facts.append(("May decide", clip(", ".join(view.eligible), cap(500), esc)))
    facts.append(("Request", view.request_id))

    body: list[dict[str, Any]] = [
        _text_block(esc(view.title), size="Large", weight="Bolder"),
        _text_block(clip(view.summary or "(no summary given)", cap(2000), esc)),
        _text_block(
            f"**Status:** {clip(view.outcome, cap(500), esc)} · {view.progress}",
            color="Warning" if view.pending else _STATUS_COLOR.get(view.status, "Default"),
        ),
        {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in facts]},
    ]
    if view.datasets:
        shown = view.datasets[: cap(25)]
        rows = [{"title": d.role.capitalize(), "value": dataset_text(d, esc)} for d in shown]
        if len(view.datasets) > len(shown):
            rows.append(
                {"title": ELLIPSIS, "value": more("datasets")(len(view.datasets) - len(shown))}
            )
        body += [_text_block("**Datasets**", spacing="Medium"), {"type": "FactSet", "facts": rows}]
    if view.decisions:
        body += _decisions(view, cap(15), cap(400))
    if view.policy_note:
        body.append(_text_block(clip(view.policy_note, cap(500), esc), isSubtle=True))
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


def _decisions(view: RequestView, count: int, comment: int) -> list[dict[str, Any]]:
    shown = view.decisions[-count:]
    rows = []
    for d in shown:
        verb = "approved" if d.verdict == Verdict.APPROVE.value else "denied"
        value = f"{verb} · {when(d.decided_at)}"
        if d.comment:
            value += f" · “{clip(d.comment, comment, escape_teams)}”"
        rows.append({"title": clip(d.reviewer, 100, escape_teams), "value": value})
    if len(view.decisions) > len(shown):
        left = more("decisions")(len(view.decisions) - len(shown))
        rows.insert(0, {"title": ELLIPSIS, "value": left})
    title = "**Decisions so far**" if view.pending else "**Decisions**"
    return [_text_block(title, spacing="Medium"), {"type": "FactSet", "facts": rows}]


class TeamsConfig(ChannelConfig):
    """A Teams Workflows webhook (``teams.webhook_url`` in the settings)."""

    webhook_url: SecretStr

    @classmethod
    def from_settings(cls, settings: Settings) -> TeamsConfig | None:
        url = settings.teams.webhook_url
        if url is None:
            return None
        return cls(webhook_url=url, timeout=settings.notify.timeout)


class TeamsChannel(HttpChannel):
    """Posts :func:`teams_card` to the Workflows webhook (targets ``teams``)."""

    kind = "teams"
    config_class = TeamsConfig

    def __init__(self, config: TeamsConfig) -> None:
        super().__init__(config)
        self.config: TeamsConfig = config

    def send(self, delivery: Delivery) -> Mapping[str, Any]:
        if delivery.event == "decision.recorded":
            return SKIPPED
        url = self.config.webhook_url.get_secret_value()
        self.post("Teams webhook", url, delivery.delivery_id, json=teams_card(delivery.view))
        return {}
