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
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from prefect.context import TaskRunContext
from prefect.logging import get_run_logger

from prefect_sluicegate.blocks import SluicegateConfig
from prefect_sluicegate.identity import assets, gate_identity, idempotency_key

if TYPE_CHECKING:  # the core loads when a gate first asks
    from prefect.client.schemas.objects import FlowRun

    from sluicegate.client import AsyncSluicegateClient, SluicegateClient
    from sluicegate.gate import AsyncGate, GateOutcome
    from sluicegate.model import Action, Requester
    from sluicegate.wire import RequestOut

__all__ = ["ApprovalRefused", "approval_gate", "approval_gate_async", "pause_timeout"]

#: How long opening a gate retries an unreachable server (fail closed: then it raises).
OPEN_TIMEOUT = 600.0
#: :mod:`.pause`'s defaults, repeated here so that the pause's module (and Prefect's
#: ``flow_runs``) loads only when a gate has to wait; a test holds them equal.
POLL_INTERVAL = 60
RESUME_GRACE = 2.0
TIMEOUT_MARGIN = 300.0

#: The blocking clients the sync gates of this process share, by (process, URL, token).
_SHARED: dict[tuple[int, str | None, str | None], SluicegateClient] = {}
_SHARED_LOCK = threading.Lock()


def pause_timeout(answer: RequestOut, margin: float = TIMEOUT_MARGIN) -> int:
    """Seconds Prefect's pause may last: until the request expires, plus ``margin``."""
    from prefect_sluicegate.pause import pause_timeout as timeout_of

    return timeout_of(answer, margin)


class ApprovalRefused(Exception):
    """The gate ended without permission: denied, expired or cancelled.

    ``outcome`` is how it ended (:class:`~sluicegate.gate.GateOutcome`: who denied, why, the
    rule), ``answer`` the server's request; the message is the outcome's one line.
    """

    def __init__(self, outcome: GateOutcome | RequestOut) -> None:
        from sluicegate.gate import GateOutcome

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
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # Called from async code without await: its own loop in a thread, with this context
        # (the flow run's), rather than blocking the caller's loop from inside it.
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
        ctx = contextvars.copy_context()
        with ThreadPoolExecutor(1, thread_name_prefix="sluicegate-gate") as pool:
            return pool.submit(ctx.run, asyncio.run, coro).result()
    from sluicegate.gate import Gate, OutcomeKind

    asked = _Asked.of(kind, summary, inputs, outputs, destination, environment, context, step,
                      owner, suspend, poll_interval)  # fmt: skip
    if isinstance(config, str):
        config = SluicegateConfig.load_cached(config)
    url, secret = _where(config, server_url, token)
    # Opening is blocking I/O on a client the process keeps (its connection stays open for
    # the next gate): no event loop, no new client, for the gate the policy allows.
    gate = Gate(_shared_client(url, secret))
    outcome = gate.open(asked.key, asked.action, asked.requester, timeout=open_timeout)
    asked.logger.info("Sluicegate: %s %s", outcome.message, outcome.request.review_url or "")
    if outcome.kind is OutcomeKind.PENDING:  # Prefect's pause is async: waited in a loop
        waited = _waited_out(
            asked, outcome.request, url, secret, suspend, poll_interval, resume_grace,
            timeout_margin,
        )  # fmt: skip
        outcome = asyncio.run(waited)
    return _passed(outcome, asked.logger)


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
    from sluicegate.client import AsyncSluicegateClient
    from sluicegate.gate import AsyncGate, OutcomeKind

    asked = _Asked.of(kind, summary, inputs, outputs, destination, environment, context, step,
                      owner, suspend, poll_interval)  # fmt: skip
    if isinstance(config, str):
        config = await SluicegateConfig.aload_cached(config)
    url, secret = _where(config, server_url, token)
    async with AsyncSluicegateClient(url, secret) as client:
        gate = AsyncGate(client)
        outcome = await gate.open(asked.key, asked.action, asked.requester, timeout=open_timeout)
        asked.logger.info("Sluicegate: %s %s", outcome.message, outcome.request.review_url or "")
        if outcome.kind is OutcomeKind.PENDING:
            outcome = await _waited(
                asked, gate, client, outcome.request, suspend, poll_interval, resume_grace,
                timeout_margin,
            )  # fmt: skip
    return _passed(outcome, asked.logger)


class _Asked:
    """One gate's question in Prefect's terms: the flow run, the action, who asks, the key."""

    def __init__(
        self, flow_run: FlowRun, key: str, action: Action, requester: Requester, logger: Any
    ) -> None:
        self.flow_run, self.key, self.action = flow_run, key, action
        self.requester, self.logger = requester, logger

    @classmethod
    def of(
        cls,
        kind: str,
        summary: str,
        inputs: Sequence[Any],
        outputs: Sequence[Any],
        destination: str | None,
        environment: str | None,
        context: Mapping[str, Any] | None,
        step: str | None,
        owner: str | None,
        suspend: bool,
        poll_interval: int,
    ) -> _Asked:
        """Checked arguments and the step read from Prefect's run context; nothing is sent.

        :raises ValueError: a bad argument. :raises RuntimeError: outside a flow run.
        :raises DatasetError: a dataset that cannot be named.
        """
        from sluicegate.model import parse_action

        if not kind or not kind.strip():
            raise ValueError("approval_gate needs the action's kind (export, write, grant, ...)")
        if poll_interval < 1:
            raise ValueError("poll_interval must be at least 1 second")
        if suspend and TaskRunContext.get() is not None:
            raise ValueError(
                "suspend=True works in a flow, not in a task: Prefect cannot suspend from a task"
            )
        named_inputs = assets(inputs, where="inputs")
        named_outputs = assets(outputs, where="outputs")
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
        flow_run = flow_ctx.flow_run
        assert flow_run is not None  # gate_identity checked it
        key = idempotency_key(str(flow_run.id), step, action)
        return cls(flow_run, key, action, requester, get_run_logger())


def _where(
    config: SluicegateConfig | None, server_url: str | None, token: str | None
) -> tuple[str | None, str | None]:
    """The server and token: the arguments, else the block's (None: the core's settings)."""
    if config is not None:
        server_url = server_url or config.server_url
        token = token or config.token.get_secret_value()
    return server_url, token


def _shared_client(server_url: str | None, token: str | None) -> SluicegateClient:
    """The blocking client this process's sync gates share for this server and token (keyed
    by the process too: a forked process never shares its parent's sockets). Left to the
    core's settings, it is keyed by the environment's values of them."""
    from sluicegate.client import SluicegateClient

    key = (
        os.getpid(),
        server_url or os.environ.get("SLUICEGATE_SERVER_URL"),
        token or os.environ.get("SLUICEGATE_TOKEN"),
    )
    with _SHARED_LOCK:
        client = _SHARED.get(key)
        if client is None:
            client = _SHARED[key] = SluicegateClient(server_url, token)
    return client


async def _waited_out(
    asked: _Asked,
    answer: RequestOut,
    server_url: str | None,
    token: str | None,
    suspend: bool,
    poll_interval: int,
    grace: float,
    margin: float,
) -> GateOutcome:
    """A sync gate's pending request, waited out in the loop Prefect's pause needs."""
    from sluicegate.client import AsyncSluicegateClient
    from sluicegate.gate import AsyncGate

    async with AsyncSluicegateClient(server_url, token) as client:
        gate = AsyncGate(client)
        return await _waited(asked, gate, client, answer, suspend, poll_interval, grace, margin)


async def _waited(
    asked: _Asked,
    gate: AsyncGate,
    client: AsyncSluicegateClient,
    answer: RequestOut,
    suspend: bool,
    poll_interval: int,
    grace: float,
    margin: float,
) -> GateOutcome:
    """The flow run paused (or suspended) until the request ends (:mod:`.pause`); the
    server's answer settled."""
    from prefect_sluicegate.pause import WaitingRun

    run = WaitingRun(gate, client, answer, asked.flow_run, asked.logger, margin)
    if suspend:
        ended = await run.suspended()
    else:
        ended = await run.paused(poll_interval, grace)
    return await gate.settle(ended)


def _passed(outcome: GateOutcome, logger: Any) -> RequestOut:
    """The request that lets the step go on; else the outcome raised (fail closed: a request
    still pending at the pause's end is no permission)."""
    from sluicegate.gate import OutcomeKind

    answer = outcome.request
    if outcome.proceed:
        if outcome.is_request:  # the policy's own allow was logged as it was opened
            logger.info("Sluicegate: request %s %s; going on", answer.id, answer.status)
        return answer
    if outcome.kind is OutcomeKind.PENDING:
        raise RuntimeError(f"Sluicegate request {answer.id} is still pending")
    raise ApprovalRefused(outcome)
