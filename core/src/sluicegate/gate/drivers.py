"""The gate's two drivers: :class:`Gate` (blocking) and :class:`AsyncGate` (awaited).

Both run the same steps of :mod:`sluicegate.gate.machine`; all they own is the I/O: making each
call through their client, and retrying a transient failure with stamina (its loop, its sleep,
its testing mode) as :class:`~sluicegate.gate.machine.Retry` decides.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sluicegate.calls import LONG_POLL, ApiCall
from sluicegate.exceptions import ClientError
from sluicegate.gate import machine
from sluicegate.gate.machine import BACKOFF, Clock, Io, Machine, Retry
from sluicegate.gate.outcome import GateOutcome

if TYPE_CHECKING:
    from sluicegate.model import Action, Requester
    from sluicegate.wire import RequestOut

__all__ = ["AsyncCaller", "AsyncGate", "Caller", "Gate"]

T = TypeVar("T")


class Caller(Protocol):
    """What makes a blocking API call (:class:`~sluicegate.client.SluicegateClient`)."""

    def call(self, call: ApiCall[T]) -> T:
        """Make ``call``; raise :class:`ClientError` for an error answer or no answer."""
        ...


class AsyncCaller(Protocol):
    """What makes an awaited API call (:class:`~sluicegate.client.AsyncSluicegateClient`)."""

    async def call(self, call: ApiCall[T]) -> T:
        """Make ``call``; raise :class:`ClientError` for an error answer or no answer."""
        ...


class Gate:
    """The gate, blocking: open, wait, settle and release through ``client``.

    Every method fails closed. A server that cannot be reached, or answers 503 or a proxy's
    5xx, is asked again with backoff until ``timeout`` (seconds; None: as long as it takes),
    and then the last error is raised; any other error (a bad token, a key that is another
    gate's, an action the server refuses) is raised at once. Only an outcome whose ``proceed``
    is true lets the step go on.

    Example::

        with SluicegateClient() as client:
            outcome = Gate(client).open(key, action, requester, wait=True, timeout=600)
        if not outcome.proceed:
            raise RuntimeError(outcome.message)
    """

    def __init__(self, client: Caller, *, clock: Clock = time.monotonic) -> None:
        self.client = client
        self.clock = clock

    def open(
        self,
        idempotency_key: str,
        action: Action | Mapping[str, Any],
        requester: Requester | Mapping[str, Any] | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> GateOutcome:
        """Open the gate (or reattach to the request its key names) and settle its answer.

        Without ``wait``, a request that waits for reviewers is returned ``PENDING`` (an
        orchestrator that waits elsewhere, such as Airflow's triggerer, takes it from there);
        with it, the gate long-polls until the request ends or ``timeout`` passes.

        :raises ActionError: the action or requester would be refused (nothing is sent).
        :raises ClientError: the server refused the call, or could not be reached in time.
        """
        until = machine.deadline(timeout, self.clock)
        start = machine.opening(idempotency_key, action, requester, until)
        return self.run(machine.passing(start, wait=wait, until=until, clock=self.clock))

    def attach(
        self,
        request_id: str,
        action: Action | Mapping[str, Any],
        requester: Requester | Mapping[str, Any],
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> GateOutcome:
        """Take up the request a run carries (launched once it was approved) instead of
        opening one, and settle it as :meth:`open` does.

        :raises ForeignRequestError: it was not opened by this orchestrator, for this step
            (``requester.step``) and this ``action``; nothing may run.
        """
        until = machine.deadline(timeout, self.clock)
        start = machine.attaching(request_id, action, requester, until)
        return self.run(machine.passing(start, wait=wait, until=until, clock=self.clock))

    def wait(
        self,
        request_id: str,
        *,
        timeout: float | None = None,
        settle: bool = True,
        poll_seconds: float = LONG_POLL,
    ) -> GateOutcome:
        """Wait for a request to end (``PENDING`` if ``timeout`` passes first); with
        ``settle``, record its release as :meth:`settle` does. Without, the caller settles
        it later (a deferred task resuming in a worker, a flow run once it is resumed).
        ``poll_seconds``: the longest one long poll lasts (the server answers at once when
        the request ends)."""
        until = machine.deadline(timeout, self.clock)
        waited = machine.waiting(request_id, until, self.clock, poll_seconds)
        answer = self.run(waited)
        return self.settle(answer) if settle else GateOutcome.of(answer)

    def settle(self, answer: RequestOut | Mapping[str, Any]) -> GateOutcome:
        """The outcome of an answer obtained elsewhere (a trigger's event, a resumed run),
        with the release recorded when a request let the step go on."""
        from sluicegate.wire import RequestOut  # by the first gate, not by importing it

        if not isinstance(answer, RequestOut):
            answer = RequestOut.model_validate(answer)
        return self.run(machine.settling(answer))

    def run(self, steps: Machine[T]) -> T:
        """Drive ``steps`` (any step of :mod:`sluicegate.gate.machine`) to their end, making
        each call they yield: what the methods above do with the whole gate."""
        try:
            io = next(steps)
            while True:
                try:
                    result = self._make(io)
                except ClientError as err:
                    io = steps.throw(err)
                else:
                    io = steps.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _make(self, io: Io) -> Any:
        try:
            return self.client.call(io.build())
        except ClientError as err:
            if io.once:
                raise
            failed = err
        # stamina is imported only once a call has failed: an allowed gate never pays for it.
        import stamina

        replay = [failed]
        for attempt in stamina.retry_context(
            Retry(io.until, self.clock), attempts=None, timeout=None, **BACKOFF
        ):
            with attempt:
                if replay:  # the failure already had: stamina decides on it and backs off
                    raise replay.pop()
                return self.client.call(io.build())
        raise AssertionError("unreachable: stamina returns or raises")


class AsyncGate:
    """:class:`Gate` for async code (an Airflow trigger, a Prefect flow): the same methods,
    awaited, through an :class:`~sluicegate.client.AsyncSluicegateClient`."""

    def __init__(self, client: AsyncCaller, *, clock: Clock = time.monotonic) -> None:
        self.client = client
        self.clock = clock

    async def open(
        self,
        idempotency_key: str,
        action: Action | Mapping[str, Any],
        requester: Requester | Mapping[str, Any] | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> GateOutcome:
        """:meth:`Gate.open`, awaited."""
        until = machine.deadline(timeout, self.clock)
        start = machine.opening(idempotency_key, action, requester, until)
        return await self.run(machine.passing(start, wait=wait, until=until, clock=self.clock))

    async def attach(
        self,
        request_id: str,
        action: Action | Mapping[str, Any],
        requester: Requester | Mapping[str, Any],
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> GateOutcome:
        """:meth:`Gate.attach`, awaited."""
        until = machine.deadline(timeout, self.clock)
        start = machine.attaching(request_id, action, requester, until)
        return await self.run(machine.passing(start, wait=wait, until=until, clock=self.clock))

    async def wait(
        self,
        request_id: str,
        *,
        timeout: float | None = None,
        settle: bool = True,
        poll_seconds: float = LONG_POLL,
    ) -> GateOutcome:
        """:meth:`Gate.wait`, awaited."""
        until = machine.deadline(timeout, self.clock)
        waited = machine.waiting(request_id, until, self.clock, poll_seconds)
        answer = await self.run(waited)
        return await self.settle(answer) if settle else GateOutcome.of(answer)

    async def settle(self, answer: RequestOut | Mapping[str, Any]) -> GateOutcome:
        """:meth:`Gate.settle`, awaited."""
        from sluicegate.wire import RequestOut  # by the first gate, not by importing it

        if not isinstance(answer, RequestOut):
            answer = RequestOut.model_validate(answer)
        return await self.run(machine.settling(answer))

    async def run(self, steps: Machine[T]) -> T:
        """:meth:`Gate.run`, awaiting each call."""
        try:
            io = next(steps)
            while True:
                try:
                    result = await self._make(io)
                except ClientError as err:
                    io = steps.throw(err)
                else:
                    io = steps.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _make(self, io: Io) -> Any:
        try:
            return await self.client.call(io.build())
        except ClientError as err:
            if io.once:
                raise
            failed = err
        import stamina  # only once a call has failed (see Gate._make)

        replay = [failed]
        async for attempt in stamina.retry_context(
            Retry(io.until, self.clock), attempts=None, timeout=None, **BACKOFF
        ):
            with attempt:
                if replay:
                    raise replay.pop()
                return await self.client.call(io.build())
        raise AssertionError("unreachable: stamina returns or raises")
