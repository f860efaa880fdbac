"""Sluicegate: action-level approvals for data pipelines.

The core holds everything the adapters and the server share: the domain model
(:mod:`sluicegate.model`), the policy engine (:mod:`sluicegate.policy`), the store
(:mod:`sluicegate.store`), the tamper-evident audit log (:mod:`sluicegate.audit`), settings
(:mod:`sluicegate.settings`) and the exception hierarchy (:mod:`sluicegate.exceptions`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from sluicegate.exceptions import SluicegateError
from sluicegate.model import (
    Action,
    ApprovalRequest,
    Asset,
    Decision,
    Requester,
    Status,
    Verdict,
)

try:
    __version__ = version("sluicegate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "Action",
    "ApprovalRequest",
    "Asset",
    "Decision",
    "Requester",
    "SluicegateError",
    "Status",
    "Verdict",
    "__version__",
]
