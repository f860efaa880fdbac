"""Triggers of the Sluicegate provider: :class:`ApprovalTrigger`, which waits in the triggerer
for a request to end."""

from __future__ import annotations

from sluicegate_airflow.triggers.approval import ApprovalTrigger

__all__ = ["ApprovalTrigger"]
