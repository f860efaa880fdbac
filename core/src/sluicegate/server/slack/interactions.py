"""Slack's button clicks: ``POST /integrations/slack/interactions``.

Every request must carry Slack's signature over its raw body (``slack.signing_secret``;
timestamps older than 5 minutes refused) and is accepted once: a replayed signature is refused
too (401). A signed payload of the wrong shape is refused (400) before anything is decided
(:mod:`sluicegate.server.slack.payloads`). The clicking Slack user becomes a reviewer
through ``slack_id`` in the policy, and the decision goes through the server's one decision
path (:class:`~sluicegate.server.service.GateService`) as for every other channel, so an
unknown, ineligible or self-approving clicker is refused, told why in an ephemeral message,
and audited (``decision.rejected``). A denial the rule wants a comment for is refused by that
path before anything is recorded; the click then opens a modal for the comment. The message
itself is updated by the notification outbox (``chat.update``), not here, so Slack's 3-second
acknowledgement deadline only waits for the decision's commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

import httpx
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from sluicegate.exceptions import ActionError, ForbiddenError, NotFoundError, TransitionError
from sluicegate.model import Channel, Verdict, utcnow
from sluicegate.notify.channels.slack_blocks import (
    APPROVE_ACTION_ID,
    DENY_ACTION_ID,
    DENY_MODAL_CALLBACK_ID,
    slack_deny_modal,
    slack_ephemeral,
)
from sluicegate.notify.signing import (
    SLACK_SIGNATURE_HEADER,
    SLACK_TIMESTAMP_HEADER,
    SlackSignatureError,
    verify_slack_request,
)
from sluicegate.notify.view import RequestView
from sluicegate.server.errors import ApiError
from sluicegate.server.slack.payloads import (
    BlockActions,
    DenyMetadata,
    PayloadError,
    ViewSubmission,
    parse_interaction,
)
from sluicegate.server.wiring import ServerState, state_dependency
from sluicegate.workflow import CommentRequiredError

__all__ = ["router"]

log = logging.getLogger("sluicegate.server")
router = APIRouter(prefix="/integrations/slack", tags=["integrations"])

APPROVE, DENY, DENY_MODAL = APPROVE_ACTION_ID, DENY_ACTION_ID, DENY_MODAL_CALLBACK_ID
_tasks: set[asyncio.Task[None]] = set()


@router.post(
    "/interactions",
    responses={
        200: {"description": "acknowledged (the answer, if any, is an ephemeral message)"},
        400: {"description": "the signed form holds no payload Slack would send (`malformed`)"},
        401: {"description": "no, a bad, a stale or a replayed Slack signature"},
        404: {"description": "Slack interactions are not configured"},
    },
)
async def interactions(
    request: Request,
    st: ServerState = Depends(state_dependency),  # noqa: B008
) -> Response:
    """A click on Approve or Deny, or the deny-comment modal's submission."""
    secret = st.settings.slack.signing_secret
    if secret is None:
        raise ApiError(404, "not_configured", "Slack interactions need slack.signing_secret")
    raw = await request.body()
    signature = request.headers.get(SLACK_SIGNATURE_HEADER)
    try:
        verify_slack_request(
            secret.get_secret_value(),
            timestamp=request.headers.get(SLACK_TIMESTAMP_HEADER),
            signature=signature,
            body=raw,
        )
    except SlackSignatureError as err:
        raise ApiError(401, "bad_signature", err.reason) from None
    nonce = "slack:" + hashlib.sha256((signature or "").encode()).hexdigest()[:48]
    if not await st.writer.run(st.store.use_link, nonce, "slack", "slack"):
        raise ApiError(401, "replayed", "this signed Slack request was received before")
    try:
        payload = parse_interaction(raw)
    except PayloadError as err:
        raise ApiError(400, "malformed", str(err)) from None
    if isinstance(payload, BlockActions):
        await _clicked(st, payload)
        return Response(status_code=200)
    if isinstance(payload, ViewSubmission) and payload.view.callback_id == DENY_MODAL:
        return await _deny_submitted(st, payload)
    return Response(status_code=200)  # other interactions are not ours: acknowledged


def _reviewer_of(st: ServerState, slack_user: str) -> tuple[str, str | None]:
    """The reviewer a Slack user is, and None; or, for a user the policy lacks, the actor to
    record and why they can never decide."""
    reviewer = st.policy.resolve(slack_user, fields=("slack_id",))
    if reviewer is not None:
        return reviewer.id, None
    why = f"Slack user {slack_user!r} is not a reviewer in the policy (no matching slack_id)"
    return f"slack:{slack_user}", why


async def _clicked(st: ServerState, payload: BlockActions) -> None:
    if not payload.actions:
        return
    action_id, request_id = payload.actions[0].action_id, payload.actions[0].value
    if action_id not in (APPROVE, DENY) or not request_id:
        return
    verdict = Verdict.APPROVE if action_id == APPROVE else Verdict.DENY
    try:
        problem = await _decide(st, request_id, payload.user.id, verdict, "", None)
    except CommentRequiredError as err:
        problem = await _ask_for_a_comment(st, payload, request_id, err)
    if problem is not None:
        _tell(payload.response_url, problem)


async def _ask_for_a_comment(
    st: ServerState, payload: BlockActions, request_id: str, err: CommentRequiredError
) -> str | None:
    """Open the deny modal (its submission decides); else what to tell the clicker."""
    slack = st.dispatcher.slack
    if slack is None:
        return str(err)
    try:
        req = await st.writer.get(request_id)
    except NotFoundError:
        return "That request no longer exists."
    view = RequestView.of(req, review_url=st.review_url(request_id), now=utcnow())
    meta = json.dumps({"request_id": request_id, "fingerprint": req.fingerprint})
    try:
        await asyncio.to_thread(
            slack.views_open,
            trigger_id=payload.trigger_id,
            view=slack_deny_modal(view, private_metadata=meta),
        )
    except Exception as err:  # the modal could not open: say so, decide nothing
        log.warning("Slack views.open failed: %s", type(err).__name__)
        return "Could not open the comment form; deny on the review page."
    return None


async def _deny_submitted(st: ServerState, payload: ViewSubmission) -> Response:
    try:
        meta = DenyMetadata.of(payload.view)
    except PayloadError as err:
        raise ApiError(400, "malformed", str(err)) from None
    comment = payload.comment()
    if comment is None:
        raise ApiError(400, "malformed", "the comment form's submission is incomplete")
    try:
        problem = await _decide(
            st, meta.request_id, payload.user.id, Verdict.DENY, comment, meta.fingerprint
        )
    except CommentRequiredError as err:
        problem = str(err)
    if problem is not None:
        return _modal_error(problem)
    return JSONResponse({"response_action": "clear"})


def _modal_error(text: str) -> Response:
    return JSONResponse({"response_action": "errors", "errors": {"comment": text[:150]}})


async def _decide(
    st: ServerState,
    request_id: str,
    slack_user: str,
    verdict: Verdict,
    comment: str,
    fingerprint: str | None,
) -> str | None:
    """Record the decision; None when it was recorded, else what to tell the clicker.

    :class:`CommentRequiredError` goes to the caller: a click asks for the comment.
    """
    reviewer, refused = _reviewer_of(st, slack_user)
    try:
        await st.gates.decide(
            request_id,
            reviewer=reviewer,
            verdict=verdict,
            comment=comment,
            channel=Channel.SLACK,
            fingerprint=fingerprint,
            refused=refused,
        )
    except ForbiddenError as err:  # audited by the workflow
        if refused is not None:
            return "You are not a reviewer in Sluicegate's policy, so you cannot decide."
        return f"You cannot decide this request: {err}"
    except NotFoundError:
        if refused is not None:  # no request to audit it on: refused all the same
            st.metrics.rejected.inc()
            return "You are not a reviewer in Sluicegate's policy, so you cannot decide."
        return "That request no longer exists."
    except CommentRequiredError:
        raise
    except ActionError as err:
        return str(err)
    except TransitionError as err:
        return f"Not recorded: {err}"
    return None


def _tell(response_url: str, text: str) -> None:
    """Answer the clicker alone (ephemeral), after the acknowledgement, never blocking it."""
    if not response_url.startswith(("https://", "http://")):
        return

    async def post() -> None:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                await client.post(response_url, json=slack_ephemeral(text))
        except httpx.HTTPError as err:
            log.warning("Slack response_url failed: %s", type(err).__name__)

    task = asyncio.get_running_loop().create_task(post())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
