"""HTTP API v1, requests: open gates, wait for them, decide, cancel, release, list.

Each route authenticates, translates JSON to the model, calls the server's
:class:`~sluicegate.server.service.GateService` (which runs the workflow on the writer) or a
store read, and answers with JSON; errors are mapped by :mod:`sluicegate.server.errors`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from starlette.types import Receive, Scope, Send

from sluicegate.model import ApprovalRequest, Channel, Status, uuid7
from sluicegate.server.api._answers import gate_out, json_answer, request_out
from sluicegate.server.auth import Identity, require_any, require_request
from sluicegate.server.wiring import ServerState, state_dependency
from sluicegate.store import request_key
from sluicegate.wire import CancelIn, DecisionIn, GateIn, RequestOut, RequestPage

__all__ = ["MAX_WAIT_SECONDS", "router"]

router = APIRouter(prefix="/api/v1", tags=["requests"])
State = Annotated[ServerState, Depends(state_dependency)]

# Query text goes into SQL filters: PostgreSQL cannot compare text holding NUL.
_NO_NUL = r"^[^\x00]*$"

#: The longest a single long poll may wait; clients loop.
MAX_WAIT_SECONDS = 300.0


@router.post(
    "/requests",
    response_model=RequestOut,
    responses={
        201: {"description": "a new request waits"},
        200: {"description": "allowed, denied, or an existing request"},
        409: {
            "description": "the key is another principal's gate, or another action's (`conflict`)"
        },
    },
)
async def open_gate(
    body: GateIn, st: State, who: Annotated[Identity, Depends(require_request)]
) -> Response:
    """Open a gate: the policy allows, denies, or opens (or returns) a request.

    A key that already has a request returns it only to the principal that opened it, for
    the same action: anything else is 409 ``conflict``, recorded in the audit log.
    """
    requester = body.requester.with_principal(who.principal)
    answer = await st.gates.open(
        idempotency_key=body.idempotency_key, action=body.action, requester=requester
    )
    out = gate_out(st, answer, str(uuid7()), requester)
    return json_answer(out, 201 if answer.created else 200)


@router.get("/requests", response_model=RequestPage)
async def list_requests(
    st: State,
    _: Annotated[Identity, Depends(require_any)],
    status: Status | None = None,
    dataset: Annotated[str | None, Query(max_length=2048, pattern=_NO_NUL)] = None,
    job: Annotated[str | None, Query(max_length=512, pattern=_NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: uuid.UUID | None = None,
) -> Response:
    """The inbox, newest first; filter by status, dataset (name or namespace::name) and job.

    Paged by id: ``next`` is the ``before`` of the next page (absent on the last page).
    """
    # Read and serialised in a worker thread (GateService.list_requests), off the event loop.

    def render(items: list[ApprovalRequest]) -> Response:
        nxt = str(items[-1].id) if len(items) == limit else None
        return json_answer(RequestPage(items=[request_out(st, r) for r in items], next=nxt))

    return await st.gates.list_requests(
        render,
        status=status,
        dataset=dataset,
        job=job,
        limit=limit,
        before=str(before) if before else None,
    )


@router.get(
    "/requests/{request_id}",
    response_model=RequestOut,
    responses={404: {"description": "no such request (`not_found`)"}},
)
async def get_request(
    request_id: str, st: State, _: Annotated[Identity, Depends(require_any)]
) -> Response:
    """The request, its decisions and status."""
    return json_answer(request_out(st, await st.writer.get(request_id)))


@router.get(
    "/requests/{request_id}/wait",
    response_model=RequestOut,
    responses={404: {"description": "no such request (`not_found`)"}},
)
async def wait_request(
    request_id: str,
    st: State,
    _: Annotated[Identity, Depends(require_any)],
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 30.0,
) -> Response:
    """Long poll: answers as soon as the request is terminal, or after ``timeout`` seconds.

    A waiter costs no database work while it waits: the hub wakes it on a change (and a
    server-wide sweep catches any notification that was lost), then it reads once.
    """
    rid = request_key(request_id)
    deadline = time.monotonic() + timeout
    fut = st.hub.register(rid)  # register first, then read: no change can slip between
    try:
        req = await st.writer.get(rid)
    except BaseException:
        st.hub.discard(rid, fut)
        raise
    if req.status.terminal or st.hub.closed or timeout <= 0:
        st.hub.discard(rid, fut)
        return json_answer(request_out(st, req))
    # The wait happens in the response, after this function (its dependencies' values and
    # the request just read with them) has returned: 10,000 waiters each kept ~7 KiB of
    # them alive for nothing. What it answers is read again when it wakes.
    return _LongPoll(st, rid, fut, deadline)


class _LongPoll(Response):
    """The answer of a long poll that has to wait: sent once the request ends, the deadline
    passes, or the server stops. One future (the hub's) and one timer per waiter."""

    def __init__(
        self, st: ServerState, rid: str, fut: asyncio.Future[None], deadline: float
    ) -> None:
        # Response's own fields are set when there is something to send (see __call__).
        self.background = None
        self._st, self._rid, self._fut, self._deadline = st, rid, fut, deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        st, rid, fut = self._st, self._rid, self._fut
        st.metrics.long_polls.inc()
        try:
            while True:
                await st.hub.until_changed(fut, self._deadline - time.monotonic())
                st.hub.discard(rid, fut)
                fut = st.hub.register(rid)
                req = await st.writer.get(rid)
                if req.status.terminal or st.hub.closed or time.monotonic() >= self._deadline:
                    break
        finally:
            st.hub.discard(rid, fut)
            st.metrics.long_polls.dec()
        await json_answer(request_out(st, req))(scope, receive, send)


@router.post(
    "/requests/{request_id}/decisions",
    response_model=RequestOut,
    responses={
        403: {
            "description": "not a review token, the reviewer may not decide this request "
            "(not eligible, or its requester), or the fingerprint differs (`forbidden`)"
        },
        404: {"description": "no such request (`not_found`)"},
        409: {"description": "the request has already ended (`conflict`)"},
    },
)
async def decide(
    request_id: str, body: DecisionIn, st: State, who: Annotated[Identity, Depends(require_any)]
) -> Response:
    """A reviewer approves or denies. 403 for self-approval or an ineligible reviewer."""
    # Any token may call, so that a refused one is recorded: only a review identity decides.
    refused = None if who.scope == "review" else f"a {who.scope}-scoped token can never decide"
    outcome = await st.gates.decide(
        request_id,
        reviewer=who.principal,
        verdict=body.verdict,
        comment=body.comment,
        channel=Channel.API if who.via == "token" else Channel.WEB,
        fingerprint=body.fingerprint,
        refused=refused,
    )
    return json_answer(request_out(st, outcome.request))


@router.post(
    "/requests/{request_id}/cancel",
    response_model=RequestOut,
    responses={
        403: {"description": "not the principal that opened the request (`forbidden`)"},
        404: {"description": "no such request (`not_found`)"},
        409: {"description": "the request has already ended (`conflict`)"},
    },
)
async def cancel(
    request_id: str,
    st: State,
    who: Annotated[Identity, Depends(require_request)],
    body: CancelIn | None = None,
) -> Response:
    """The requester withdraws its request."""
    reason = body.reason if body else ""
    req = await st.gates.cancel(request_id, principal=who.principal, reason=reason)
    return json_answer(request_out(st, req))


@router.post(
    "/requests/{request_id}/release",
    response_model=RequestOut,
    responses={
        403: {"description": "not the principal that opened the request (`forbidden`)"},
        404: {"description": "no such request (`not_found`)"},
        409: {"description": "the request let nothing go on (`conflict`)"},
    },
)
async def release(
    request_id: str, st: State, who: Annotated[Identity, Depends(require_request)]
) -> Response:
    """The gated step went ahead: recorded as ``gate.released`` (an approved request, or one
    expired under a rule whose timeout allows). 403 for a principal that did not open it
    (recorded as ``release.rejected``), 409 for a request that let nothing go on."""
    req = await st.gates.release(request_id, principal=who.principal)
    return json_answer(request_out(st, req))
