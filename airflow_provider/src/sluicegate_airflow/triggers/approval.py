"""``ApprovalTrigger``: waits in the triggerer for a request to end, holding no worker.

It waits through the core's gate (:meth:`sluicegate.gate.AsyncGate.wait`), whose long polls
(``GET /api/v1/requests/{id}/wait``) the server answers the moment a decision lands, so the
task resumes within milliseconds of it. The gate asks a server that is down or restarting
again, with backoff, for as long as it takes: the trigger never ends on an error it can
outlast, so a gate never passes without a decision (it ends with the defer timeout, which
fails the task). An error waiting cannot outlast (a revoked token, a request that is not
there) ends it with an error event, which fails the task.

The event carries the request as the server answered it; the task settles it where it resumes
(:meth:`sluicegate.gate.Gate.settle`, which records the release).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

__all__ = ["ApprovalTrigger"]

#: The default of ``poll_seconds`` (see :class:`ApprovalTrigger`).
POLL_SECONDS = 60.0


class ApprovalTrigger(BaseTrigger):
    """Fires once request ``request_id`` is terminal, with the request as the event payload.

    :param request_id: the request to wait for.
    :param sluicegate_conn_id: the ``sluicegate`` connection of the server that holds it.
    :param poll_seconds: the longest one long poll on the server lasts; the server answers it
        at once when the request ends, so this only sets how often an idle wait asks again.
    :param carry: what the operator knew before deferring (Airflow rebuilds the operator on
        resume), handed back in the event unchanged.
    """

    def __init__(
        self,
        request_id: str,
        sluicegate_conn_id: str = "sluicegate_default",
        poll_seconds: float = POLL_SECONDS,
        carry: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow leaves it untyped
        self.request_id = request_id
        self.sluicegate_conn_id = sluicegate_conn_id
        self.poll_seconds = poll_seconds
        self.carry = carry or {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "request_id": self.request_id,
                "sluicegate_conn_id": self.sluicegate_conn_id,
                "poll_seconds": self.poll_seconds,
                "carry": self.carry,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from sluicegate.gate import AsyncGate
        from sluicegate_airflow.hooks.sluicegate import SluicegateHook

        try:
            # The connection lookup blocks (a secrets backend, the API server): off the loop.
            client = await asyncio.to_thread(SluicegateHook(self.sluicegate_conn_id).get_async_conn)
        except Exception as err:  # the trigger's boundary: an error event, never a crash
            yield self._error(err)
            return
        try:
            outcome = await AsyncGate(client).wait(
                self.request_id, settle=False, poll_seconds=self.poll_seconds
            )
        except Exception as err:  # what waiting cannot outlast (401, 403, 404, a bad answer)
            yield self._error(err)
            return
        finally:
            await client.aclose()
        answer = outcome.request
        event = {"status": answer.status, "request": answer.model_dump(mode="json")}
        yield TriggerEvent({**event, "carry": self.carry})  # type: ignore[no-untyped-call]

    def _error(self, err: Exception) -> TriggerEvent:
        self.log.error("Sluicegate: waiting for request %s failed: %s", self.request_id, err)
        return TriggerEvent(  # type: ignore[no-untyped-call]
            {"status": "error", "error": str(err), "carry": self.carry}
        )
