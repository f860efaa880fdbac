"""Prefect: resuming a paused flow run once its gate is decided, with one call to Prefect's API.

An orchestrator-specific channel: the planner and the dispatcher know of it only through the
registry. A request opened by a Prefect flow run (requester orchestrator ``prefect``, its
``run_id`` the flow run's UUID) gets the target ``prefect:<flow run id>`` for its end alone
(not its creation, no decision in between, no reminder): a paused run is resumed once, with
the outcome.

Prefect's own ``pause_flow_run`` notices a resume only at its next state check (every 10 s by
default); the gate in ``prefect_sluicegate`` waits on this server instead, and this call puts
the run back to Running in Prefect the moment the request ends, with the outcome as the run
input that the gate's ``RunInput`` expects (:func:`run_input`). The gate never trusts that
input: it asks this server for the decision before it lets the flow go on.

No Prefect import: the core stays free of orchestrators; the call is
``POST {api_url}/flow_runs/{id}/resume`` with ``{"run_input": {...}}``, authenticated as
Prefect's clients are (a bearer API key for Prefect Cloud, basic auth for a self-hosted server
with ``PREFECT_SERVER_API_AUTH_STRING``). Neither credential appears in an error or a log.

Prefect answering that the run is not paused (its gate resumed it itself, or it already ended)
is final: the gate does not depend on this call.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from pydantic import SecretStr, field_validator

from sluicegate.model import ApprovalRequest
from sluicegate.notify.channels._http import HttpChannel, retry_after
from sluicegate.notify.channels.base import Change, ChannelConfig, Delivery
from sluicegate.notify.errors import BACKOFF, SendError
from sluicegate.notify.view import END_EVENTS
from sluicegate.settings import Settings

__all__ = ["PrefectChannel", "PrefectConfig", "auth_headers", "run_input"]

#: Seconds to wait before asking again when Prefect answers WAIT without saying how long.
_WAIT_DEFAULT = 1.0
#: Errors of a connection that was dead before the request got an answer.
_STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError)
#: Seconds before the one quick retry. Prefect answers 503 while its database is busy (SQLite
#: locked), which passes in moments, and a pooled keep-alive connection may have been closed by
#: Prefect's server while it sat idle (uvicorn drops them after 5 s); the row's backoff (2 s)
#: would instead wait out the gate's whole grace (``RESUME_GRACE``, also 2 s) while the flow
#: run stays paused.
_QUICK_RETRY = 0.2
#: Prefect's refusal of a resume that came between the run's Paused state and the run input
#: schema its pause saves just after (a decision within ~0.1 s of the pause). Not final: the
#: schema is there moments later, so the row is tried again soon (at most MAX_ATTEMPTS times).
_NO_SCHEMA_YET = "run input schema not found"


class _Busy(Exception):
    """Prefect answered 5xx: worth one quick retry (a repeated resume is harmless: a run no
    longer paused answers ABORT, which is final)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class PrefectConfig(ChannelConfig):
    """Prefect's API (``prefect.*`` in the settings): its URL and at most one credential."""

    api_url: str
    api_key: SecretStr | None = None
    auth_string: SecretStr | None = None

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"Prefect API URL {value!r} must start with http:// or https://")
        return value.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> PrefectConfig | None:
        p = settings.prefect
        if p.api_url is None:
            return None
        return cls(
            api_url=p.api_url,
            api_key=p.api_key,
            auth_string=p.auth_string,
            timeout=settings.notify.timeout,
        )


def run_input(request: ApprovalRequest) -> dict[str, str]:
    """The run input of the resume: which request ended, and how (the gate checks both)."""
    return {"request_id": str(request.id), "status": request.status.value}


def auth_headers(config: PrefectConfig) -> dict[str, str]:
    """The ``Authorization`` header Prefect's API expects, if a credential is configured."""
    if config.api_key is not None:
        return {"Authorization": f"Bearer {config.api_key.get_secret_value()}"}
    if config.auth_string is not None:
        raw = config.auth_string.get_secret_value().encode()
        return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
    return {}


def flow_run_of(request: ApprovalRequest) -> str | None:
    """The flow run a request was opened by, or None for any other requester.

    The run id must be a UUID (what Prefect's flow run ids are): anything else cannot name a
    flow run, and would only fail at every resume attempt.
    """
    requester = request.requester
    if requester.orchestrator != "prefect":
        return None
    try:
        return str(uuid.UUID(requester.run_id))
    except ValueError:
        return None


class PrefectChannel(HttpChannel):
    """Resumes the paused flow run behind a request when it ends (targets ``prefect:<id>``)."""

    kind = "prefect"
    config_class = PrefectConfig

    def __init__(self, config: PrefectConfig) -> None:
        super().__init__(config)
        self.config: PrefectConfig = config

    def accept(self, entry: str) -> str | None:
        return None  # never named in a rule: a request's flow run is found by targets()

    def targets(self, change: Change) -> Sequence[str]:
        if change.event not in END_EVENTS or change.request is None:
            return ()
        run = flow_run_of(change.request)
        return () if run is None else [f"prefect:{run}"]

    def send(self, delivery: Delivery) -> Mapping[str, Any]:
        """Resume the flow run with the request's outcome; what Prefect answered.

        Raises :class:`SendError`: retried after a backoff when Prefect is down or answers 5xx
        twice (or after its delay for WAIT); final for a refusal (4xx, or a run that is not
        paused, or run input Prefect does not accept), which no retry can change.
        """
        request, flow_run_id = delivery.request, delivery.address
        if not request.status.terminal:  # planned only for the end; a request never reopens
            raise SendError(f"request {request.id} has not ended", None)
        url = f"{self.config.api_url}/flow_runs/{flow_run_id}/resume"
        response = self._resume(url, {"run_input": run_input(request)})
        if response.status_code == 429:
            raise SendError("Prefect API: rate limited", retry_after(response.headers))
        if response.status_code >= 500:
            raise SendError(f"Prefect API: HTTP {response.status_code}", BACKOFF)
        if response.status_code >= 400:
            raise SendError(f"Prefect API: HTTP {response.status_code}", None)
        try:
            answer = response.json()
            status = str(answer["status"]).upper()
            details = answer.get("details") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SendError(
                "Prefect API: the answer is not an orchestration result", None
            ) from None
        if status == "ACCEPT":
            return {"status": status}
        reason = str(details.get("reason") or "")[:300]
        if status == "WAIT":
            delay = details.get("delay_seconds")
            retry = float(delay) if isinstance(delay, int | float) and delay >= 0 else _WAIT_DEFAULT
            raise SendError(f"Prefect asked to wait before resuming flow run {flow_run_id}", retry)
        if status == "REJECT" and reason.lower().startswith(_NO_SCHEMA_YET):
            raise SendError(
                f"Prefect has not saved flow run {flow_run_id}'s pause yet", _QUICK_RETRY
            )
        raise SendError(f"Prefect did not resume flow run {flow_run_id}: {status} {reason}", None)

    def _resume(self, url: str, body: dict[str, Any]) -> httpx.Response:
        """Prefect's answer to one resume, whatever its status, after at most one quick retry
        of a 5xx or a dead connection (see ``_QUICK_RETRY``); SendError without an answer."""
        import stamina  # a tenth of a CPU-second: for servers that resume flow runs only

        headers = auth_headers(self.config)
        try:
            for attempt in stamina.retry_context(
                on=(_Busy, *_STALE),
                attempts=2,
                timeout=None,
                wait_initial=_QUICK_RETRY,
                wait_max=_QUICK_RETRY,
                wait_jitter=0.0,
            ):
                with attempt:
                    response = self.http.post(url, json=body, headers=headers)
                    if response.status_code >= 500:
                        raise _Busy(response)
        except _Busy as busy:  # a second 5xx: the row's backoff follows
            return busy.response
        except httpx.HTTPError as err:
            raise SendError(f"Prefect API: {type(err).__name__}", BACKOFF) from None
        return response
