"""HTTP API v1, audit: stream the audit log (JSON Lines or CSV) and verify its hash chain.

Only an ``audit`` token reads the audit log, so that who can read the whole trail is one
explicit list (:func:`sluicegate.server.auth.require_audit`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator

from sluicegate import audit
from sluicegate.server.api._answers import json_answer
from sluicegate.server.auth import Identity, require_audit
from sluicegate.server.errors import ApiError
from sluicegate.server.wiring import ServerState, state_dependency
from sluicegate.wire import VerifyOut

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["audit"])
log = logging.getLogger("sluicegate.server")
State = Annotated[ServerState, Depends(state_dependency)]

# Query text goes into SQL filters: PostgreSQL cannot compare text holding NUL.
_NO_NUL = r"^[^\x00]*$"


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
    return json_answer(
        VerifyOut(ok=r.ok, rows=r.rows, head=r.head, bad_seq=r.bad_seq, problem=r.problem)
    )
