"""HTTP client of the approval server, blocking and async, speaking API v1 through httpx.

:class:`SluicegateClient` and :class:`AsyncSluicegateClient` make the calls that
:mod:`sluicegate.calls` describes (request building and answer reading live there, once);
the two classes only do the I/O, through ``httpx.Client`` and ``httpx.AsyncClient``. The
gate itself (open, wait, settle, release, retries) is :mod:`sluicegate.gate`;
:meth:`SluicegateClient.gate` is its one-call form, for scripts and the CLI.

Errors: an answer that is not 2xx is :class:`ClientError` (its ``{"error", "detail"}``), a
server that cannot be reached (refused, timed out, an answer that is not HTTP) is
:class:`UnreachableError`, and a gate that ends without permission is :class:`GateRefused`.

httpx is imported when a client is made, not with this module: an adapter's hook imports it
in every task process, gated or not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from sluicegate import calls
from sluicegate.calls import ApiCall
from sluicegate.exceptions import ClientError
from sluicegate.gate import AsyncGate, Gate, GateOutcome

if TYPE_CHECKING:
    import httpx

    from sluicegate.model import Action, Requester, Verdict
    from sluicegate.wire import RequestOut, RequestPage, VerifyOut

__all__ = ["AsyncSluicegateClient", "GateRefused", "SluicegateClient"]

T = TypeVar("T")
log = logging.getLogger("sluicegate.client")

Act: TypeAlias = "Action | Mapping[str, Any]"
Who: TypeAlias = "Requester | Mapping[str, Any] | None"


class GateRefused(ClientError):
    """The gate ended without permission: denied, expired or cancelled.

    ``outcome`` is how it ended (:class:`~sluicegate.gate.GateOutcome`), ``answer`` the
    server's answer; the message names who denied and why.
    """

    def __init__(self, answer: RequestOut | GateOutcome) -> None:
        outcome = answer if isinstance(answer, GateOutcome) else GateOutcome.of(answer)
        super().__init__(403, outcome.request.status, outcome.message)
        self.outcome = outcome
        self.answer = outcome.request


def _passed(outcome: GateOutcome, timeout: float | None) -> RequestOut:
    """The answer of a gate that lets its step go on; else what :meth:`gate` raises."""
    if outcome.proceed:
        return outcome.request
    if not outcome.request.terminal:
        raise ClientError(
            408, "timeout", f"request {outcome.request.id} is still pending after {timeout} s"
        )
    raise GateRefused(outcome)


class SluicegateClient:
    """Blocking client. ``server_url`` and ``token`` default to the settings.

    :param timeout: seconds an ordinary call may take (a long poll takes its own).
    :param transport: an httpx transport (tests: ``httpx.MockTransport``); the environment's
        proxies do not apply to it.
    """

    def __init__(
        self,
        server_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        from sluicegate._http import httpx_options

        self.server_url, options = httpx_options(server_url, token, timeout, transport)
        self._http = httpx.Client(**options)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> SluicegateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, call: ApiCall[T]) -> T:
        """Make one API call (:mod:`sluicegate.calls`) and read its answer.

        :raises ClientError: the server answered with an error.
        :raises UnreachableError: no answer (refused, timed out, not HTTP).
        """
        import httpx  # the client's, imported when it was made

        from sluicegate._http import read_answer, request_args, unreachable

        try:
            response = self._http.request(**request_args(call))
        except httpx.TransportError as err:
            raise unreachable(self.server_url, err) from err
        return read_answer(call, response)

    def open_gate(self, idempotency_key: str, action: Act, requester: Who = None) -> RequestOut:
        """Open (or reattach to) a gate, once: answers allowed, denied or the request."""
        return self.call(calls.open_gate(idempotency_key, action, requester))

    def get(self, request_id: str) -> RequestOut:
        """The request now."""
        return self.call(calls.get(request_id))

    def wait(self, request_id: str, timeout: float = calls.LONG_POLL) -> RequestOut:
        """One long poll: returns when terminal or after ``timeout`` seconds."""
        return self.call(calls.wait(request_id, timeout))

    def decide(
        self,
        request_id: str,
        verdict: Verdict | str,
        comment: str = "",
        fingerprint: str | None = None,
    ) -> RequestOut:
        """Approve or deny (needs a review token)."""
        return self.call(calls.decide(request_id, verdict, comment, fingerprint))

    def cancel(self, request_id: str, reason: str = "") -> RequestOut:
        """Withdraw a request (needs the request token that opened it)."""
        return self.call(calls.cancel(request_id, reason))

    def release(self, request_id: str) -> RequestOut:
        """Record that the gated step went ahead (``gate.released``)."""
        return self.call(calls.release(request_id))

    def list(
        self,
        *,
        status: str | None = None,
        dataset: str | None = None,
        job: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> RequestPage:
        """A page of requests, newest first."""
        return self.call(
            calls.list_requests(status=status, dataset=dataset, job=job, limit=limit, before=before)
        )

    def verify_audit(self) -> VerifyOut:
        """The server's audit chain check."""
        return self.call(calls.verify_audit())

    def gate(
        self,
        idempotency_key: str,
        action: Act,
        requester: Who = None,
        *,
        timeout: float | None = None,
    ) -> RequestOut:
        """Open a gate and block until the step may go on (:meth:`sluicegate.gate.Gate.open`
        with ``wait``): the answer that lets it, its release recorded.

        Fails closed: an unreachable server is retried until ``timeout`` (seconds; None waits
        as long as it takes), then the last error is raised; a request still pending then is
        a ``ClientError`` (408 ``timeout``).

        :raises GateRefused: denied, expired (``on_timeout: deny``) or cancelled.
        """
        outcome = Gate(self).open(idempotency_key, action, requester, wait=True, timeout=timeout)
        return _passed(outcome, timeout)


class AsyncSluicegateClient:
    """Non-blocking client, for triggers and async flows (the same calls, awaited)."""

    def __init__(
        self,
        server_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        import httpx

        from sluicegate._http import httpx_options

        self.server_url, options = httpx_options(server_url, token, timeout, transport)
        self._http = httpx.AsyncClient(**options)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSluicegateClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(self, call: ApiCall[T]) -> T:
        """:meth:`SluicegateClient.call`, awaited."""
        import httpx  # the client's, imported when it was made

        from sluicegate._http import read_answer, request_args, unreachable

        try:
            response = await self._http.request(**request_args(call))
        except httpx.TransportError as err:
            raise unreachable(self.server_url, err) from err
        return read_answer(call, response)

    async def open_gate(
        self, idempotency_key: str, action: Act, requester: Who = None
    ) -> RequestOut:
        """Open (or reattach to) a gate, once."""
        return await self.call(calls.open_gate(idempotency_key, action, requester))

    async def get(self, request_id: str) -> RequestOut:
        """The request now."""
        return await self.call(calls.get(request_id))

    async def wait(self, request_id: str, timeout: float = calls.LONG_POLL) -> RequestOut:
        """One long poll."""
        return await self.call(calls.wait(request_id, timeout))

    async def decide(
        self,
        request_id: str,
        verdict: Verdict | str,
        comment: str = "",
        fingerprint: str | None = None,
    ) -> RequestOut:
        """Approve or deny (needs a review token)."""
        return await self.call(calls.decide(request_id, verdict, comment, fingerprint))

    async def cancel(self, request_id: str, reason: str = "") -> RequestOut:
        """Withdraw a request (needs the request token that opened it)."""
        return await self.call(calls.cancel(request_id, reason))

    async def release(self, request_id: str) -> RequestOut:
        """Record that the gated step went ahead (``gate.released``)."""
        return await self.call(calls.release(request_id))

    async def list(
        self,
        *,
        status: str | None = None,
        dataset: str | None = None,
        job: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> RequestPage:
        """A page of requests, newest first."""
        return await self.call(
            calls.list_requests(status=status, dataset=dataset, job=job, limit=limit, before=before)
        )

    async def verify_audit(self) -> VerifyOut:
        """The server's audit chain check."""
        return await self.call(calls.verify_audit())

    async def gate(
        self,
        idempotency_key: str,
        action: Act,
        requester: Who = None,
        *,
        timeout: float | None = None,
    ) -> RequestOut:
        """:meth:`SluicegateClient.gate`, awaited."""
        gate = AsyncGate(self)
        outcome = await gate.open(idempotency_key, action, requester, wait=True, timeout=timeout)
        return _passed(outcome, timeout)
