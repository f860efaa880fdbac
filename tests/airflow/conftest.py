"""Airflow test setup: a throwaway AIRFLOW_HOME, set before anything imports Airflow, and the
``env`` the gate tests share (Airflow's database, the test DAGs, a Sluicegate server: the
adapters' shared harness, tests/gate_harness.py).

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

import pytest

from tests.gate_harness import GateHarness, gate_harness

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
    collect_ignore_glob = ["test_*.py", "*/test_*.py"]  # and in the folders below


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's database migrated (`airflow db migrate`, as a user does) and the test DAGs
    serialized into it, once per test process."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True
    )
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert not bag.import_errors, bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)


def _point_airflow_at(gate: GateHarness) -> None:
    conn = {"conn_type": "sluicegate", "host": gate.url, "password": gate.request_token}
    os.environ["AIRFLOW_CONN_SLUICEGATE_DEFAULT"] = json.dumps(conn)
    os.environ["SLUICEGATE_TEST_MARKS"] = str(gate.marks)


#: The Sluicegate server the gate tests share, made once per test process (a server start on
#: Airflow's migrated database), for every module whose tests run DAGs through the gate. Each
#: test tells its own DAG runs and requests apart by run id, and the marks it checks by DAG id.
env = gate_harness(
    requester="airflow-prod",
    reviewers=("alice", "bob", "carol"),
    auditor="internal-audit",
    scope="session",
    needs=("airflow_db",),
    ready=_point_airflow_at,
)
