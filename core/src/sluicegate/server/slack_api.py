"""Slack's button clicks: ``POST /integrations/slack/interactions``.

Every request must carry Slack's signature over its raw body (``slack.signing_secret``;
timestamps older than 5 minutes refused) and is accepted once: a replayed signature is refused
too (401). A signed payload of the wrong shape is refused (400) before anything is decided
(:mod:`sluicegate.server._slack_payloads`). The clicking Slack user becomes a reviewer
through ``slack_id`` in the policy, and the decision goes through the same workflow as every
other channel, so an unknown, ineligible or self-approving clicker is refused, told why in an
ephemeral message, and audited (``decision.rejected``). Deny opens a modal for the comment
where the rule requires one. The message itself is updated by the outbox (``chat.update``),
not here, so Slack's 3-second acknowledgement deadline only waits for the decision's commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging

import httpx
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from sluicegate.exceptions import (
    ActionError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    TransitionError,
)
from sluicegate.model import Channel, Verdict, utcnow
from sluicegate.notify.messages import (
    APPROVE_ACTION_ID,
    DENY_ACTION_ID,
    DENY_MODAL_CALLBACK_ID,
    MessageView,
    slack_deny_modal,
    slack_ephemeral,
)
from sluicegate.notify.signing import (
    SLACK_SIGNATURE_HEADER,
    SLACK_TIMESTAMP_HEADER,
    SlackSignatureError,
    verify_slack_request,
)
from sluicegate.server._slack_payloads import (
    BlockActions,
    DenyMetadata,
    PayloadError,
    ViewSubmission,
    parse_interaction,
)
from sluicegate.server.api import record_decision_metrics
from sluicegate.server.errors import ApiError
from sluicegate.server.state import ServerState, state_dependency

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


def _reviewer_of(st: ServerState, slack_user: str) -> str | None:
    reviewer = st.policy.resolve(slack_user, fields=("slack_id",))
    return None if reviewer is None else reviewer.id


async def _clicked(st: ServerState, payload: BlockActions) -> None:
    if not payload.actions:
        return
    action_id, request_id = payload.actions[0].action_id, payload.actions[0].value
    if action_id not in (APPROVE, DENY) or not request_id:
        return
    slack_user, response_url = payload.user.id, payload.response_url
    verdict = Verdict.APPROVE if action_id == APPROVE else Verdict.DENY
    reviewer = await _known(st, slack_user, request_id, verdict, response_url)
    if reviewer is None:
        return
    if verdict is Verdict.DENY:
        try:
            req = await st.writer.get(request_id)
        except NotFoundError:
            _tell(response_url, "That request no longer exists.")
            return
        why = st.approvals.check_reviewer(req, reviewer)
        if why is None and req.comment_on_deny and st.dispatcher.slack is not None:
            # The rule wants a comment: ask for it in a modal (its submission decides).
            view = MessageView.of(req, review_url=st.review_url(request_id), now=utcnow())
            meta = json.dumps({"request_id": request_id, "fingerprint": req.fingerprint})
            try:
                await asyncio.to_thread(
                    st.dispatcher.slack.views_open,
                    trigger_id=payload.trigger_id,
                    view=slack_deny_modal(view, private_metadata=meta),
                )
                return
            except Exception as err:  # the modal could not open: say so, decide nothing
                log.warning("Slack views.open failed: %s", type(err).__name__)
                _tell(response_url, "Could not open the comment form; deny on the review page.")
                return
    problem = await _decide(st, request_id, reviewer, verdict, "", None)
    if problem is not None:
        _tell(response_url, problem)


async def _deny_submitted(st: ServerState, payload: ViewSubmission) -> Response:
    try:
        meta = DenyMetadata.of(payload.view)
    except PayloadError as err:
        raise ApiError(400, "malformed", str(err)) from None
    comment = payload.comment()
    if comment is None:
        raise ApiError(400, "malformed", "the comment form's submission is incomplete")
    reviewer = await _known(st, payload.user.id, meta.request_id, Verdict.DENY, "")
    if reviewer is None:
        return _modal_error("You are not a reviewer in Sluicegate's policy.")
    problem = await _decide(st, meta.request_id, reviewer, Verdict.DENY, comment, meta.fingerprint)
    if problem is not None:
        return _modal_error(problem)
    return JSONResponse({"response_action": "clear"})


def _modal_error(text: str) -> Response:
    return JSONResponse({"response_action": "errors", "errors": {"comment": text[:150]}})


async def _known(
    st: ServerState, slack_user: str, request_id: str, verdict: Verdict, response_url: str
) -> str | None:
    """The reviewer a Slack user is; None (audited, told why) for a user the policy lacks."""
    reviewer = _reviewer_of(st, slack_user)
    if reviewer is not None:
        return reviewer
    reason = f"Slack user {slack_user!r} is not a reviewer in the policy (no matching slack_id)"
    with contextlib.suppress(NotFoundError):  # no request to audit it on: nothing to refuse
        await st.writer.run(
            st.approvals.reject,
            request_id,
            actor=f"slack:{slack_user}",
            reason=reason,
            verdict=verdict,
            channel=Channel.SLACK,
        )
    st.metrics.rejected.inc()
    if response_url:
        _tell(response_url, "You are not a reviewer in Sluicegate's policy, so you cannot decide.")
    return None


async def _decide(
    st: ServerState,
    request_id: str,
    reviewer: str,
    verdict: Verdict,
    comment: str,
    fingerprint: str | None,
) -> str | None:
    """Record the decision; None when it was recorded, else what to tell the clicker."""
    try:
        outcome = await st.writer.run(
            st.approvals.decide,
            request_id,
            reviewer=reviewer,
            verdict=verdict,
            comment=comment,
            channel=Channel.SLACK,
            fingerprint=fingerprint,
        )
    except ForbiddenError as err:  # audited by the workflow
        st.metrics.rejected.inc()
        return f"You cannot decide this request: {err}"
    except NotFoundError:
        return "That request no longer exists."
    except ActionError as err:
        return str(err)
    except (ConflictError, TransitionError) as err:
        return f"Not recorded: {err}"
    record_decision_metrics(st, outcome.request, verdict, Channel.SLACK, outcome.ended)
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
