"""Sluicegate: action-level approvals for data pipelines.

The core holds everything the adapters and the server share: the domain model
(:mod:`sluicegate.model`), the gate every adapter runs (:mod:`sluicegate.gate`) and its HTTP
client (:mod:`sluicegate.client`), the policy engine (:mod:`sluicegate.policy`), the store
(:mod:`sluicegate.store`), the tamper-evident audit log (:mod:`sluicegate.audit`), settings
(:mod:`sluicegate.settings`) and the exception hierarchy (:mod:`sluicegate.exceptions`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from sluicegate.exceptions import SluicegateError
from sluicegate.gate import AsyncGate, Gate, GateOutcome, OutcomeKind
from sluicegate.model import (
    Action,
    ApprovalRequest,
    Asset,
    Decision,
    Requester,
    Status,
    Verdict,
    proceeds,
)

try:
    __version__ = version("sluicegate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "Action",
    "ApprovalRequest",
    "Asset",
    "AsyncGate",
    "Decision",
    "Gate",
    "GateOutcome",
    "OutcomeKind",
    "Requester",
    "SluicegateError",
    "Status",
    "Verdict",
    "__version__",
    "proceeds",
]
