"""Sensors of the Sluicegate provider: :class:`ApprovalSensor`, which waits on a request opened
elsewhere."""

from __future__ import annotations

from sluicegate_airflow.sensors.approval import ApprovalSensor

__all__ = ["ApprovalSensor"]
