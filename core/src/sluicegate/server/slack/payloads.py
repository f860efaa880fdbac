"""The shapes of the Slack interaction payloads the server acts on, validated before use.

A payload is checked only after Slack's signature, but a signature says who sent it, not that
it has the shape Sluicegate reads: ``user`` as a string, ``view`` as a list,
``private_metadata`` that is not an object, ``actions`` as a number must each be refused as
bad input (400), never fail half-way through a decision (500). Only the fields Sluicegate
reads are declared; Slack's many others are ignored, so a payload with new fields still parses.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sluicegate.model import validation_message

__all__ = [
    "BlockActions",
    "DenyMetadata",
    "Interaction",
    "PayloadError",
    "ViewSubmission",
    "parse_interaction",
]


class PayloadError(ValueError):
    """The body is not an interaction payload Sluicegate can read; the message says why."""


class _Slack(BaseModel):
    # Slack adds fields over time; only those read here are checked.
    model_config = ConfigDict(extra="ignore", frozen=True)


class SlackUser(_Slack):
    """Who clicked."""

    id: Annotated[str, Field(max_length=256)]


class ButtonAction(_Slack):
    """One clicked element of a ``block_actions`` payload."""

    action_id: Annotated[str, Field(max_length=256)] = ""
    value: Annotated[str, Field(max_length=2000)] = ""


class BlockActions(_Slack):
    """A click on a message's button."""

    type: Literal["block_actions"]
    user: SlackUser
    actions: list[ButtonAction] = []
    response_url: Annotated[str, Field(max_length=2048)] = ""
    trigger_id: Annotated[str, Field(max_length=512)] = ""


class InputValue(_Slack):
    """The state of one input element of a modal."""

    value: Annotated[str | None, Field(max_length=4000)] = None


class ViewState(_Slack):
    """A modal's inputs: block id -> action id -> state."""

    values: dict[str, dict[str, InputValue]] = {}


class View(_Slack):
    """A modal, as its submission carries it."""

    callback_id: Annotated[str, Field(max_length=256)] = ""
    private_metadata: Annotated[str, Field(max_length=3000)] = ""
    state: ViewState = ViewState()


class ViewSubmission(_Slack):
    """A modal's submission (the deny-comment form)."""

    type: Literal["view_submission"]
    user: SlackUser
    view: View

    def comment(self) -> str | None:
        """The deny form's comment; None when the form has no comment input."""
        found = self.view.state.values.get("comment", {}).get("comment")
        return None if found is None else found.value or ""


class DenyMetadata(_Slack):
    """What the deny modal carries through Slack: the request and the fingerprint shown."""

    request_id: Annotated[str, Field(max_length=128)] = ""
    fingerprint: Annotated[str | None, Field(max_length=128)] = None

    @classmethod
    def of(cls, view: View) -> DenyMetadata:
        """The metadata of ``view``; :class:`PayloadError` unless it is a JSON object."""
        try:
            return cls.model_validate_json(view.private_metadata or "{}")
        except ValidationError as err:
            raise PayloadError(validation_message(err, "view.private_metadata")) from None


Interaction = BlockActions | ViewSubmission


def parse_interaction(raw: bytes) -> Interaction | None:
    """The payload of an interaction request's body (``payload=<json>``, form-encoded).

    None for a kind of interaction that is not Sluicegate's (acknowledged, not acted on);
    :class:`PayloadError` naming the problem for a body of the wrong shape.
    """
    try:
        form = parse_qs(raw.decode(), strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (ValueError, KeyError, UnicodeDecodeError, RecursionError):
        raise PayloadError("expected a form field payload holding JSON") from None
    if not isinstance(payload, dict):
        raise PayloadError("the payload is not a JSON object")
    model: type[BlockActions] | type[ViewSubmission]
    if payload.get("type") == "block_actions":
        model = BlockActions
    elif payload.get("type") == "view_submission":
        model = ViewSubmission
    else:
        return None
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        raise PayloadError(validation_message(err, "payload")) from None
