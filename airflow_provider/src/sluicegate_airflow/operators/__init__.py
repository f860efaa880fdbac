"""Operators of the Sluicegate provider: :class:`ApprovalGateOperator`, a task that halts until
the policy or its reviewers let the next step go on."""

from __future__ import annotations

from sluicegate_airflow.operators.approval import ApprovalGateOperator, idempotency_key

__all__ = ["ApprovalGateOperator", "idempotency_key"]
