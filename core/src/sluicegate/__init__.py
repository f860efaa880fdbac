"""Sluicegate: action-level approvals for data pipelines.

The core holds everything the adapters and the server share: the domain model
(:mod:`sluicegate.model`), the gate every adapter runs (:mod:`sluicegate.gate`) and its HTTP
client (:mod:`sluicegate.client`), the policy engine (:mod:`sluicegate.policy`), the store
(:mod:`sluicegate.store`), the tamper-evident audit log (:mod:`sluicegate.audit`), settings
(:mod:`sluicegate.settings`) and the exception hierarchy (:mod:`sluicegate.exceptions`).

The names below are imported on first use (PEP 562): every orchestrator task process imports
this package to gate one step, and should not pay for pydantic's models or the installed
distributions' metadata before it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

    __version__: str

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

#: The module each public name is imported from, on first use.
_HOMES = {
    "SluicegateError": "sluicegate.exceptions",
    **dict.fromkeys(("AsyncGate", "Gate", "GateOutcome", "OutcomeKind"), "sluicegate.gate"),
    **dict.fromkeys(
        ("Action", "ApprovalRequest", "Asset", "Decision", "Requester", "Status", "Verdict",
         "proceeds"),
        "sluicegate.model",
    ),
}  # fmt: skip


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sluicegate")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module 'sluicegate' has no attribute {name!r}")
    globals()[name] = value  # looked up once: later reads find it in the module
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
