"""The gate's one state machine, open -> wait -> settle -> release, without I/O.

Each step is a generator that yields :class:`Io` (an API call to make, and how long to keep
retrying it) and receives the call's answer, or has the call's :class:`ClientError` thrown
into it. It never sleeps, reads a socket or imports an event loop: a small blocking driver
and a small async driver (:mod:`sluicegate.gate.drivers`) make the calls, so the rules below
are written once for both:

- **open** (or reattach: the idempotency key names the gate, and a retry of the step gets its
  request back), or **attach** to a request a run carries, refused unless it was opened by
  this orchestrator, for this step and this action (:func:`check_carried`);
- **wait** by long poll until the request ends or the caller's deadline passes;
- **settle**: the outcome (:class:`~sluicegate.gate.outcome.GateOutcome`), and, when a request
  let the step go on, **release**: the audit log's record that it went on. That record's
  failure only logs: the approval stands, and the step must not fail for it.

Retrying (:class:`Retry`) is the drivers' business, by one rule: only what may change is
asked again (:attr:`ClientError.transient`: unreachable, 503, a proxy's 5xx), with backoff
and jitter, never past the caller's deadline; anything else is raised at once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from sluicegate import calls
from sluicegate.calls import ApiCall
from sluicegate.exceptions import ClientError, ForeignRequestError
from sluicegate.gate.outcome import GateOutcome, OutcomeKind

if TYPE_CHECKING:
    from sluicegate.model import Action, Requester
    from sluicegate.wire import RequestOut

__all__ = [
    "BACKOFF",
    "Clock",
    "Io",
    "Machine",
    "Retry",
    "attaching",
    "check_carried",
    "deadline",
    "opening",
    "passing",
    "settling",
    "waiting",
]

T = TypeVar("T")

#: A monotonic clock in seconds (``time.monotonic``; a fake one in tests).
Clock = Callable[[], float]

#: A step of the gate: yields I/O, receives its results, returns a ``T``.
Machine = Generator["Io", Any, T]

#: stamina's backoff between attempts: ``min(wait_max, wait_initial * 2 ** (n - 1) +
#: uniform(0, wait_jitter))`` seconds, so a fleet of gates does not hammer a server that is
#: coming back.
BACKOFF = {"wait_initial": 0.25, "wait_max": 10.0, "wait_jitter": 1.0, "wait_exp_base": 2.0}

#: The shortest long poll made before the deadline (one made at or after it asks once).
_MIN_POLL = 0.1

log = logging.getLogger("sluicegate.gate")


@dataclass(frozen=True)
class Io:
    """One call to make: ``build()`` describes it (anew for each attempt: a long poll's timeout
    shrinks as its deadline nears). A transient failure is retried until ``until`` (a
    :data:`Clock` value; None: for as long as it takes), unless ``once``."""

    build: Callable[[], ApiCall[Any]]
    until: float | None = None
    once: bool = False


class Retry:
    """Whether to try a failed call again, and how soon: stamina's backoff hook.

    Only a :class:`ClientError` that may pass (:attr:`~ClientError.transient`) is retried, and
    never past ``until``. Far from the deadline, stamina's backoff applies (it never waits more
    than ``wait_max``); nearer, a wait is capped at the time left, so the last attempt is made
    at the deadline and the gate gives up then, not a whole backoff later.
    """

    def __init__(self, until: float | None, clock: Clock) -> None:
        self.until = until
        self.clock = clock
        self.failures = 0

    def __call__(self, err: Exception) -> bool | float:
        if not isinstance(err, ClientError) or not err.transient:
            return False
        self.failures += 1
        if self.until is None:
            return True
        left = self.until - self.clock()
        if left <= 0:
            return False
        if left >= BACKOFF["wait_max"]:
            return True
        backoff = BACKOFF["wait_initial"] * BACKOFF["wait_exp_base"] ** (self.failures - 1)
        return min(left, backoff + random.uniform(0, BACKOFF["wait_jitter"]))


def deadline(timeout: float | None, clock: Clock) -> float | None:
    """The clock value ``timeout`` seconds from now (None: no deadline)."""
    return None if timeout is None else clock() + timeout


def opening(
    idempotency_key: str,
    action: Action | Mapping[str, Any],
    requester: Requester | Mapping[str, Any] | None,
    until: float | None,
) -> Machine[RequestOut]:
    """Open the gate, or reattach to the request its key already names.

    :raises ActionError: the gate's body would be refused (before anything is sent).
    """
    call = calls.open_gate(idempotency_key, action, requester)
    answer: RequestOut = yield Io(lambda: call, until)
    return answer


def attaching(
    request_id: str,
    action: Action | Mapping[str, Any],
    requester: Requester | Mapping[str, Any],
    until: float | None,
) -> Machine[RequestOut]:
    """The request a run carries (a run launched once it was approved), if it is this gate's
    (:func:`check_carried`)."""
    from sluicegate.model import Action, Requester, parse_action, parse_requester

    asked = action if isinstance(action, Action) else parse_action(action)
    who = requester if isinstance(requester, Requester) else parse_requester(dict(requester))
    answer: RequestOut = yield Io(lambda: calls.get(request_id), until)
    check_carried(answer, asked, who)
    return answer


def check_carried(answer: RequestOut, action: Action, requester: Requester) -> None:
    """Refuse a carried request that was not opened by this orchestrator, for this step and
    for this very action (its fingerprint).

    :raises ForeignRequestError: naming what differs.
    """
    opened = answer.requester
    if opened is None or opened.orchestrator != requester.orchestrator:
        reason = f"it was not opened by {requester.orchestrator}"
    elif opened.step != requester.step:
        reason = f"it was opened for step {opened.step!r}"
    elif answer.fingerprint != action.fingerprint():
        reason = "it was opened for a different action"
    else:
        return
    raise ForeignRequestError(answer.id, requester.step, reason)


def waiting(
    request_id: str, until: float | None, clock: Clock, poll_seconds: float = calls.LONG_POLL
) -> Machine[RequestOut]:
    """Long-poll until the request ends or ``until`` passes: its last state (still pending
    at the deadline; the caller decides, and a gate never takes that for approval). Each poll
    lasts at most ``poll_seconds``: the server answers it at once when the request ends, so
    the length only sets how often an idle wait asks again."""

    def poll() -> ApiCall[RequestOut]:
        left = poll_seconds if until is None else until - clock()
        return calls.wait(request_id, min(poll_seconds, max(left, _MIN_POLL)) if left > 0 else 0)

    answer: RequestOut = yield Io(poll, until)
    while not answer.terminal and (until is None or clock() < until):
        answer = yield Io(poll, until)
    return answer


def settling(answer: RequestOut) -> Machine[GateOutcome]:
    """The outcome of ``answer``, with the release recorded when a request let the step go on
    (a failure to record it only logs)."""
    outcome = GateOutcome.of(answer)
    if not outcome.proceed or outcome.kind is OutcomeKind.ALLOWED:
        return outcome  # nothing went on, or no request stands behind the policy's allow
    try:
        yield Io(lambda: calls.release(answer.id), once=True)
    except ClientError as err:
        log.warning("could not record the release of request %s: %s", answer.id, err)
        return outcome
    return replace(outcome, released=True)


def passing(
    start: Machine[RequestOut], *, wait: bool, until: float | None, clock: Clock
) -> Machine[GateOutcome]:
    """``start`` (:func:`opening` or :func:`attaching`), then, if ``wait``, the wait for a
    pending request up to ``until``, then :func:`settling`."""
    answer = yield from start
    if wait and not answer.terminal:
        answer = yield from waiting(answer.id, until, clock)
    return (yield from settling(answer))
