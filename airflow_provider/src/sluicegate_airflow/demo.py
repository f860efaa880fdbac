"""``sluicegate demo --with airflow``: examples/airflow/crm_export.py in a real Airflow 3.3.

The core's demo finds this module through the entry point ``airflow`` of the group
``sluicegate.demos`` (this distribution's pyproject.toml), and hands it the approval server it
started (:class:`~sluicegate.demo.stack.Stack`): the core never imports Airflow.

Airflow starts as its users start it on one machine: ``airflow standalone`` (the API server
with the UI, the scheduler, the DAG processor and the triggerer, which the deferrable gate
needs), with its home and SQLite metadata database in the demo's work folder and the dags
folder at the checkout's examples/airflow. The Sluicegate connection comes from
``AIRFLOW_CONN_SLUICEGATE_DEFAULT``, as the provider's README sets it. The run is triggered
and followed through Airflow's REST API, signed in as the admin user that ``standalone``
makes (its generated password file is what a user signs in to the UI with).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from sluicegate.demo.stack import DemoFailed, Stack

__all__ = ["missing", "run"]

DAG_ID = "crm_export"
#: The example DAG's tasks in the order they run (Airflow's API lists task instances in no
#: order a reader expects: a resumed gate task can come after the task it let go).
TASK_ORDER = ("extract", "approve_export", "export")
#: Start-up: the metadata database's migration, then four Airflow processes importing Airflow.
START_TIMEOUT = 300.0
#: From the trigger to the gate's request: the scheduler, one task (extract), the gate task.
GATE_TIMEOUT = 300.0
#: From the decision to the run's end: the trigger fires, the gate task resumes, export runs.
FINISH_TIMEOUT = 300.0
FINISHED = ("success", "failed")
#: How long one read of Airflow's API may keep failing to answer before the demo gives up.
API_PATIENCE = 120.0


def _airflow() -> Path:
    """The `airflow` command of this environment."""
    return Path(sys.executable).with_name("airflow")


def missing() -> str | None:
    """None when Airflow and its ``airflow`` command are installed here, else how to get them."""
    # find_spec, not import: importing airflow writes ~/airflow/airflow.cfg as a side effect.
    if importlib.util.find_spec("airflow") is None or not _airflow().is_file():
        return (
            "Airflow is not installed in this environment: "
            "run python3 dev.py demo --with airflow from a checkout"
        )
    return None


def _environment(stack: Stack, home: Path, url: str, port: int) -> dict[str, str]:
    """Airflow's configuration, all through its environment variables; set explicitly so that
    a user's own AIRFLOW__* variables cannot point the demo elsewhere."""
    connection = {"conn_type": "sluicegate", "host": stack.server_url}
    connection["password"] = stack.request_token
    bindir = str(_airflow().parent)
    return {
        # standalone starts its components as `airflow ...` from PATH: this environment's.
        "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")]),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(stack.examples / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # Only the run the demo triggers: no scheduled run of the @daily DAG beside it.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        # LocalExecutor starts `parallelism` worker processes at once (32 by default): the
        # DAG runs one task at a time, and the deferred gate holds no worker.
        "AIRFLOW__CORE__PARALLELISM": "2",
        # The scheduler's and the triggerer's log servers: free ports, not the fixed defaults
        # (8793, 8794) that another Airflow on this machine may hold.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(stack.free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(stack.free_port()),
        # The admin user with a generated password, as standalone makes it by default.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW_CONN_SLUICEGATE_DEFAULT": json.dumps(connection),
        "NO_COLOR": "1",
    }


def _password(file: Path, stack: Stack, timeout: float) -> str:
    """The admin password standalone generated (it writes the file as it starts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            password = json.loads(file.read_text()).get("admin")
            if isinstance(password, str) and password:
                return password
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise DemoFailed(f"Airflow wrote no admin password to {file} (log: {stack.workdir})")
        time.sleep(0.25)


class _Api:
    """Airflow's REST API (v2), signed in as the admin user."""

    def __init__(self, url: str, password: str) -> None:
        answer = httpx.post(
            f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30
        )
        if answer.status_code >= 300:
            raise DemoFailed(f"Airflow refused the admin sign-in: HTTP {answer.status_code}")
        token = answer.json()["access_token"]
        self.http = httpx.Client(
            base_url=f"{url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def get(self, path: str) -> Any:
        """``path``'s JSON. An API server too busy to answer in time (a loaded machine: the
        scheduler, triggerer and dag-processor share it) is asked again for a while, then the
        demo fails in one line rather than with a trace."""
        deadline = time.monotonic() + API_PATIENCE
        while True:
            try:
                answer = self.http.get(path)
                break
            except httpx.TransportError as err:
                if time.monotonic() > deadline:
                    raise DemoFailed(
                        f"Airflow's API did not answer GET {path} for {API_PATIENCE:.0f} s: {err!r}"
                    ) from err
                time.sleep(1.0)
        answer.raise_for_status()
        return answer.json()

    def dag_loaded(self, timeout: float) -> None:
        """Wait until the DAG processor has parsed the DAG (or said why it could not)."""
        deadline = time.monotonic() + timeout
        while self.http.get(f"/dags/{DAG_ID}").status_code != 200:
            errors = self.get("/importErrors").get("import_errors", [])
            if errors:
                first = errors[0]
                raise DemoFailed(
                    f"Airflow could not load {first.get('filename')}: "
                    f"{str(first.get('stack_trace', '')).strip().splitlines()[-1:]}"
                )
            if time.monotonic() > deadline:
                raise DemoFailed(f"Airflow did not load the DAG {DAG_ID} within {timeout:.0f} s")
            time.sleep(0.5)

    def trigger(self) -> str:
        answer = self.http.post(f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
        if answer.status_code >= 300:
            raise DemoFailed(f"Airflow refused to trigger {DAG_ID}: {answer.text[:300]}")
        return str(answer.json()["dag_run_id"])

    def run_state(self, run_id: str) -> str:
        return str(self.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"])

    def task_states(self, run_id: str) -> dict[str, str]:
        page = self.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")
        return {t["task_id"]: str(t["state"]) for t in page["task_instances"]}

    def wait_finished(self, run_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (state := self.run_state(run_id)) not in FINISHED:
            if time.monotonic() > deadline:
                raise DemoFailed(f"the Airflow run {run_id} is still {state} after {timeout:.0f} s")
            time.sleep(1.0)
        return state

    def wait_task(self, run_id: str, task_id: str, state: str, timeout: float) -> str:
        """Wait (a while) for the task to reach ``state``; the state it is in at the end."""
        deadline = time.monotonic() + timeout
        while (now := self.task_states(run_id).get(task_id, "none")) != state:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        return now


def _wait_for_gate(stack: Stack, api: _Api, run_id: str) -> dict[str, Any]:
    """The gate's request, once the run reaches the gate; fails at once if the run fails."""
    deadline = time.monotonic() + GATE_TIMEOUT
    while True:
        try:
            return stack.wait_for_request(timeout=1.0)
        except DemoFailed:
            pass
        if api.run_state(run_id) in FINISHED:
            tasks = ", ".join(f"{t} {s}" for t, s in api.task_states(run_id).items())
            raise DemoFailed(
                f"the Airflow run {run_id} ended before its gate ({tasks}); task logs in "
                f"{stack.workdir / 'airflow' / 'logs'}"
            )
        if time.monotonic() > deadline:
            raise DemoFailed(f"the Airflow run {run_id} did not reach its gate in time")


def run(stack: Stack, *, timeout: float) -> int:
    """Start Airflow, trigger crm_export, review its gate, and follow the run to its end."""
    home = stack.workdir / "airflow"
    home.mkdir()
    port = stack.free_port()
    url = f"http://127.0.0.1:{port}"
    stack.echo(
        "Starting Airflow: airflow standalone (api-server, scheduler, dag-processor, triggerer), "
        f"AIRFLOW_HOME={home}"
    )
    started = time.monotonic()
    env = _environment(stack, home, url, port)
    stack.spawn("airflow", [str(_airflow()), "standalone"], env=env, cwd=home)
    stack.wait_http(f"{url}/api/v2/monitor/health", timeout=START_TIMEOUT, what="airflow")
    password_file = home / "simple_auth_manager_passwords.json.generated"
    api = _Api(url, _password(password_file, stack, timeout=60))
    api.dag_loaded(timeout=START_TIMEOUT)
    stack.echo(f"Airflow UI: {url} (user admin, password in {password_file})")
    stack.echo(
        f"  up in {time.monotonic() - started:.0f} s; its log: {stack.workdir / 'airflow.log'}"
    )

    run_id = api.trigger()
    stack.echo(f"Triggered {DAG_ID}, run {run_id}: {url}/dags/{DAG_ID}/runs/{run_id}")
    request = _wait_for_gate(stack, api, run_id)
    gate = api.wait_task(run_id, "approve_export", "deferred", timeout=60)
    stack.echo(f"Airflow: the gate task approve_export is {gate} (it holds no worker slot)")
    halted = time.monotonic()
    stack.review(request)
    status = stack.wait_decided(str(request["id"]), timeout=timeout)
    stack.echo(f"The request is {status}; Airflow's triggerer hands the decision to the gate task")
    state = api.wait_finished(run_id, timeout=FINISH_TIMEOUT)
    states = api.task_states(run_id)
    ordered = sorted(states, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else 99, t))
    tasks = ", ".join(f"{task} {states[task]}" for task in ordered)
    stack.echo(
        f"Airflow says: run {run_id} of {DAG_ID} {state} ({tasks}), "
        f"{time.monotonic() - halted:.0f} s after the gate halted it"
    )
    return 0 if state == "success" and status == "approved" else 1
