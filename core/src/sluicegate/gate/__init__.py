"""The gate: may this pipeline step go on? One state machine for every adapter.

Open (or reattach to) a gate, wait for its reviewers, settle the answer into a typed
:class:`GateOutcome`, and record the release when a request let the step go on. The same
machine (:mod:`sluicegate.gate.machine`, no I/O) is driven blocking by :class:`Gate` and
awaited by :class:`AsyncGate`; an adapter only translates its orchestrator's step into an
``Action`` and a ``Requester``, and maps the outcome onto succeeding, failing, skipping or
waiting::

    from sluicegate.client import SluicegateClient
    from sluicegate.gate import Gate

    with SluicegateClient() as client:
        outcome = Gate(client).open(key, action, requester, wait=True, timeout=600)
    if not outcome.proceed:
        raise RuntimeError(outcome.message)  # "request 0197... was denied by bob: ..."

What each orchestrator needs:

- open only, and wait elsewhere (Airflow defers to its triggerer): :meth:`Gate.open`;
- open and wait in-process up to a deadline (Dagster in the step): ``open(wait=True)``;
- wait only, for a request id (Airflow's trigger, Prefect while paused): :meth:`Gate.wait`
  with ``settle=False``, then :meth:`Gate.settle` where the step resumes;
- take up a request a run carries, checked to be this step's and this action's (Dagster's
  sensor-launched run): :meth:`Gate.attach`.
"""

from __future__ import annotations

from sluicegate.gate.drivers import AsyncCaller, AsyncGate, Caller, Gate
from sluicegate.gate.outcome import GateOutcome, OutcomeKind

__all__ = ["AsyncCaller", "AsyncGate", "Caller", "Gate", "GateOutcome", "OutcomeKind"]
