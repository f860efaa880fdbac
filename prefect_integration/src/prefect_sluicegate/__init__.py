"""Prefect integration for Sluicegate.

Sluicegate halts a step that is about to touch a sensitive asset until the policy's reviewers
approve it. This package will hold the Prefect side: a task/flow helper that pauses the run
until approval, and a Block for configuration. Prefect finds it through the
``prefect.collections`` entry point. It imports the core (``sluicegate``) and Prefect, never
another orchestrator's adapter.

Nothing is implemented yet: this release only reserves the distribution and import name.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
