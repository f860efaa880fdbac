"""Dagster integration for Sluicegate: assets and ops that halt until their action is approved.

- :class:`SluicegateResource`: the server URL and request token (``EnvVar``-friendly).
- :func:`approval_required`: a decorator under ``@asset``/``@op``; the action comes from the
  asset's ``sluicegate/action`` tag, keys, owners, kinds and metadata.
- :func:`approval_gate_op`: a gate op for op jobs.
- :func:`approval_sensor`: launches gated assets or jobs once approved (``wait="sensor"``).
- :func:`request_approval`: the gate as a call, for bodies that decide when to ask.

It imports the core (``sluicegate``) and Dagster, never another orchestrator's adapter.
"""

from __future__ import annotations

from dagster_sluicegate.decorators import approval_gate_op, approval_required
from dagster_sluicegate.gate import approval_metadata, request_approval
from dagster_sluicegate.resource import SluicegateResource
from dagster_sluicegate.sensor import approval_sensor

__version__ = "0.1.0"

__all__ = [
    "SluicegateResource",
    "__version__",
    "approval_gate_op",
    "approval_metadata",
    "approval_required",
    "approval_sensor",
    "request_approval",
]
