"""``approval_gate``: halt a Prefect flow run until the policy (and its reviewers) say go.

Called in a flow or a task, right before the step it guards. It describes the action, asks
the Sluicegate server, and

- returns at once when the policy allows the action (one round trip, nobody is notified);
- raises :class:`ApprovalRefused` at once when the policy denies it;
- otherwise pauses the flow run (``pause_flow_run`` with :class:`GateDecision` as the input
  it waits for, its timeout the rule's plus a margin, so Prefect's own timeout never decides
  first), or with ``suspend=True`` suspends it (a deployed flow releases its infrastructure;
  on resume the flow runs again from the top and the gate reattaches to its request).

How a paused run goes on the moment the decision lands. Prefect's pause checks the run's state
once per ``poll_interval`` (and sleeps one full interval before its first check), so it is
not what the gate waits on. While paused the gate holds a long poll on the Sluicegate server,
which answers as soon as the request ends; the server meanwhile resumes the run through
Prefect's API with the outcome as run input. The gate then waits for Prefect to show the run
Running (a few reads, at most ``resume_grace`` seconds) and, should the server not have
resumed it (it cannot reach Prefect, or has no ``prefect.api_url``), resumes it itself. The
pause's own poll stays a backstop at a rate that costs Prefect's API nothing.

Whatever resumed the run, the decision is the server's: the gate reads the request before it
goes on, and a resume that the server's request does not back (a hand-made run input) only
makes the gate wait on the server. Denied, expired under ``on_timeout: deny`` or cancelled:
:class:`ApprovalRefused` (the flow or task fails, naming who denied and why); approved, or
expired under ``on_timeout: allow``: the release is recorded and the gate returns the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import SetStateStatus
from prefect.context import TaskRunContext
from prefect.exceptions import Pause
from prefect.flow_runs import apause_flow_run, asuspend_flow_run

from prefect_sluicegate.blocks import SluicegateConfig
from prefect_sluicegate.decision import GateDecision
from prefect_sluicegate.identity import assets, gate_identity, idempotency_key
from sluicegate.client import AsyncSluicegateClient, GateRefused
from sluicegate.exceptions import ClientError
from sluicegate.wire import RequestOut

__all__ = ["ApprovalRefused", "approval_gate", "approval_gate_async", "pause_timeout"]

#: Added to the rule's timeout for Prefect's pause timeout, so the server's expiry decides.
TIMEOUT_MARGIN = 300.0
#: Prefect's pause timeout when the rule has none (Prefect needs one).
DEFAULT_TIMEOUT = 7 * 24 * 3600
#: Seconds between the pause's own state checks: only a backstop (see the module docstring).
POLL_INTERVAL = 60
#: How long the gate lets the server resume the run before it resumes the run itself.
RESUME_GRACE = 2.0
#: How long opening a gate retries an unreachable server (fail closed: then it raises).
OPEN_TIMEOUT = 600.0


class ApprovalRefused(Exception):
    """The gate ended without permission: denied, expired or cancelled."""

    def __init__(self, answer: RequestOut) -> None:
        super().__init__(f"Sluicegate: {GateRefused(answer).detail}")
        self.answer = answer


def pause_timeout(answer: RequestOut, margin: float = TIMEOUT_MARGIN) -> int:
    """Seconds Prefect's pause may last: until the request expires, plus ``margin``."""
    if answer.expires_at is None:
        return DEFAULT_TIMEOUT
    left = (answer.expires_at - datetime.now(timezone.utc)).total_seconds()
    return max(1, math.ceil(left + margin))


def approval_gate(
    kind: str,
    *,
    summary: str = "",
    inputs: Sequence[Any] = (),
    outputs: Sequence[Any] = (),
    destination: str | None = None,
    environment: str | None = None,
    context: Mapping[str, Any] | None = None,
    step: str | None = None,
    owner: str | None = None,
    config: SluicegateConfig | str | None = None,
    server_url: str | None = None,
    token: str | None = None,
    suspend: bool = False,
    poll_interval: int = POLL_INTERVAL,
    resume_grace: float = RESUME_GRACE,
    timeout_margin: float = TIMEOUT_MARGIN,
    open_timeout: float = OPEN_TIMEOUT,
) -> RequestOut:
    """Block until the action may go ahead; the request (or policy answer) that let it.

    :param kind: the action (``export``, ``write``, ``delete``, ``grant``, ``deploy``, ...).
    :param summary: what a reviewer reads first.
    :param inputs, outputs: datasets, as Prefect ``Asset`` objects, URIs
        (``postgres://host:5432/db/schema/table``, ``s3://bucket/key``), OpenLineage datasets
        or ``{"namespace", "name", "classifications"}`` dicts, named the OpenLineage way.
    :param context: facts for the reviewer (row counts, the query); shown escaped.
    :param step: names the gate within the flow run (default: the task's name, ``flow`` in a
        flow); the idempotency key is the flow run, the step and a digest of the action.
    :param owner: the job's owner, who may never approve it.
    :param config: a :class:`SluicegateConfig` or the name of a saved one; ``server_url`` and
        ``token`` override it; without any, ``SLUICEGATE_SERVER_URL`` / ``SLUICEGATE_TOKEN``.
    :param suspend: suspend the flow run instead of pausing it (deployed flows only; in a flow,
        not a task).
    :raises ApprovalRefused: denied, expired (``on_timeout: deny``) or cancelled.
    :raises DatasetError: a dataset that cannot be named (nothing is sent).
    """
    coro = approval_gate_async(
        kind,
        summary=summary,
        inputs=inputs,
        outputs=outputs,
        destination=destination,
        environment=environment,
        context=context,
        step=step,
        owner=owner,
        config=config,
        server_url=server_url,
        token=token,
        suspend=suspend,
        poll_interval=poll_interval,
        resume_grace=resume_grace,
        timeout_margin=timeout_margin,
        open_timeout=open_timeout,
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from async code without await: its own loop in a thread, with this context (the
    # flow run's), rather than blocking the caller's loop from inside it.
    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(1, thread_name_prefix="sluicegate-gate") as pool:
        return pool.submit(ctx.run, asyncio.run, coro).result()


async def approval_gate_async(
    kind: str,
    *,
    summary: str = "",
    inputs: Sequence[Any] = (),
    outputs: Sequence[Any] = (),
    destination: str | None = None,
    environment: str | None = None,
    context: Mapping[str, Any] | None = None,
    step: str | None = None,
    owner: str | None = None,
    config: SluicegateConfig | str | None = None,
    server_url: str | None = None,
    token: str | None = None,
    suspend: bool = False,
    poll_interval: int = POLL_INTERVAL,
    resume_grace: float = RESUME_GRACE,
    timeout_margin: float = TIMEOUT_MARGIN,
    open_timeout: float = OPEN_TIMEOUT,
) -> RequestOut:
    """:func:`approval_gate` for async flows and tasks (the same parameters, awaited)."""
    if not kind or not kind.strip():
        raise ValueError("approval_gate needs the action's kind (export, write, grant, ...)")
    if poll_interval < 1:
        raise ValueError("poll_interval must be at least 1 second")
    if suspend and TaskRunContext.get() is not None:
        raise ValueError(
            "suspend=True works in a flow, not in a task: Prefect cannot suspend from a task"
        )
    named_inputs, named_outputs = assets(inputs, where="inputs"), assets(outputs, where="outputs")
    flow_ctx, step, requester = gate_identity(step, owner=owner)
    action: dict[str, Any] = {
        "kind": kind,
        "summary": summary or f"{kind} by {requester['job']}",
        "inputs": named_inputs,
        "outputs": named_outputs,
        "context": dict(context or {}),
    }
    if destination:
        action["destination"] = destination
    if environment:
        action["environment"] = environment
    logger = get_run_logger()
    flow_run = flow_ctx.flow_run
    assert flow_run is not None  # gate_identity checked it
    key = idempotency_key(str(flow_run.id), step, action)
    async with await _client(config, server_url, token) as client:
        answer = await _open(client, key, action, requester, open_timeout)
        logger.info("Sluicegate: %s %s", answer.outcome, answer.review_url or "")
        if not answer.terminal:
            wait = _Wait(client, answer, flow_run.id, logger, timeout_margin)
            # A pause key of its own per request and flow run attempt: Prefect skips a pause
            # whose key it has seen resumed, so a re-run still pending must pause anew.
            pause_key = f"sluicegate-{answer.id}-{flow_run.run_count}"
            if suspend:
                answer = await wait.suspended(pause_key)
            else:
                answer = await wait.paused(pause_key, poll_interval, resume_grace)
        return await _finish(client, answer, logger)


async def _client(
    config: SluicegateConfig | str | None, server_url: str | None, token: str | None
) -> AsyncSluicegateClient:
    if isinstance(config, str):
        config = await SluicegateConfig.aload(config)
    if config is not None:
        server_url = server_url or config.server_url
        token = token or config.token.get_secret_value()
    return AsyncSluicegateClient(server_url, token)


async def _open(
    client: AsyncSluicegateClient,
    key: str,
    action: dict[str, Any],
    requester: dict[str, Any],
    open_timeout: float,
) -> RequestOut:
    """Open (or reattach to) the gate, retrying an unreachable server until ``open_timeout``."""
    deadline = time.monotonic() + open_timeout
    return await client.open_until(key, action, requester, deadline=deadline)


async def _finish(client: AsyncSluicegateClient, answer: RequestOut, logger: Any) -> RequestOut:
    if not answer.terminal:  # fail closed: only the server's end of the request lets it pass
        raise RuntimeError(f"Sluicegate request {answer.id} is still pending")
    if not answer.may_proceed:
        raise ApprovalRefused(answer)
    await client.record_release(answer)
    logger.info("Sluicegate: request %s %s; going on", answer.id, answer.status)
    return answer


class _Wait:
    """Waiting out one pending request, paused or suspended (see the module's docstring)."""

    def __init__(
        self,
        client: AsyncSluicegateClient,
        answer: RequestOut,
        flow_run_id: UUID,
        logger: Any,
        margin: float,
    ) -> None:
        self.client = client
        self.answer = answer
        self.flow_run_id = flow_run_id
        self.logger = logger
        self.timeout = pause_timeout(answer, margin)
        self.deadline = time.monotonic() + self.timeout

    async def paused(self, key: str, poll_interval: int, grace: float) -> RequestOut:
        pause = asyncio.create_task(
            apause_flow_run(
                wait_for_input=GateDecision,
                timeout=self.timeout,
                poll_interval=poll_interval,
                key=key,
            )
        )
        watch = asyncio.create_task(
            self.client.wait_until_done(self.answer.id, deadline=self.deadline)
        )
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

    async def suspended(self, key: str) -> RequestOut:
        try:
            given = await asuspend_flow_run(
                wait_for_input=GateDecision, timeout=self.timeout, key=key
            )
        except Pause:
            # The decision may have landed between opening the gate and the suspension, when
            # the server's resume found no paused run: then resume it from here, or it would
            # stay suspended until Prefect's timeout.
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
        async with get_client() as prefect:
            waited, delay = 0.0, 0.02
            while waited < grace:
                run = await prefect.read_flow_run(self.flow_run_id)
                if run.state is None or not run.state.is_paused():
                    break  # resumed (or the pause was not even proposed yet: checked below)
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 0.25)
        pause.cancel()
        await asyncio.gather(pause, return_exceptions=True)
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
        """The server's answer after a resume: the run input is a claim, the server decides."""
        answer = await self._get()
        if given is not None and (given.request_id, given.status) != (answer.id, answer.status):
            self.logger.warning(
                "flow run resumed with %s %s, but Sluicegate says request %s is %s; "
                "going by Sluicegate",
                given.request_id,
                given.status,
                answer.id,
                answer.status,
            )
        if not answer.terminal:
            answer = await self.client.wait_until_done(answer.id, deadline=self.deadline)
        return answer

    async def _get(self) -> RequestOut:
        """The request now, retrying an unreachable server until the gate's deadline."""
        delay = 0.5
        while True:
            try:
                return await self.client.get(self.answer.id)
            except ClientError as err:
                if not err.transient or time.monotonic() + delay > self.deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
