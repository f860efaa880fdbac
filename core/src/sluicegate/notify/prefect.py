"""Resuming a paused Prefect flow run once its gate is decided: one HTTP call to Prefect's API.

Prefect's own ``pause_flow_run`` notices a resume only at its next state check (every 10 s by
default); the gate in ``prefect_sluicegate`` waits on this server instead, and this call puts
the run back to Running in Prefect the moment the request ends, with the outcome as the run
input that the gate's ``RunInput`` expects (:func:`run_input`). The gate never trusts that
input: it asks this server for the decision before it lets the flow go on.

No Prefect import: the core stays free of orchestrators; the call is
``POST {api_url}/flow_runs/{id}/resume`` with ``{"run_input": {...}}``, authenticated as
Prefect's clients are (a bearer API key for Prefect Cloud, basic auth for a self-hosted server
with ``PREFECT_SERVER_API_AUTH_STRING``). Neither credential appears in an error or a log.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx

from sluicegate.model import ApprovalRequest
from sluicegate.notify.errors import BACKOFF, SendError
from sluicegate.settings import PrefectSettings

__all__ = ["auth_headers", "resume_flow_run", "run_input"]

#: Seconds to wait before asking again when Prefect answers WAIT without saying how long.
_WAIT_DEFAULT = 1.0
#: Errors of a connection that was dead before the request got an answer.
_STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError)
#: Seconds before the one quick retry of a 5xx. Prefect answers 503 while its database is
#: busy (SQLite locked), which passes in moments; the row's backoff (2 s) would instead wait
#: out the gate's whole grace (``RESUME_GRACE``, also 2 s) while the flow run stays paused.
_RETRY_5XX_AFTER = 0.2


def run_input(request: ApprovalRequest) -> dict[str, str]:
    """The run input of the resume: which request ended, and how (the gate checks both)."""
    return {"request_id": str(request.id), "status": request.status.value}


def auth_headers(settings: PrefectSettings) -> dict[str, str]:
    """The ``Authorization`` header Prefect's API expects, if a credential is configured."""
    if settings.api_key is not None:
        return {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
    if settings.auth_string is not None:
        raw = settings.auth_string.get_secret_value().encode()
        return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
    return {}


def resume_flow_run(
    http: httpx.Client, settings: PrefectSettings, flow_run_id: str, request: ApprovalRequest
) -> dict[str, Any]:
    """Resume ``flow_run_id`` with the outcome of ``request``; what Prefect answered.

    A 5xx is tried again once, after a moment. Raises :class:`SendError`: retried after a
    backoff when Prefect is down or answers 5xx twice (or after its delay for WAIT); final for
    a refusal (4xx, or a run that is not paused, or run input Prefect does not accept), which
    no retry can change.
    """
    if settings.api_url is None:
        raise SendError("no Prefect API URL (prefect.api_url)", None)
    if not request.status.terminal:  # planned only for the end; a request never reopens
        raise SendError(f"request {request.id} has not ended", None)
    url = f"{settings.api_url}/flow_runs/{flow_run_id}/resume"
    body = {"run_input": run_input(request)}
    headers = auth_headers(settings)
    response = _post(http, url, body, headers)
    if response.status_code >= 500:
        # One more try, soon (see _RETRY_5XX_AFTER); a second 5xx takes the row's backoff. A
        # repeated resume is harmless: a run no longer paused answers ABORT, which is final.
        time.sleep(_RETRY_5XX_AFTER)
        response = _post(http, url, body, headers)
    if response.status_code == 429:
        retry = float(response.headers.get("Retry-After", "1") or 1)
        raise SendError("Prefect API: rate limited", retry)
    if response.status_code >= 500:
        raise SendError(f"Prefect API: HTTP {response.status_code}", BACKOFF)
    if response.status_code >= 400:
        raise SendError(f"Prefect API: HTTP {response.status_code}", None)
    try:
        answer = response.json()
        status = str(answer["status"]).upper()
        details = answer.get("details") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SendError("Prefect API: the answer is not an orchestration result", None) from None
    if status == "ACCEPT":
        return {"status": status}
    reason = str(details.get("reason") or "")[:300]
    if status == "WAIT":
        delay = details.get("delay_seconds")
        retry = float(delay) if isinstance(delay, int | float) and delay >= 0 else _WAIT_DEFAULT
        raise SendError(f"Prefect asked to wait before resuming flow run {flow_run_id}", retry)
    raise SendError(f"Prefect did not resume flow run {flow_run_id}: {status} {reason}", None)


def _post(
    http: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    """One resume call: Prefect's answer, whatever its status; SendError without one."""
    try:
        try:
            return http.post(url, json=body, headers=headers)
        except _STALE:
            # Most often a pooled keep-alive connection that Prefect's server closed while it
            # sat idle (uvicorn drops them after 5 s): one more try on a fresh connection,
            # rather than the row's backoff (2 s) while the flow run waits.
            return http.post(url, json=body, headers=headers)
    except httpx.HTTPError as err:
        raise SendError(f"Prefect API: {type(err).__name__}", BACKOFF) from None
