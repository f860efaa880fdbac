"""What the Airflow gate tests share: the test DAGs (``dags/``, loaded as Airflow loads them),
the state each task of a ``dag.test()`` run ended in, and the file Airflow's OpenLineage
provider writes the tasks' events to (see conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DAGS = Path(__file__).parent / "dags"
#: Airflow's OpenLineage provider writes the tasks' events here (see conftest.py).
TASK_EVENTS = Path(os.environ["AIRFLOW_HOME"]) / "airflow-openlineage.jsonl"


def _dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS)).get_dag(dag_id)


def states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
