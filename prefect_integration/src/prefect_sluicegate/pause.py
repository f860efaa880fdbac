"""Prefect's side of a pending gate: the flow run paused (or suspended) until the request
ends, and resumed.

How a paused run goes on the moment the decision lands. Prefect's pause (``pause_flow_run``
with :class:`~prefect_sluicegate.decision.GateDecision` as the input it waits for, its
timeout the rule's plus a margin, so Prefect's own timeout never decides first) checks the
run's state once per ``poll_interval`` and sleeps one full interval before its first check,
so it is not what the gate waits on. While paused, the core gate waits on the Sluicegate
server (:meth:`sluicegate.gate.AsyncGate.wait`, a long poll retried while the server cannot
be reached), which answers as soon as the request ends; the server meanwhile resumes the run
through Prefect's API with the outcome as run input. The gate then waits for Prefect to show
the run Running (a few reads, at most ``resume_grace`` seconds) and, should the server not
have resumed it (it cannot reach Prefect, or has no ``prefect.api_url``), resumes it itself.
The pause's own poll stays a backstop at a rate that costs Prefect's API nothing.

Suspended (``suspend=True``, deployed flows), the run's process exits; on resume the flow runs
again from the top and the gate reattaches to its request, then reads it here.

Whatever resumed the run, the run input is only a claim: the answer returned is the server's,
and a resume its request does not back (a hand-made run input) only makes the gate wait on
the server. Settling that answer is the gate's (:mod:`prefect_sluicegate.gate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import Pause

from prefect_sluicegate.decision import GateDecision

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

    from sluicegate.client import AsyncSluicegateClient
    from sluicegate.gate import AsyncGate
    from sluicegate.wire import RequestOut

__all__ = ["WaitingRun", "pause_timeout"]

#: Added to the rule's timeout for Prefect's pause timeout, so the server's expiry decides.
TIMEOUT_MARGIN = 300.0
#: Prefect's pause timeout when the rule has none (Prefect needs one).
DEFAULT_TIMEOUT = 7 * 24 * 3600
#: Seconds between the pause's own state checks: only a backstop (see the module docstring).
POLL_INTERVAL = 60
#: How long the gate lets the server resume the run before it resumes the run itself.
RESUME_GRACE = 2.0


def pause_timeout(answer: RequestOut, margin: float = TIMEOUT_MARGIN) -> int:
    """Seconds Prefect's pause may last: until the request expires, plus ``margin``."""
    if answer.expires_at is None:
        return DEFAULT_TIMEOUT
    left = (answer.expires_at - datetime.now(timezone.utc)).total_seconds()
    return max(1, math.ceil(left + margin))


class WaitingRun:
    """One flow run waiting out one pending request, paused or suspended (see the module's
    docstring): Prefect's pause and resume are here; the waiting on the server is the gate's.

    :param gate: the core gate the request was opened through.
    :param client: its client (one best-effort read as a suspended run's process exits).
    :param answer: the pending request.
    :param flow_run: the flow run to pause.
    :param logger: the run's logger.
    :param margin: added to the request's time left for Prefect's pause timeout.
    """

    def __init__(
        self,
        gate: AsyncGate,
        client: AsyncSluicegateClient,
        answer: RequestOut,
        flow_run: FlowRun,
        logger: Any,
        margin: float = TIMEOUT_MARGIN,
    ) -> None:
        self.gate = gate
        self.client = client
        self.answer = answer
        self.flow_run_id = flow_run.id
        # A pause key of its own per request and flow run attempt: Prefect skips a pause whose
        # key it has seen resumed, so a re-run still pending must pause anew.
        self.key = f"sluicegate-{answer.id}-{flow_run.run_count}"
        self.logger = logger
        self.timeout = pause_timeout(answer, margin)
        self.deadline = time.monotonic() + self.timeout

    async def _until_done(self) -> RequestOut:
        """The request once it ends (or as it is at the gate's deadline), retried by the gate
        while the server cannot be reached."""
        left = max(0.0, self.deadline - time.monotonic())
        waited = await self.gate.wait(self.answer.id, timeout=left, settle=False)
        return waited.request

    async def paused(self, poll_interval: int, grace: float = RESUME_GRACE) -> RequestOut:
        """Pause the run until the request ends (the server's answer: pending only if the
        gate's deadline passed first), the run resumed by the server or, after ``grace``
        seconds, from here."""
        from prefect.flow_runs import apause_flow_run

        pause = asyncio.create_task(
            apause_flow_run(
                wait_for_input=GateDecision,
                timeout=self.timeout,
                poll_interval=poll_interval,
                key=self.key,
            )
        )
        watch = asyncio.create_task(self._until_done())
        try:
            done, _ = await asyncio.wait({pause, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch in done:
                ended = watch.result()
                if ended.terminal:
                    await self._running(pause, grace, ended)
                return ended
            given = pause.result()  # FlowPauseTimeout and the like: fail, as Prefect would
            watch.cancel()
            return await self._verified(given)
        finally:
            for task in (pause, watch):
                task.cancel()
            await asyncio.gather(pause, watch, return_exceptions=True)

    async def suspended(self) -> RequestOut:
        """Suspend the run (its process exits: :class:`prefect.exceptions.Pause`); in the
        re-run after its resume, the server's answer."""
        from prefect.flow_runs import asuspend_flow_run

        try:
            given = await asuspend_flow_run(
                wait_for_input=GateDecision, timeout=self.timeout, key=self.key
            )
        except Pause:
            # The decision may have landed between opening the gate and the suspension, when
            # the server's resume found no paused run: then resume it from here, or it would
            # stay suspended until Prefect's timeout. One read, best effort: the process is
            # exiting, and Prefect's own timeout remains.
            with contextlib.suppress(Exception):
                now = await self.client.get(self.answer.id)
                if now.terminal:
                    await self._resume_if_paused(now)
            raise
        # The suspension happened before and was resumed: this is the re-run.
        return await self._verified(given)

    async def _running(self, pause: asyncio.Task[Any], grace: float, ended: RequestOut) -> None:
        """Once the request ended: let the server's resume land (or resume the run here),
        then stop the pause's own wait."""
        running = False
        async with get_client() as prefect:
            waited, delay = 0.0, 0.02
            while waited < grace:
                run = await prefect.read_flow_run(self.flow_run_id)
                if run.state is None or not run.state.is_paused():
                    # resumed (or the pause was not even proposed yet: checked below)
                    running = run.state is not None and run.state.is_running()
                    break
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 0.25)
        pause.cancel()
        await asyncio.gather(pause, return_exceptions=True)
        if not running:  # seen Running: resumed, nothing left to check (a read less)
            await self._resume_if_paused(ended)

    async def _resume_if_paused(self, ended: RequestOut) -> None:
        async with get_client() as prefect:
            run = await prefect.read_flow_run(self.flow_run_id)
            state = run.state
            if state is not None and state.is_running():
                return
            if state is None or not state.is_paused():
                # Cancelled (or otherwise ended) in Prefect while it waited: never go on.
                what = state.type.value if state is not None else "without a state"
                raise RuntimeError(f"flow run {self.flow_run_id} is {what}; not going on")
            self.logger.warning(
                "Sluicegate did not resume this flow run in time (is its prefect.api_url set "
                "and reachable from the server?); resuming it from the gate"
            )
            result = await prefect.resume_flow_run(
                self.flow_run_id, run_input={"request_id": ended.id, "status": ended.status}
            )
            if result.status != SetStateStatus.ACCEPT:
                reason = getattr(result.details, "reason", "") or result.status.value
                raise RuntimeError(f"could not resume flow run {self.flow_run_id}: {reason}")

    async def _verified(self, given: GateDecision | None) -> RequestOut:
        """The server's answer after a resume: the run input is a claim, the server decides
        (a resume its request does not back only makes the gate wait on the server)."""
        answer = await self._until_done()
        if given is not None and (given.request_id, given.status) != (answer.id, answer.status):
            self.logger.warning(
                "flow run resumed with %s %s, but Sluicegate says request %s is %s; "
                "going by Sluicegate",
                given.request_id,
                given.status,
                answer.id,
                answer.status,
            )
        return answer
