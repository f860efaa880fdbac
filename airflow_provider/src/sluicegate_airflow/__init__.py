"""Apache Airflow provider for Sluicegate.

Sluicegate halts a task that is about to touch a sensitive asset until the policy's reviewers
approve it:

- :class:`~sluicegate_airflow.operators.ApprovalGateOperator` (``operators/approval.py``): the
  gate task; it defers to an :class:`~sluicegate_airflow.triggers.ApprovalTrigger`
  (``triggers/approval.py``) while people decide (no worker held);
- ``@task.sluicegate(kind=...)`` (``decorators/sluicegate.py``): a TaskFlow task whose body runs
  behind its own gate (no separate gate task);
- :class:`~sluicegate_airflow.sensors.ApprovalSensor` (``sensors/approval.py``): waits on an
  existing request;
- :class:`~sluicegate_airflow.hooks.SluicegateHook` (``hooks/sluicegate.py``): the server of a
  ``sluicegate`` connection;
- ``utils/``: what they share (dataset declarations, answers as task outcomes, lineage).

It imports the core (``sluicegate``) and Airflow, never another orchestrator's adapter. This
module itself imports neither, so that Airflow's provider discovery can call
:func:`get_provider_info` cheaply. The operator, decorator, sensor, trigger and hook modules
import the core only where a gate asks or waits (``execute``, the trigger's ``run``): every
task process of Airflow 3 parses its DAG file, so what these modules import at the top, every
task of a DAG that uses the provider pays, gated or not.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]

#: The distribution name; Airflow refuses a provider whose ``package-name`` differs from it.
DISTRIBUTION_NAME = "airflow-provider-sluicegate"


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata that Airflow's ``ProvidersManager`` reads.

    Referenced by the ``apache_airflow_provider`` entry point (``provider_info``).
    """
    return {
        "package-name": DISTRIBUTION_NAME,
        "name": "Sluicegate",
        "description": (
            "Action-level approvals for data pipelines: gate a task on a human decision "
            "made by policy, with a tamper-evident audit log and OpenLineage events."
        ),
        "versions": [__version__],
        "integrations": [
            {"integration-name": "Sluicegate", "external-doc-url": "https://github.com/sluicegate"}
        ],
        "operators": [
            {
                "integration-name": "Sluicegate",
                "python-modules": ["sluicegate_airflow.operators.approval"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Sluicegate",
                "python-modules": ["sluicegate_airflow.sensors.approval"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Sluicegate",
                "python-modules": ["sluicegate_airflow.hooks.sluicegate"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Sluicegate",
                "python-modules": ["sluicegate_airflow.triggers.approval"],
            }
        ],
        # ``@task.sluicegate(kind=...)``: a TaskFlow task whose body runs behind its own gate
        "task-decorators": [
            {
                "name": "sluicegate",
                "class-name": "sluicegate_airflow.decorators.sluicegate.sluicegate_task",
            }
        ],
        "connection-types": [
            {
                "connection-type": "sluicegate",
                "hook-class-name": "sluicegate_airflow.hooks.sluicegate.SluicegateHook",
                "hook-name": "Sluicegate",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "extra"],
                    "relabeling": {"host": "Server URL", "password": "Request token"},
                    "placeholders": {
                        "host": "https://sluicegate.example.com",
                        "password": "sgreq_... (sluicegate token create --scope request)",
                    },
                },
            }
        ],
    }
