"""What the provider's operators, sensor and decorator share, not API of their own:
:mod:`~sluicegate_airflow.utils.datasets` (Airflow's dataset declarations as the action's
datasets), :mod:`~sluicegate_airflow.utils.outcome` (the gate's outcome as Airflow's success,
failure or skip) and :mod:`~sluicegate_airflow.utils.lineage` (the gate's OpenLineage facets).
"""

from __future__ import annotations

__all__: list[str] = []
