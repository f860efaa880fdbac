"""The domain model: what a pipeline asks, who asks, who decides, and how a request ends.

These are plain, immutable values (pydantic models) with no I/O. The store persists them, the
server speaks them as JSON, and the adapters build ``Action`` and ``Requester`` from their
orchestrator's idea of a step. One module per concept: :mod:`~sluicegate.model.action`,
:mod:`~sluicegate.model.requester`, :mod:`~sluicegate.model.request` (the status machine and
the rule of whether a step goes on), and :mod:`~sluicegate.model.base` (what they share).

The status machine::

    pending ──> approved | denied | expired | cancelled     (terminal states never change)
"""

from __future__ import annotations

from sluicegate.model.action import (
    MAX_CONTEXT_BYTES,
    MAX_CONTEXT_DEPTH,
    Action,
    Asset,
    parse_action,
)
from sluicegate.model.base import canonical_json, no_nul, utcnow, uuid7, validation_message
from sluicegate.model.request import (
    TERMINAL,
    ApprovalRequest,
    Channel,
    ClassificationSource,
    Decision,
    LineageHop,
    OnTimeout,
    Status,
    Verdict,
    check_transition,
    proceeds,
)
from sluicegate.model.requester import ParentRun, Requester, parse_requester

__all__ = [
    "MAX_CONTEXT_BYTES",
    "MAX_CONTEXT_DEPTH",
    "TERMINAL",
    "Action",
    "ApprovalRequest",
    "Asset",
    "Channel",
    "ClassificationSource",
    "Decision",
    "LineageHop",
    "OnTimeout",
    "ParentRun",
    "Requester",
    "Status",
    "Verdict",
    "canonical_json",
    "check_transition",
    "no_nul",
    "parse_action",
    "parse_requester",
    "proceeds",
    "utcnow",
    "uuid7",
    "validation_message",
]
