"""``approval_gate``: halt a Prefect flow run until the policy (and its reviewers) say go.

Called in a flow or a task, right before the step it guards. It translates the step into the
core's terms (an ``Action``, a ``Requester`` and an idempotency key: :mod:`.identity`), asks
the Sluicegate server through the core's gate (:class:`sluicegate.gate.AsyncGate`: retries,
reattaching, the decision and the release record all live there), and

- returns at once when the policy allows the action (one round trip, nobody is notified);
- raises :class:`ApprovalRefused` at once when the policy denies it;
- otherwise pauses the flow run, or with ``suspend=True`` suspends it, until the request ends
  (:mod:`.pause`: Prefect's side of the wait; the gate waits on the server meanwhile).

Whatever resumed the run, the decision is the server's: the gate settles the server's answer
(:class:`~sluicegate.gate.GateOutcome`). When its ``proceed`` is false (denied, expired under
``on_timeout: deny``, cancelled), :class:`ApprovalRefused` fails the flow or task, naming who
denied and why; else the release is recorded and the gate returns the request.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefect import get_run_logger
from prefect.context import TaskRunContext

from prefect_sluicegate.blocks import SluicegateConfig
from prefect_sluicegate.identity import assets, gate_identity, idempotency_key
from prefect_sluicegate.pause import (
    POLL_INTERVAL,
    RESUME_GRACE,
    TIMEOUT_MARGIN,
    WaitingRun,
    pause_timeout,
)
from sluicegate.client import AsyncSluicegateClient
from sluicegate.gate import AsyncGate, GateOutcome, OutcomeKind
from sluicegate.model import parse_action
from sluicegate.wire import RequestOut

__all__ = ["ApprovalRefused", "approval_gate", "approval_gate_async", "pause_timeout"]

#: How long opening a gate retries an unreachable server (fail closed: then it raises).
OPEN_TIMEOUT = 600.0


class ApprovalRefused(Exception):
    """The gate ended without permission: denied, expired or cancelled.

    ``outcome`` is how it ended (:class:`~sluicegate.gate.GateOutcome`: who denied, why, the
    rule), ``answer`` the server's request; the message is the outcome's one line.
    """

    def __init__(self, outcome: GateOutcome | RequestOut) -> None:
        if not isinstance(outcome, GateOutcome):
            outcome = GateOutcome.of(outcome)
        super().__init__(f"Sluicegate: {outcome.message}")
        self.outcome = outcome
        self.answer = outcome.request

    def __reduce__(self) -> tuple[type[ApprovalRefused], tuple[GateOutcome]]:
        # Rebuilt from its outcome, not its message, where Prefect pickles a failed state.
        return (type(self), (self.outcome,))


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
    :param open_timeout: seconds opening the gate retries a server that cannot be reached
        (or answers 503); then the last error is raised.
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
    action = parse_action(
        {
            "kind": kind,
            "summary": summary or f"{kind} by {requester.job}",
            "inputs": named_inputs,
            "outputs": named_outputs,
            "destination": destination or None,
            "environment": environment or None,
            "context": dict(context or {}),
        }
    )
    logger = get_run_logger()
    flow_run = flow_ctx.flow_run
    assert flow_run is not None  # gate_identity checked it
    key = idempotency_key(str(flow_run.id), step, action)
    async with await _client(config, server_url, token) as client:
        gate = AsyncGate(client)
        outcome = await gate.open(key, action, requester, timeout=open_timeout)
        logger.info("Sluicegate: %s %s", outcome.message, outcome.request.review_url or "")
        if outcome.kind is OutcomeKind.PENDING:
            run = WaitingRun(gate, client, outcome.request, flow_run, logger, timeout_margin)
            if suspend:
                answer = await run.suspended()
            else:
                answer = await run.paused(poll_interval, resume_grace)
            outcome = await gate.settle(answer)
    return _passed(outcome, logger)


async def _client(
    config: SluicegateConfig | str | None, server_url: str | None, token: str | None
) -> AsyncSluicegateClient:
    if isinstance(config, str):
        config = await SluicegateConfig.aload(config)
    if config is not None:
        server_url = server_url or config.server_url
        token = token or config.token.get_secret_value()
    return AsyncSluicegateClient(server_url, token)


def _passed(outcome: GateOutcome, logger: Any) -> RequestOut:
    """The request that lets the step go on; else the outcome raised (fail closed: a request
    still pending at the pause's end is no permission)."""
    answer = outcome.request
    if outcome.proceed:
        logger.info("Sluicegate: request %s %s; going on", answer.id, answer.status)
        return answer
    if outcome.kind is OutcomeKind.PENDING:
        raise RuntimeError(f"Sluicegate request {answer.id} is still pending")
    raise ApprovalRefused(outcome)
