"""HTTP client of the approval server, sync and async, and the gate every adapter uses.

:class:`SluicegateClient` and :class:`AsyncSluicegateClient` speak API v1; :meth:`gate`
opens a gate and waits (by long poll) until it may proceed or is refused. The gate fails
closed: a server that cannot be reached, or answers 503 (its database) or a proxy's 5xx, is
retried with backoff until the caller's deadline, and nothing but an ``allowed`` or
``approved`` answer lets the step run. What asking again cannot change is raised at once: a
gate the server would refuse (checked before it is sent: :class:`ActionError`), a 4xx, and
the server's own 500 (an unexpected fault, or a misconfigured server).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from sluicegate.direct import DirectConnection, Reply
from sluicegate.exceptions import ActionError, ClientError, UnreachableError
from sluicegate.model import Action, Verdict, parse_action, validation_message
from sluicegate.settings import load_settings
from sluicegate.wire import GateIn, RequesterIn, RequestOut, RequestPage, VerifyOut

__all__ = ["AsyncSluicegateClient", "GateRefused", "SluicegateClient"]

_LONG_POLL = 30.0
log = logging.getLogger("sluicegate.client")


@functools.lru_cache(maxsize=1)
def _ca_verified() -> ssl.SSLContext:
    """httpx's default TLS context (certifi, or SSL_CERT_FILE/SSL_CERT_DIR), made once.

    Making it loads the CA bundle: 30-50 ms, which every new client paid again (an Airflow
    gate makes one per task run, and one more when it resumes).
    """
    return httpx.create_ssl_context()


@functools.lru_cache(maxsize=1)
def _trusts_nobody() -> ssl.SSLContext:
    """A TLS context with no CA: any certificate fails. For a server on plain ``http://``,
    where TLS is never used (redirects are not followed), so a fresh task process does not
    load the CA bundle it would never need; were it ever used, it fails closed."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _tls(server_url: str) -> ssl.SSLContext:
    return _ca_verified() if server_url.lower().startswith("https:") else _trusts_nobody()


#: The variables through which httpx takes a proxy from the environment (NO_PROXY only
#: narrows these; SSL_CERT_FILE/DIR are read by :func:`_ca_verified`).
_PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy",
                    "ALL_PROXY")  # fmt: skip


def _proxies_in_environment() -> bool:
    """Whether the environment names a proxy: only then must httpx read it (``trust_env``),
    and only then does the blocking client need httpx at all (:mod:`sluicegate.direct`).

    httpx finds proxies by scanning every environment variable (``urllib``'s
    ``getproxies()``) for each new client, and an Airflow task has hundreds of them; a few
    look-ups tell the same.
    """
    if sys.platform in ("darwin", "win32"):  # there urllib also reads the system's settings
        return True
    return any(os.environ.get(name) for name in _PROXY_VARIABLES)


def _httpx_options(
    server_url: str, headers: dict[str, str], timeout: float, transport: Any
) -> dict[str, Any]:
    """The arguments of the httpx client either client makes (a transport given by the caller
    carries its own connections: the environment's proxies do not apply to it)."""
    return {
        "base_url": server_url,
        "headers": headers,
        "timeout": timeout,
        "transport": transport,
        "verify": _tls(server_url),
        "trust_env": _proxies_in_environment(),
    }


class GateRefused(ClientError):
    """The gate ended without permission: denied, expired or cancelled."""

    def __init__(self, answer: RequestOut) -> None:
        last = next((d for d in reversed(answer.decisions) if d.verdict is Verdict.DENY), None)
        why = (
            f" by {last.reviewer}: {last.comment}"
            if last and last.comment
            else (f" by {last.reviewer}" if last else "")
        )
        reason = f" ({answer.reason})" if answer.reason else ""
        super().__init__(
            403, answer.status, f"request {answer.id} was {answer.status}{why}{reason}"
        )
        self.answer = answer


def _settings_defaults(server_url: str | None, token: str | None) -> tuple[str, str | None]:
    if server_url is None or token is None:
        s = load_settings()
        server_url = server_url or s.server_url
        if token is None and s.token is not None:
            token = s.token.get_secret_value()
    return _checked_url(server_url), token


def _checked_url(server_url: str) -> str:
    """``server_url`` without its trailing slash, once it is sure to be an ``http(s)`` URL with
    a host and a port that exists: ``ValueError`` naming it otherwise, when the client is made,
    rather than an error of the standard library at its first call."""
    parts = urlsplit(server_url)
    # Shown without what comes before an "@": a URL may carry credentials.
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as err:
        raise ValueError(f"server URL {shown!r}: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"server URL {shown!r} is not an http:// or https:// URL with a host")
    return server_url.rstrip("/")


def _raise_for(response: httpx.Response | Reply) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        error, detail = str(body["error"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        error, detail = "http_error", response.text[:200] or response.reason_phrase
    raise ClientError(response.status_code, error, detail)


def _gate_body(
    idempotency_key: str,
    action: Action | Mapping[str, Any],
    requester: RequesterIn | Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The body of a gate's request, checked here: what the server would refuse (422) is
    refused before it is sent, as :class:`ActionError` in one line."""
    try:
        body = GateIn(
            idempotency_key=idempotency_key,
            action=action if isinstance(action, Action) else parse_action(action),
            requester=requester
            if isinstance(requester, RequesterIn)
            else RequesterIn.model_validate(requester or {}),
        )
    except ValidationError as err:
        raise ActionError(validation_message(err, "gate")) from err
    return body.model_dump(mode="json")


def _backoff(attempt: int) -> float:
    return float(min(30.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2))


# The sync and async clients share everything but the I/O: the helpers below hold the rules
# (what to retry, how long to sleep, what an answer means), the classes only do the calls.


def _retry_delay(err: ClientError, attempt: int, deadline: float | None) -> float:
    """How long to sleep before retrying after ``err``; re-raises it when retrying is wrong.

    Only what may change is retried (:attr:`ClientError.transient`), and never past the
    deadline: the gate fails closed, it does not wait forever on a caller's behalf.
    """
    if not err.transient:
        raise err
    if deadline is None:
        return _backoff(attempt)
    left = deadline - time.monotonic()
    if left <= 0:
        raise err
    return min(_backoff(attempt), left)


def _poll_timeout(deadline: float | None) -> float:
    """The next long poll's timeout; 0 or less means the deadline has passed."""
    if deadline is None:
        return _LONG_POLL
    left = deadline - time.monotonic()
    return min(_LONG_POLL, max(left, 0.1)) if left > 0 else 0.0


def _settle(answer: RequestOut, timeout: float | None) -> RequestOut:
    """``answer`` if the step may proceed; else :class:`GateRefused`, or a timeout error."""
    if answer.may_proceed:
        return answer
    if not answer.terminal:
        raise ClientError(408, "timeout", f"request {answer.id} is still pending after {timeout} s")
    raise GateRefused(answer)


def _decision_body(verdict: Verdict | str, comment: str, fingerprint: str | None) -> dict[str, Any]:
    return {"verdict": Verdict(verdict).value, "comment": comment, "fingerprint": fingerprint}


def _list_params(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


def _wait_params(timeout: float) -> dict[str, Any]:
    # The HTTP timeout outlives the long poll, so a slow answer is not taken for a dead server.
    return {"params": {"timeout": timeout}, "timeout": timeout + 10}


class SluicegateClient:
    """Blocking client. ``server_url`` and ``token`` default to the settings."""

    def __init__(
        self,
        server_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server_url, token = _settings_defaults(server_url, token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Straight through http.client (sluicegate.direct says why), unless a proxy or a
        # transport asks for httpx.
        self._direct: DirectConnection | None = None
        self._http: httpx.Client | None = None
        if transport is None and not _proxies_in_environment():
            self._direct = DirectConnection(
                self.server_url, headers, timeout=timeout, tls=_tls(self.server_url)
            )
        else:
            self._http = httpx.Client(
                **_httpx_options(self.server_url, headers, timeout, transport)
            )

    def close(self) -> None:
        """Close the connection."""
        if self._direct is not None:
            self._direct.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> SluicegateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **options: Any) -> Any:
        """One whole call: the answer's JSON (``options`` as :meth:`_start` takes)."""
        return self._start(method, path, **options)()

    def _start(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Callable[[], Any]:
        """Send the request now (its own connection) and return the function that reads the
        answer's JSON, raising what the call raises. Through httpx the whole call is made
        when the answer is read."""
        direct = self._direct
        if direct is None:
            return lambda: self._through_httpx(method, path, timeout, json, params)
        try:
            direct.send(method, path, json_body=json, params=params, timeout=timeout)
        except UnreachableError as err:
            failure = err

            def failed() -> Any:
                raise failure

            return failed

        def read() -> Any:
            reply = direct.receive()
            _raise_for(reply)
            return reply.json()

        return read

    def _through_httpx(
        self,
        method: str,
        path: str,
        timeout: float | None,
        json: Any,
        params: Mapping[str, Any] | None,
    ) -> Any:
        assert self._http is not None
        try:
            response = self._http.request(
                method, path, json=json, params=params, timeout=timeout or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.TransportError as err:
            raise UnreachableError(f"cannot reach {self.server_url}: {err}") from err
        _raise_for(response)
        return response.json()

    def open_gate(
        self,
        idempotency_key: str,
        action: Action | Mapping[str, Any],
        requester: RequesterIn | Mapping[str, Any] | None = None,
    ) -> RequestOut:
        """Open (or reattach to) a gate; answers allowed, denied or the request."""
        return self.start_open_gate(idempotency_key, action, requester)()

    def start_open_gate(
        self,
        idempotency_key: str,
        action: Action | Mapping[str, Any],
        requester: RequesterIn | Mapping[str, Any] | None = None,
    ) -> Callable[[], RequestOut]:
        """Send :meth:`open_gate` now and read its answer when the returned function is
        called; the server works on it in between (an Airflow gate sends it as soon as the
        task's templates are rendered and reads it in ``execute``). Nothing else may go
        through this client before the answer is read. A failure to send is raised when
        reading, as :meth:`open_gate` raises it; through httpx (a proxy, a given transport)
        the whole call is made then."""
        read = self._start(
            "POST", "/api/v1/requests", json=_gate_body(idempotency_key, action, requester)
        )
        return lambda: RequestOut.model_validate(read())

    def get(self, request_id: str) -> RequestOut:
        """The request now."""
        return RequestOut.model_validate(self._call("GET", f"/api/v1/requests/{request_id}"))

    def wait(self, request_id: str, timeout: float = _LONG_POLL) -> RequestOut:
        """One long poll: returns when terminal or after ``timeout`` seconds."""
        path = f"/api/v1/requests/{request_id}/wait"
        return RequestOut.model_validate(self._call("GET", path, **_wait_params(timeout)))

    def decide(
        self,
        request_id: str,
        verdict: Verdict | str,
        comment: str = "",
        fingerprint: str | None = None,
    ) -> RequestOut:
        """Approve or deny (needs a review token)."""
        body = _decision_body(verdict, comment, fingerprint)
        path = f"/api/v1/requests/{request_id}/decisions"
        return RequestOut.model_validate(self._call("POST", path, json=body))

    def cancel(self, request_id: str, reason: str = "") -> RequestOut:
        """Withdraw a request (needs the request token that opened it)."""
        path = f"/api/v1/requests/{request_id}/cancel"
        return RequestOut.model_validate(self._call("POST", path, json={"reason": reason}))

    def release(self, request_id: str) -> RequestOut:
        """Record that the gated step went ahead (``gate.released``)."""
        path = f"/api/v1/requests/{request_id}/release"
        return RequestOut.model_validate(self._call("POST", path))

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
        params = _list_params(status=status, dataset=dataset, job=job, limit=limit, before=before)
        return RequestPage.model_validate(self._call("GET", "/api/v1/requests", params=params))

    def verify_audit(self) -> VerifyOut:
        """The server's audit chain check."""
        return VerifyOut.model_validate(self._call("GET", "/api/v1/audit/verify"))

    def wait_until_done(self, request_id: str, *, deadline: float | None = None) -> RequestOut:
        """Long-poll until terminal; unreachable servers are retried with backoff.

        ``deadline`` is a ``time.monotonic()`` value; past it, the last answer is returned
        (still pending): the caller decides, and a gate never treats that as approval.
        """
        attempt = 0
        last: RequestOut | None = None
        while (poll := _poll_timeout(deadline)) > 0:
            try:
                last = self.wait(request_id, timeout=poll)
            except ClientError as err:
                time.sleep(_retry_delay(err, attempt, deadline))
                attempt += 1
                continue
            attempt = 0
            if last.terminal:
                return last
        return last if last is not None else self.get(request_id)

    def gate(
        self,
        idempotency_key: str,
        action: Action | Mapping[str, Any],
        requester: RequesterIn | Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> RequestOut:
        """Open a gate and block until the step may proceed; raise :class:`GateRefused` if not.

        Fails closed: an unreachable server is retried until ``timeout`` (seconds; None waits
        as long as it takes), then the last error is raised.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        answer = self.open_until(idempotency_key, action, requester, deadline=deadline)
        if not answer.terminal:
            answer = self.wait_until_done(answer.id, deadline=deadline)
        answer = _settle(answer, timeout)
        self.record_release(answer)
        return answer

    def open_until(
        self,
        idempotency_key: str,
        action: Action | Mapping[str, Any],
        requester: RequesterIn | Mapping[str, Any] | None = None,
        *,
        deadline: float | None = None,
    ) -> RequestOut:
        """:meth:`open_gate`, retrying an unreachable server (or a 5xx) with backoff until
        ``deadline`` (a ``time.monotonic()`` value; None: as long as it takes), then raising
        the last error. Other errors (a bad token, a bad action) are raised at once."""
        attempt = 0
        while True:
            try:
                return self.open_gate(idempotency_key, action, requester)
            except ClientError as err:
                time.sleep(_retry_delay(err, attempt, deadline))
                attempt += 1

    def record_release(self, answer: RequestOut) -> None:
        """Record that the step went on (``release``) when ``answer`` is a request that let it
        (:attr:`RequestOut.releases`). A failure only logs: the approval stands, and the
        step must not fail for a missing audit row of its release."""
        if not answer.releases:
            return
        try:
            self.release(answer.id)
        except ClientError as err:
            log.warning("could not record the release of request %s: %s", answer.id, err)


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
        self.server_url, token = _settings_defaults(server_url, token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            **_httpx_options(self.server_url, headers, timeout, transport)
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSluicegateClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(
        self, method: str, path: str, *, timeout: float | None = None, **kw: Any
    ) -> Any:
        try:
            response = await self._http.request(
                method, path, timeout=timeout or httpx.USE_CLIENT_DEFAULT, **kw
            )
        except httpx.TransportError as err:
            raise UnreachableError(f"cannot reach {self.server_url}: {err}") from err
        _raise_for(response)
        return response.json()

    async def open_gate(
        self,
        idempotency_key: str,
        action: Action | Mapping[str, Any],
        requester: RequesterIn | Mapping[str, Any] | None = None,
    ) -> RequestOut:
        """Open (or reattach to) a gate."""
        body = _gate_body(idempotency_key, action, requester)
        return RequestOut.model_validate(await self._call("POST", "/api/v1/requests", json=body))

    async def get(self, request_id: str) -> RequestOut:
        """The request now."""
        return RequestOut.model_validate(await self._call("GET", f"/api/v1/requests/{request_id}"))

    async def wait(self, request_id: str, timeout: float = _LONG_POLL) -> RequestOut:
        """One long poll."""
        path = f"/api/v1/requests/{request_id}/wait"
        return RequestOut.model_validate(await self._call("GET", path, **_wait_params(timeout)))

    async def decide(
        self,
        request_id: str,
        verdict: Verdict | str,
        comment: str = "",
        fingerprint: str | None = None,
    ) -> RequestOut:
        """Approve or deny (needs a review token)."""
        body = _decision_body(verdict, comment, fingerprint)
        path = f"/api/v1/requests/{request_id}/decisions"
        return RequestOut.model_validate(await self._call("POST", path, json=body))

    async def cancel(self, request_id: str, reason: str = "") -> RequestOut:
        """Withdraw a request (needs the request token that opened it)."""
        path = f"/api/v1/requests/{request_id}/cancel"
        return RequestOut.model_validate(await self._call("POST", path, json={"reason": reason}))

    async def release(self, request_id: str) -> RequestOut:
        """Record that the gated step went ahead (``gate.released``)."""
        path = f"/api/v1/requests/{request_id}/release"
        return RequestOut.model_validate(await self._call("POST", path))

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
        params = _list_params(status=status, dataset=dataset, job=job, limit=limit, before=before)
        return RequestPage.model_validate(
            await self._call("GET", "/api/v1/requests", params=params)
        )

    async def wait_until_done(
        self, request_id: str, *, deadline: float | None = None
    ) -> RequestOut:
        """Long-poll until terminal (see :meth:`SluicegateClient.wait_until_done`)."""
        attempt = 0
        last: RequestOut | None = None
        while (poll := _poll_timeout(deadline)) > 0:
            try:
                last = await self.wait(request_id, timeout=poll)
            except ClientError as err:
                await asyncio.sleep(_retry_delay(err, attempt, deadline))
                attempt += 1
                continue
            attempt = 0
            if last.terminal:
                return last
        return last if last is not None else await self.get(request_id)

    async def gate(
        self,
        idempotency_key: str,
        action: Action | Mapping[str, Any],
        requester: RequesterIn | Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> RequestOut:
        """Open a gate and wait until the step may proceed (see :meth:`SluicegateClient.gate`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        answer = await self.open_until(idempotency_key, action, requester, deadline=deadline)
        if not answer.terminal:
            answer = await self.wait_until_done(answer.id, deadline=deadline)
        answer = _settle(answer, timeout)
        await self.record_release(answer)
        return answer

    async def open_until(
        self,
        idempotency_key: str,
        action: Action | Mapping[str, Any],
        requester: RequesterIn | Mapping[str, Any] | None = None,
        *,
        deadline: float | None = None,
    ) -> RequestOut:
        """:meth:`SluicegateClient.open_until`, awaited."""
        attempt = 0
        while True:
            try:
                return await self.open_gate(idempotency_key, action, requester)
            except ClientError as err:
                await asyncio.sleep(_retry_delay(err, attempt, deadline))
                attempt += 1

    async def record_release(self, answer: RequestOut) -> None:
        """:meth:`SluicegateClient.record_release`, awaited."""
        if not answer.releases:
            return
        try:
            await self.release(answer.id)
        except ClientError as err:
            log.warning("could not record the release of request %s: %s", answer.id, err)
