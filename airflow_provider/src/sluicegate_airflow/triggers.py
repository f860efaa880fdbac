"""``ApprovalTrigger``: waits in the triggerer for a request to end, holding no worker.

It long-polls the server (``GET /api/v1/requests/{id}/wait``), which answers the moment a
decision lands, so the task resumes within milliseconds of it. A server that is down or
restarting is retried with backoff: the trigger never ends on an error it can outlast, so a
gate never passes without a decision (it ends with the defer timeout, which fails the task).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from sluicegate.exceptions import ClientError

__all__ = ["ApprovalTrigger"]

#: Seconds one long poll may wait on the server (it answers at once when the request ends).
POLL_SECONDS = 60.0


class ApprovalTrigger(BaseTrigger):
    """Fires once request ``request_id`` is terminal, with the request as the event payload.

    ``carry`` holds what the operator knew before deferring (Airflow rebuilds the operator
    on resume), handed back in the event unchanged.
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
        from sluicegate_airflow.hooks import SluicegateHook

        hook = SluicegateHook(self.sluicegate_conn_id)
        attempt = 0
        client = await asyncio.to_thread(hook.get_async_conn)
        try:
            while True:
                try:
                    answer = await client.wait(self.request_id, timeout=self.poll_seconds)
                except ClientError as err:
                    if err.status in (401, 403, 404):  # waiting longer cannot help
                        yield TriggerEvent(  # type: ignore[no-untyped-call]
                            {"status": "error", "error": str(err), "carry": self.carry}
                        )
                        return
                    attempt += 1
                    self.log.warning("Sluicegate unreachable (%s); retrying", err)
                    await asyncio.sleep(min(0.25 * 2**attempt, 10.0))
                    continue
                attempt = 0
                if answer.terminal:
                    yield TriggerEvent(  # type: ignore[no-untyped-call]
                        {
                            "status": answer.status,
                            "request": answer.model_dump(mode="json"),
                            "carry": self.carry,
                        }
                    )
                    return
        finally:
            await client.aclose()
