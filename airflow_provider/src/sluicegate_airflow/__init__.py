"""Apache Airflow provider for Sluicegate.

Sluicegate halts a task that is about to touch a sensitive asset until the policy's reviewers
approve it. This package will hold the Airflow side: an ``ApprovalGateOperator``, an
``ApprovalSensor`` deferring to an ``ApprovalTrigger``, and a ``SluicegateHook`` over a
``sluicegate`` connection. It imports the core (``sluicegate``) and Airflow, never another
orchestrator's adapter.

For now it only registers itself with Airflow through the ``apache_airflow_provider`` entry
point (:func:`get_provider_info`). This module does not import Airflow, so that Airflow's
provider discovery can call :func:`get_provider_info` cheaply.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]

#: The distribution name; Airflow refuses a provider whose ``package-name`` differs from it.
DISTRIBUTION_NAME = "airflow-provider-sluicegate"


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata that Airflow's ``ProvidersManager`` reads.

    Referenced by the ``apache_airflow_provider`` entry point (``provider_info``). Operators,
    hooks and the ``sluicegate`` connection type are added here as they are implemented.
    """
    return {
        "package-name": DISTRIBUTION_NAME,
        "name": "Sluicegate",
        "description": (
            "Action-level approvals for data pipelines: gate a task on a human decision "
            "made by policy, with a tamper-evident audit log and OpenLineage events."
        ),
        "versions": [__version__],
    }
