"""Hooks of the Sluicegate provider: :class:`SluicegateHook`, the server of a connection."""

from __future__ import annotations

from sluicegate_airflow.hooks.sluicegate import SluicegateHook

__all__ = ["SluicegateHook"]
