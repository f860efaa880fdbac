"""HTTP API v1: open gates, wait for them, decide, cancel, list, audit.

Routes are thin: they authenticate, translate JSON to the model and call the workflow
(:class:`sluicegate.approvals.Approvals`), which enforces every rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator

from sluicegate import audit
from sluicegate.approvals import CONFLICT, GateAnswer
from sluicegate.exceptions import ForbiddenError
from sluicegate.model import ApprovalRequest, Channel, Requester, Status, Verdict, uuid7
from sluicegate.server.auth import Identity, require_any, require_audit, require_request
from sluicegate.server.errors import ApiError
from sluicegate.server.state import ServerState, state_dependency
from sluicegate.store.repository import request_key
from sluicegate.wire import (
    CancelIn,
    DecisionIn,
    DecisionOut,
    GateIn,
    RequestOut,
    RequestPage,
    VerifyOut,
)

__all__ = ["classifications_of", "record_decision_metrics", "request_out", "router"]

router = APIRouter(prefix="/api/v1", tags=["requests"])
log = logging.getLogger("sluicegate.server")

# Query text goes into SQL filters: PostgreSQL cannot compare text holding NUL.
_NO_NUL = r"^[^\x00]*$"

#: The longest a single long poll may wait; clients loop.
MAX_WAIT_SECONDS = 300.0


def request_out(st: ServerState, req: ApprovalRequest) -> RequestOut:
    """The JSON form of a stored request (built unvalidated: every value comes from the
    model, and this runs on every status read)."""
    return RequestOut.model_construct(
        id=str(req.id),
        status=req.status.value,
        rule=req.rule,
        required_approvals=req.required_approvals,
        approvals=req.approvals,
        denials=req.denials,
        expires_at=req.expires_at,
        review_url=st.review_url(str(req.id)),
        created_at=req.created_at,
        idempotency_key=req.idempotency_key,
        fingerprint=req.fingerprint,
        comment_on_deny=req.comment_on_deny,
        on_timeout=req.on_timeout,
        groups=list(req.groups),
        action=req.action.model_dump(mode="json"),
        classifications=classifications_of(st, req),
        classification_sources={
            key: [c.model_dump(mode="json") for c in found]
            for key, found in req.classifications.items()
        },
        requester=req.requester.model_dump(mode="json"),
        decisions=[
            DecisionOut.model_construct(
                reviewer=d.reviewer,
                verdict=d.verdict,
                comment=d.comment,
                channel=d.channel,
                decided_at=d.decided_at,
            )
            for d in req.decisions
        ],
        lineage_run_id=str(req.lineage_run_id),
        reason="",
    )


def classifications_of(st: ServerState, req: ApprovalRequest) -> dict[str, list[str]]:
    """Each dataset's effective classifications as the gate found them when it opened (the
    policy's own view for requests stored before the server kept them)."""
    if req.classifications:
        return {k: sorted(c.classification for c in v) for k, v in req.classifications.items()}
    return {str(a): sorted(st.policy.classifications_of(a)) for a in req.action.assets}


def _gate_out(
    st: ServerState, answer: GateAnswer, answer_id: str, requester: Requester
) -> RequestOut:
    if answer.request is not None:
        return request_out(st, answer.request)
    ev = answer.evaluation
    # The requester as received, as a request's answer carries it: an adapter's lineage facet
    # of a policy answer names who asked from it (and never the default "api" requester).
    return RequestOut(
        id=answer_id,
        status=answer.status,
        rule=ev.rule,
        reason=ev.reason,
        requester=requester.model_dump(mode="json"),
    )


State = Annotated[ServerState, Depends(state_dependency)]


def _json(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as the response, serialised once by pydantic.

    Routes are async and return a ready Response: FastAPI then neither re-validates the
    answer against its ``response_model`` (which stays for the OpenAPI document) nor runs the
    route in a worker thread. Store work goes to the writer (writes) or ``Writer.read``.
    """
    return Response(model.model_dump_json(), status_code=status_code, media_type=_JSON)


_JSON = "application/json"


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
    requester = Requester(**body.requester.model_dump(), principal=who.principal)
    # What lineage says about the datasets is the server's to know, never the pipeline's.
    if st.lineage.stale:
        await st.writer.read(st.lineage.refresh)
    found = st.lineage.classify(body.action)
    plan = st.approvals.plan_open(
        idempotency_key=body.idempotency_key,
        action=body.action,
        requester=requester,
        inherited=found.inherited,
        classifications=found.sources,
    )
    answer = await st.writer.run_together(st.approvals.commit_opens, plan)
    if answer.status == CONFLICT:
        st.metrics.gates.labels(CONFLICT).inc()
        raise ApiError(409, "conflict", answer.detail)
    st.metrics.gates.labels(
        answer.status if answer.request is None or answer.created else "reattached"
    ).inc()
    return _json(_gate_out(st, answer, str(uuid7()), requester), 201 if answer.created else 200)


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
    """The inbox, newest first; filter by status, dataset (name or namespace::name) and job."""
    items = await st.writer.read(
        lambda: st.store.list_requests(
            status=status,
            dataset=dataset,
            job=job,
            limit=limit,
            before=str(before) if before else None,
        )
    )
    nxt = str(items[-1].id) if len(items) == limit else None
    return _json(RequestPage(items=[request_out(st, r) for r in items], next=nxt))


@router.get(
    "/requests/{request_id}",
    response_model=RequestOut,
    responses={404: {"description": "no such request (`not_found`)"}},
)
async def get_request(
    request_id: str, st: State, _: Annotated[Identity, Depends(require_any)]
) -> Response:
    """The request, its decisions and status."""
    return _json(request_out(st, await st.writer.get(request_id)))


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
    st.metrics.long_polls.inc()
    try:
        req = await st.writer.get(rid)
        while not req.status.terminal and not st.hub.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), timeout=left)
            if not fut.done():
                break  # timed out: answer what we read
            st.hub.discard(rid, fut)
            fut = st.hub.register(rid)
            req = await st.writer.get(rid)
        return _json(request_out(st, req))
    finally:
        st.hub.discard(rid, fut)
        st.metrics.long_polls.dec()


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
    channel = Channel.API if who.via == "token" else Channel.WEB
    if who.scope != "review":
        reason = f"a {who.scope}-scoped token can never decide"
        await st.writer.run(
            st.approvals.reject,
            request_id,
            actor=who.principal,
            reason=reason,
            verdict=body.verdict,
            channel=channel,
        )
        st.metrics.rejected.inc()
        raise ApiError(403, "forbidden", reason)
    try:
        outcome = await st.writer.run(
            st.approvals.decide,
            request_id,
            reviewer=who.principal,
            verdict=body.verdict,
            comment=body.comment,
            channel=channel,
            fingerprint=body.fingerprint,
        )
    except ForbiddenError:
        st.metrics.rejected.inc()
        raise
    record_decision_metrics(st, outcome.request, body.verdict, channel, outcome.ended)
    return _json(request_out(st, outcome.request))


def record_decision_metrics(
    st: ServerState, req: ApprovalRequest, verdict: Verdict, channel: Channel, ended: Status | None
) -> None:
    """Count a recorded decision (shared with the review pages)."""
    st.metrics.decisions.labels(verdict.value, channel.value).inc()
    if ended is not None:
        st.metrics.ended.labels(ended.value).inc()
        last = req.decisions[-1].decided_at if req.decisions else None
        if last is not None:
            st.metrics.latency.observe(max(0.0, (last - req.created_at).total_seconds()))


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
    req = await st.writer.run(
        st.approvals.cancel, request_id, principal=who.principal, reason=body.reason if body else ""
    )
    st.metrics.ended.labels(Status.CANCELLED.value).inc()
    return _json(request_out(st, req))


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
    req = await st.writer.run(st.approvals.release, request_id, principal=who.principal)
    return _json(request_out(st, req))


def _rfc3339(value: object) -> object:
    """A time as RFC 3339 text, as the document says; pydantic alone would also take a number
    (``0.5``: half a second after 1970), which nobody filtering an audit log means."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("give a time as RFC 3339, e.g. 2025-01-31T00:00:00Z") from None
    return value


Moment = Annotated[datetime | None, BeforeValidator(_rfc3339)]


@router.get(
    "/audit",
    tags=["audit"],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
def export_audit(
    st: State,
    _: Annotated[Identity, Depends(require_audit)],
    format: Literal["jsonl", "csv"] = "jsonl",
    since: Moment = None,
    until: Moment = None,
    dataset: Annotated[str | None, Query(max_length=2048, pattern=_NO_NUL)] = None,
    job: Annotated[str | None, Query(max_length=512, pattern=_NO_NUL)] = None,
    reviewer: Annotated[str | None, Query(max_length=256, pattern=_NO_NUL)] = None,
) -> StreamingResponse:
    """Stream the audit log (JSON Lines or CSV), with hashes, filtered (an audit token).

    CSV cells that a spreadsheet would take for a formula start with ``'``
    (:func:`sluicegate.audit.csv_cell`); JSON Lines carry every value as stored.
    """
    for name, when in (("since", since), ("until", until)):
        if when is not None and when.tzinfo is None:
            raise ApiError(422, "invalid_request", f"{name}: give a time zone (e.g. Z or +00:00)")
    flt = audit.ExportFilter(since=since, until=until, dataset=dataset, job=job, reviewer=reviewer)
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(_stream_export(st, format, flt), media_type=media)


class _Gone(Exception):
    """The client went away mid-export."""


def _stream_export(st: ServerState, fmt: str, flt: audit.ExportFilter) -> Iterator[str]:
    """Run the (blocking, streaming) export in a thread and hand its batches on as they come.

    The queue is small, so a slow client slows the export instead of filling memory; a client
    that leaves stops it. A failure mid-way is raised here, which drops the connection: a cut
    export must never look like a complete one.
    """
    q: queue.Queue[str | BaseException | None] = queue.Queue(maxsize=8)
    gone = threading.Event()

    def put(item: str | BaseException | None) -> bool:
        while not gone.is_set():
            try:
                q.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    class _Sink:
        def write(self, text: str) -> int:
            if not put(text):
                raise _Gone
            return len(text)

        def flush(self) -> None:
            pass

    def run() -> None:
        try:
            audit.export(st.store.engine, _Sink(), fmt, flt)  # type: ignore[arg-type]
        except _Gone:
            return
        except Exception as err:  # handed to the response, which aborts
            log.exception("audit export failed")
            put(err)
            return
        put(None)

    threading.Thread(target=run, daemon=True, name="audit-export").start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        gone.set()


#: One verification at a time in this process: a walk of the whole chain is CPU and database
#: work that the gates opened meanwhile would share (four at once slowed them fourfold).
_VERIFYING = threading.Lock()
#: What a second verifier is told to wait, in seconds (a million rows take about five).
_VERIFY_RETRY_AFTER = 5


@router.get(
    "/audit/verify",
    tags=["audit"],
    response_model=VerifyOut,
    responses={
        429: {
            "description": "another verification is running; retry after `Retry-After` "
            "seconds (`too_many_requests`)",
            "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}},
        }
    },
)
async def verify_audit(st: State, _: Annotated[Identity, Depends(require_audit)]) -> Response:
    """Walk the audit chain (an audit token); ``ok`` false names the first bad row.

    One verification runs at a time per server process: another one meanwhile is answered
    429 with ``Retry-After`` at once, instead of queueing work behind it.
    """
    if not _VERIFYING.acquire(blocking=False):
        raise ApiError(
            429,
            "too_many_requests",
            "another audit verification is running on this server; retry later",
            {"Retry-After": str(_VERIFY_RETRY_AFTER)},
        )
    try:
        # Not abandoned on cancellation: the lock is held until the walk has really ended.
        r = await anyio.to_thread.run_sync(audit.verify, st.store.engine)
    finally:
        _VERIFYING.release()
    return _json(VerifyOut(ok=r.ok, rows=r.rows, head=r.head, bad_seq=r.bad_seq, problem=r.problem))
