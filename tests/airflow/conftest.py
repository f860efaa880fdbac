"""Airflow test setup: a throwaway AIRFLOW_HOME, set before anything imports Airflow, and the
``env`` the gate tests share (Airflow's database, the test DAGs, a Sluicegate server).

Airflow reads AIRFLOW_HOME (and writes airflow.cfg into it) when ``airflow`` is first
imported, so it is set here at conftest import time, not in a fixture. This folder only runs
in the airflow environment (``python3 dev.py test --only airflow``); elsewhere it is left out of
collection, so a bare ``pytest`` in another environment does not fail on a missing Airflow.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

_home = tempfile.mkdtemp(prefix="sluicegate-airflow-home-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = _home
# The test DAGs are files (dag.test() needs serialized DAGs, which Airflow makes from files).
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(os.path.dirname(__file__), "dags")
# Airflow's OpenLineage provider writes the tasks' events here (JSON Lines), so tests can check
# that the gate's facets reach them.
os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
    {
        "type": "file",
        "log_file_path": os.path.join(_home, "airflow-openlineage.jsonl"),
        "append": True,
    }
)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

if importlib.util.find_spec("airflow") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """test_gate.Env: made once per test process (a migration of Airflow's database and a
    server start), for every module whose tests run DAGs through the gate. Each test tells its
    own DAG runs and requests apart by run id, and the marks it checks by DAG id."""
    from test_gate import gate_env

    with gate_env(tmp_path_factory) as made:
        yield made
