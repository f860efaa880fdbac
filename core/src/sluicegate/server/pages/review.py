"""The review page and the inbox: server-rendered HTML for people, working without JavaScript.

- ``GET /r/{id}``: the request in full, and an Approve/Deny form for a reviewer who may decide;
- ``POST /r/{id}/decide``: the form's target (CSRF-protected; a link decides once);
- ``GET /inbox``: the pending requests the signed-in reviewer may decide.

Viewers are identified by a signed link, a session cookie or the trusted SSO header
(:mod:`sluicegate.server.pages.auth`). The decision itself goes through the server's one
decision path (:class:`~sluicegate.server.service.GateService`, then
:meth:`Workflow.decide <sluicegate.workflow.Workflow.decide>`), as for every other channel:
this module parses the form, calls it, and turns its answer or refusal into a page. A GET
never decides anything (link scanners open every link). A link that fails its check names no
one: it is counted as ``link.rejected``, with no actor
(:mod:`sluicegate.server.pages.refused_links`).
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated
from urllib.parse import urlencode

import anyio
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from sluicegate.exceptions import ActionError, ForbiddenError, NotFoundError, TransitionError
from sluicegate.links import LinkError, claimed_reviewer, sign_link
from sluicegate.model import ApprovalRequest, Status, Verdict, utcnow
from sluicegate.server.pages.auth import Viewer, csrf_ok, csrf_token, link_viewer, signed_in
from sluicegate.server.pages.view import answers_in_html, message, redirect, render, request_view
from sluicegate.server.wiring import ServerState, state_of
from sluicegate.workflow import CommentRequiredError, LinkUsedError

__all__ = ["INBOX_PAGE", "review_link", "router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(answers_in_html)])

_MAX_COMMENT = 4000


def review_link(st: ServerState, request_id: str, reviewer: str) -> str:
    """A signed, single-use review URL for ``reviewer``: whoever holds it decides as them, so it
    goes only where that reviewer alone reads it (a direct message), never to a channel."""
    token = sign_link(st.secret_key, request_id, reviewer, ttl=st.link_ttl)
    return f"{st.review_url(request_id)}?t={token}"


def _login_path(next_path: str) -> str:
    return "/login?" + urlencode({"next": next_path})


def _not_found(request_id: str, viewer: Viewer | None = None) -> Response:
    return message(
        "Request not found",
        f"There is no request {request_id}.",
        status=404,
        viewer=viewer,
        links=[("/inbox", "Your inbox")],
    )


async def _bad_link(
    st: ServerState,
    req: ApprovalRequest,
    token: str,
    err: LinkError,
    verdict: Verdict | None = None,
) -> Response:
    """Refuse a link. It proves no identity, so it is counted as ``link.rejected`` with no actor
    (rate-limited: :mod:`sluicegate.server.pages.refused_links`), never as a reviewer's act."""
    why = str(err)
    note = partial(
        st.refused_links.note,
        req,
        claimed=claimed_reviewer(token),
        reason=why,
        verdict=verdict.value if verdict else None,
    )
    await anyio.to_thread.run_sync(note)  # it may write (through the writer): off the loop
    st.metrics.rejected.inc()
    return message(
        "This review link cannot be used",
        f"{why[:1].upper()}{why[1:]}. Ask for a new link, or sign in with a review token.",
        status=403,
        links=[(_login_path(f"/r/{req.id}"), "Sign in")],
    )


def _cannot_decide(st: ServerState, req: ApprovalRequest, viewer: Viewer) -> str | None:
    """Why ``viewer`` sees no form on ``req``'s page, or None when they may decide."""
    if req.status is not Status.PENDING:
        return f"This request is {req.status.value}; it can no longer be decided."
    if req.is_expired():
        return "This request has expired; it can no longer be decided."
    mine = next((d for d in req.decisions if d.reviewer == viewer.reviewer), None)
    if mine is not None:
        return f"You already decided: {mine.verdict.value}."
    why = st.workflow.eligibility(req, viewer.reviewer)
    if why is None:
        return None
    prefix = f"{viewer.reviewer!r} cannot approve this request: is "
    if why.startswith(prefix):  # the policy's self-approval sentences, said to the viewer
        return f"You cannot decide this request: you are {why[len(prefix) :]}."
    return f"You cannot decide this request: {why}."


def _review(
    st: ServerState,
    req: ApprovalRequest,
    viewer: Viewer,
    *,
    status: int = 200,
    error: str = "",
    comment: str = "",
) -> Response:
    """The review page for ``viewer``, with the form when they may decide."""
    cannot = _cannot_decide(st, req, viewer)
    form = None
    if cannot is None:
        form = {
            "csrf": csrf_token(st.secret_key, str(req.id), viewer),
            "link_token": viewer.link_token or "",
            "comment": comment,
        }
    return render(
        "review.html",
        status=status,
        viewer=viewer,
        r=request_view(st, req, utcnow()),
        form=form,
        cannot=cannot or "",
        error=error,
    )


@router.get("/r/{request_id}")
async def review_page(request_id: str, request: Request, t: str = "") -> Response:
    """The review page. Needs an identity: a link (``?t=``), a session, or the SSO header."""
    st = state_of(request)
    viewer = None if t else await signed_in(request, st)
    if viewer is None and not t:
        return redirect(_login_path(f"/r/{request_id}"))
    try:
        req = await st.writer.get(request_id)
    except NotFoundError:
        return _not_found(request_id, viewer)
    if viewer is None:  # then there is a link
        try:
            viewer = link_viewer(st, t, str(req.id))
        except LinkError as err:
            return await _bad_link(st, req, t, err)
    return _review(st, req, viewer)


def _form_problem(comment: str) -> str | None:
    """What is wrong with the form's text itself (nothing is spent on it: a link, a row)."""
    if len(comment) > _MAX_COMMENT:
        return f"The comment is longer than {_MAX_COMMENT} characters."
    if "\x00" in comment:
        return "The comment must not contain NUL characters."
    return None


@router.post("/r/{request_id}/decide")
async def decide_form(
    request_id: str,
    request: Request,
    verdict: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    fingerprint: Annotated[str, Form()] = "",
    t: Annotated[str, Form()] = "",
) -> Response:
    """Record the viewer's decision from the review page's form."""
    st = state_of(request)
    signed = None if t else await signed_in(request, st)
    if signed is None and not t:
        return message(
            "Sign in to decide",
            "Open your review link again, or sign in with a review token.",
            status=403,
            links=[(_login_path(f"/r/{request_id}"), "Sign in")],
        )
    try:
        req = await st.writer.get(request_id)
    except NotFoundError:
        return _not_found(request_id, signed)
    rid = str(req.id)
    try:
        chosen: Verdict | None = Verdict(verdict)
    except ValueError:
        chosen = None
    if signed is not None:
        viewer = signed
    else:
        try:
            viewer = link_viewer(st, t, rid)
        except LinkError as err:
            return await _bad_link(st, req, t, err, chosen)
    if not csrf_ok(st.keys.verifying, rid, viewer, csrf):
        return message(
            "The form expired",
            "The form's security token is missing or wrong; nothing was recorded. "
            "Open the request again and decide from its page.",
            status=403,
            viewer=viewer,
            links=[(f"/r/{rid}", "The request")] if viewer.via != "link" else [],
        )
    problem = "Choose Approve or Deny." if chosen is None else _form_problem(comment)
    if chosen is None or problem is not None:
        return _review(st, req, viewer, status=422, error=problem or "", comment=comment)
    return await _decide(st, req, viewer, chosen, comment, fingerprint)


async def _decide(
    st: ServerState,
    req: ApprovalRequest,
    viewer: Viewer,
    verdict: Verdict,
    comment: str,
    fingerprint: str,
) -> Response:
    """Call the decision path and answer with the result page, or the refusal in words."""
    rid = str(req.id)
    back = f"/r/{rid}" + (f"?t={viewer.link_token}" if viewer.link_token else "")
    links = [(back, "The request")]
    try:
        outcome = await st.gates.decide(
            rid,
            reviewer=viewer.reviewer,
            verdict=verdict,
            comment=comment,
            channel=viewer.channel,
            fingerprint=fingerprint or None,
            link=viewer.link_nonce,
        )
    except LinkUsedError:  # recorded as decision.rejected by the workflow
        return message(
            "This review link was already used",
            "A review link decides once; this link was already used. Nothing was recorded.",
            status=403,
            viewer=viewer,
        )
    except ForbiddenError as err:  # recorded as decision.rejected by the workflow
        return message(
            "You cannot decide this request",
            f"{err}. Nothing was recorded.",
            status=403,
            viewer=viewer,
            links=links,
        )
    except CommentRequiredError:  # asked before the link is spent: the form still works
        error = "A comment is required to deny this request."
        return _review(st, req, viewer, status=422, error=error, comment=comment)
    except TransitionError as err:  # ConflictError too: ended, decided, or the action changed
        return message("Nothing was recorded", f"{err}.", status=409, viewer=viewer, links=links)
    except (ActionError, ValidationError) as err:
        return _review(st, req, viewer, status=422, error=str(err), comment=comment)
    except NotFoundError:
        return _not_found(rid, viewer)
    past = "approved" if verdict is Verdict.APPROVE else "denied"
    if outcome.ended is not None:
        result = f"the request is {outcome.ended.value}"
    else:
        result = request_view(st, outcome.request, utcnow()).progress
    return message(
        "Decision recorded",
        f"You {past} request {rid}: {result}.",
        status=200,
        viewer=viewer,
        links=links,
    )


#: Pending requests read for one inbox page (the viewer sees those of them they may decide).
INBOX_PAGE = 100


@router.get("/inbox")
async def inbox(request: Request, before: str = "") -> Response:
    """The pending requests the signed-in reviewer may decide, newest first, a page of
    :data:`INBOX_PAGE` pending requests at a time (``?before=``: the last id of the previous
    page)."""
    st = state_of(request)
    viewer = await signed_in(request, st)
    if viewer is None:
        return redirect(_login_path("/inbox"))
    try:
        cursor = str(uuid.UUID(before)) if before else None
    except ValueError:
        return message("Not a request id", f"{before!r} is not a request id.", status=400)
    now = utcnow()

    def page(pending: list[ApprovalRequest]) -> Response:
        mine = [
            request_view(st, req, now)
            for req in pending
            if not req.is_expired(now)
            and not any(d.reviewer == viewer.reviewer for d in req.decisions)
            and st.workflow.eligibility(req, viewer.reviewer) is None
        ]
        older = str(pending[-1].id) if len(pending) == INBOX_PAGE else ""
        return render(
            "inbox.html",
            viewer=viewer,
            items=mine,
            reviewer_known=st.policy.reviewer(viewer.reviewer) is not None,
            older=f"/inbox?{urlencode({'before': older})}" if older else "",
            newest=cursor is not None,
        )

    # Read and rendered in a worker thread: never on the event loop.
    return await st.gates.list_requests(
        page, status=Status.PENDING, limit=INBOX_PAGE, before=cursor
    )
