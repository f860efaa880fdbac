"""``SluicegateHook``: the ``sluicegate`` connection type Airflow registers from the provider,
and ``test_connection``: what ``airflow connections test`` (and the UI's Test button) reports
for a Sluicegate connection, through Airflow's own CLI in a fresh AIRFLOW_HOME against the real
server as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluicegate.store import Store
from tests.core.support.serverproc import POLICY, ServerProcess, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    work = tmp_path_factory.mktemp("airflow-hook")
    db = f"sqlite:///{work}/sluicegate.db"
    proc = ServerProcess(db, POLICY, work).start()
    with Store(db) as store:
        token = store.create_token("airflow-prod", "request")
    try:
        yield proc, token
    finally:
        proc.stop()


def connections_test(home: Path, host: str, token: str) -> subprocess.CompletedProcess[str]:
    """``airflow connections test sluicegate_default`` in a fresh AIRFLOW_HOME, the connection
    given as Airflow reads it from the environment, connection testing enabled."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    conn = {"conn_type": "sluicegate", "host": host, "password": token}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SLUICEGATE_DEFAULT": json.dumps(conn),
    }
    return subprocess.run(
        [sys.executable, "-m", "airflow", "connections", "test", "sluicegate_default"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip


def test_airflow_connections_test_succeeds_against_the_server(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    proc, token = server
    out = connections_test(tmp_path, proc.url, token)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert "Connection success!" in out.stdout


def test_a_token_the_server_refuses_fails_the_test_saying_so_and_never_printing_it(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    proc, _ = server
    wrong = "sgreq_not-a-token-the-server-knows"
    out = connections_test(tmp_path, proc.url, wrong)
    assert out.returncode == 1, out.stdout + out.stderr[-2000:]
    assert "Connection failed!" in out.stdout
    assert f"the Sluicegate server at {proc.url} refused the token" in out.stdout
    assert wrong not in out.stdout + out.stderr


def test_a_server_nobody_runs_and_a_connection_without_token_fail_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sluicegate_airflow.hooks import SluicegateHook

    down = f"http://127.0.0.1:{free_port()}"
    conn = {"conn_type": "sluicegate", "host": down, "password": "sgreq_x"}
    monkeypatch.setenv("AIRFLOW_CONN_SLUICEGATE_DOWN", json.dumps(conn))
    ok, message = SluicegateHook("sluicegate_down").test_connection()
    assert not ok and message.startswith("cannot reach the Sluicegate server"), message
    assert down in message and "sgreq_x" not in message

    monkeypatch.setenv("AIRFLOW_CONN_SLUICEGATE_BARE", json.dumps({**conn, "password": None}))
    ok, message = SluicegateHook("sluicegate_bare").test_connection()
    assert (ok, message) == (
        False,
        "connection 'sluicegate_bare' has no password: set it to a request-scoped Sluicegate token",
    )


def test_the_sluicegate_connection_type_is_registered() -> None:
    from airflow.providers_manager import ProvidersManager

    hooks = ProvidersManager().hooks
    assert "sluicegate" in hooks
    info = hooks["sluicegate"]
    assert info is not None
    assert info.hook_class_name == "sluicegate_airflow.hooks.sluicegate.SluicegateHook"
