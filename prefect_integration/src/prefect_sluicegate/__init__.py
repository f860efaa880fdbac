"""Prefect integration for Sluicegate: action-level approvals for data pipelines.

Sluicegate halts a step that is about to touch a sensitive asset until the policy's reviewers
approve it. Here, on Prefect 3:

- :func:`approval_gate` (and :func:`approval_gate_async`): called in a flow or a task, it opens
  the gate and, while people decide, pauses (or suspends) the flow run; the Sluicegate server
  resumes the run through Prefect's API the moment the request ends;
- :class:`SluicegateConfig`: a Block with the server's URL and a request token;
- :class:`GateDecision`: the run input a paused run waits for (no defaults: a bare resume is
  refused).

Prefect finds the package through the ``prefect.collections`` entry point (which registers the
Block). It imports the core (``sluicegate``) and Prefect, never another orchestrator's adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect_sluicegate.blocks import SluicegateConfig
from prefect_sluicegate.gate import ApprovalRefused, approval_gate, approval_gate_async
from prefect_sluicegate.identity import idempotency_key

if TYPE_CHECKING:
    from prefect_sluicegate.decision import GateDecision

__version__ = "0.1.0"

__all__ = [
    "ApprovalRefused",
    "GateDecision",
    "SluicegateConfig",
    "__version__",
    "approval_gate",
    "approval_gate_async",
    "idempotency_key",
]


def __getattr__(name: str) -> Any:
    # GateDecision loads Prefect's run input machinery: only a gate that pauses needs it.
    if name == "GateDecision":
        from prefect_sluicegate.decision import GateDecision

        return GateDecision
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
