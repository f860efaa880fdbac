"""The calls of HTTP API v1 as values: what a client sends, and how it reads the answer.

Each function here describes one call (:class:`ApiCall`: method, path, body, query, timeout,
and the shape of its answer) without making it. The blocking and the async client both make
them (:meth:`sluicegate.client.SluicegateClient.call`), and the gate hands them to whichever
client drives it (:mod:`sluicegate.gate`), so that building a request and reading its answer
are written once, and only the I/O differs between sync and async.

What the server would refuse as a gate's body (422) is refused here, before anything is sent,
as :class:`~sluicegate.exceptions.ActionError` in one line.

The API's models (:mod:`sluicegate.wire`, pydantic) are imported by each function, when a call
is first described: the gate imports this module in every task process, and a process that
never gates should not build them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote

from sluicegate.exceptions import ActionError

if TYPE_CHECKING:
    from sluicegate.model import Action, Requester, Verdict
    from sluicegate.wire import RequestOut, RequestPage, VerifyOut

__all__ = [
    "LONG_POLL",
    "ApiCall",
    "cancel",
    "decide",
    "get",
    "list_requests",
    "open_gate",
    "release",
    "verify_audit",
    "wait",
]

T = TypeVar("T")

#: The longest one long poll waits by default (the server answers at once when it can).
LONG_POLL = 30.0

#: Extra seconds the HTTP timeout of a long poll allows beyond the poll itself, so that a slow
#: answer is not taken for a dead server.
_POLL_GRACE = 10.0


@dataclass(frozen=True)
class ApiCall(Generic[T]):
    """One call of API v1, described: a client sends ``method path`` with ``json`` and
    ``params``, and turns the answer's JSON into a ``T`` with ``read``.

    ``timeout`` is the call's own HTTP timeout in seconds (None: the client's).
    """

    method: str
    path: str
    read: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, Any] | None = None
    timeout: float | None = None


def _request_out(data: Any) -> RequestOut:
    from sluicegate.wire import RequestOut

    return RequestOut.model_validate(data)


def _request_path(request_id: str, *rest: str) -> str:
    # Quoted whole: an id from a DAG's conf holding a space, a slash or a line break is asked
    # for (and not found) rather than refused as a bad URL or sent as another path.
    return "/".join(("/api/v1/requests", quote(request_id, safe=""), *rest))


def open_gate(
    idempotency_key: str,
    action: Action | Mapping[str, Any],
    requester: Requester | Mapping[str, Any] | None = None,
) -> ApiCall[RequestOut]:
    """Open (or reattach to) a gate: answers allowed, denied, or the request.

    :raises ActionError: the key, the action or the requester would be refused (422).
    """
    from pydantic import ValidationError

    from sluicegate.model import Action, Requester, parse_action, validation_message
    from sluicegate.wire import GateIn, RequesterIn

    try:
        if isinstance(requester, Requester) and not isinstance(requester, RequesterIn):
            # Validated already; only the API's own restrictions are left to check. The
            # principal is the token's, never the body's.
            requester = RequesterIn.model_validate({**dict(requester), "principal": None})
        body = GateIn(
            idempotency_key=idempotency_key,
            action=action if isinstance(action, Action) else parse_action(action),
            requester=requester
            if isinstance(requester, RequesterIn)
            else RequesterIn.model_validate(requester or {}),
        )
    except ValidationError as err:
        raise ActionError(validation_message(err, "gate")) from err
    return ApiCall(
        "POST",
        "/api/v1/requests",
        _request_out,
        json=body.model_dump(mode="json", exclude={"requester": {"principal"}}),
    )


def get(request_id: str) -> ApiCall[RequestOut]:
    """The request now."""
    return ApiCall("GET", _request_path(request_id), _request_out)


def wait(request_id: str, timeout: float = LONG_POLL) -> ApiCall[RequestOut]:
    """One long poll: the server answers once the request is terminal, or after ``timeout``
    seconds with the request as it is."""
    return ApiCall(
        "GET",
        _request_path(request_id, "wait"),
        _request_out,
        params={"timeout": timeout},
        timeout=timeout + _POLL_GRACE,
    )


def decide(
    request_id: str, verdict: Verdict | str, comment: str = "", fingerprint: str | None = None
) -> ApiCall[RequestOut]:
    """A reviewer's approval or denial (a review token); ``fingerprint`` binds it to the
    action the reviewer was shown."""
    from sluicegate.model import Verdict

    body = {"verdict": Verdict(verdict).value, "comment": comment, "fingerprint": fingerprint}
    return ApiCall("POST", _request_path(request_id, "decisions"), _request_out, json=body)


def cancel(request_id: str, reason: str = "") -> ApiCall[RequestOut]:
    """Withdraw a request (the request token that opened it)."""
    return ApiCall(
        "POST",
        _request_path(request_id, "cancel"),
        _request_out,
        json={"reason": reason},
    )


def release(request_id: str) -> ApiCall[RequestOut]:
    """Record that the gated step went ahead (``gate.released``)."""
    return ApiCall("POST", _request_path(request_id, "release"), _request_out)


def list_requests(
    *,
    status: str | None = None,
    dataset: str | None = None,
    job: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> ApiCall[RequestPage]:
    """A page of requests, newest first."""
    from sluicegate.wire import RequestPage

    given = {"status": status, "dataset": dataset, "job": job, "limit": limit, "before": before}
    params = {k: v for k, v in given.items() if v is not None}
    return ApiCall("GET", "/api/v1/requests", RequestPage.model_validate, params=params)


def verify_audit() -> ApiCall[VerifyOut]:
    """The server's check of its audit chain (an audit token)."""
    from sluicegate.wire import VerifyOut

    return ApiCall("GET", "/api/v1/audit/verify", VerifyOut.model_validate)
