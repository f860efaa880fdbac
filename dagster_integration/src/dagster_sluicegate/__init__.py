"""Dagster integration for Sluicegate.

Sluicegate halts a step that is about to touch a sensitive asset until the policy's reviewers
approve it. This package will hold the Dagster side: a ``SluicegateResource`` and an op/asset
gate that builds the action from asset keys, tags and metadata. It imports the core
(``sluicegate``) and Dagster, never another orchestrator's adapter.

Nothing is implemented yet: this release only reserves the distribution and import name.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
