"""``sluicegate demo --with airflow``, run as a user runs it: the environment's console script
as a subprocess, which starts the approval server and ``airflow standalone``, triggers the
example DAG, approves its gate from a second process and follows the run to its end.

Each test checks what the user sees (the UI address, the review links, the run's end as
Airflow reports it) and that every process the demo started is gone afterwards: the process
groups it recorded in its work folder, and any process whose environment names the demo's
AIRFLOW_HOME (which would catch one that left its group).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

from tests.demo_harness import EXAMPLES, SLUICEGATE, survivors, workdir_of


def _env() -> dict[str, str]:
    """A user's shell: none of the test harness's AIRFLOW_* / SLUICEGATE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SLUICEGATE_"))}
    return {**env, "PYTHONUNBUFFERED": "1"}


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SLUICEGATE, "demo", "--with", "airflow", "--examples", str(EXAMPLES), *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_demo_with_airflow_runs_the_example_dag_through_its_gate(tmp_path: Path) -> None:
    demo = _start("--approve-as", "alice,bob", "--wait", "120", cwd=tmp_path)
    try:
        out, _ = demo.communicate(timeout=420)
    finally:
        demo.kill()
    assert demo.returncode == 0, out
    workdir = workdir_of(out)
    ui = re.search(
        r"^Airflow UI: (http://127\.0\.0\.1:\d+) \(user admin, password in (\S+)\)$", out, re.M
    )
    assert ui, out
    assert Path(ui.group(2)).is_file()  # the password file a user signs in with
    assert "the gate task approve_export is deferred" in out
    links = re.findall(r"^ +(alice|bob): http://127\.0\.0\.1:\d+/r/[0-9a-f-]+\?t=\S+$", out, re.M)
    assert links == ["alice", "bob"], out  # the eligible stewards (carol owns the DAG)
    assert re.search(r"requests approve \S+ --server \S+ --token sgrev_\S+  # as alice$", out, re.M)
    assert "The request is approved" in out
    said = re.search(r"^Airflow says: run (\S+) of crm_export success \((.*)\)", out, re.M)
    assert said, out
    assert said.group(2).startswith("extract success, approve_export success, export success")

    # Airflow's own record of the run, read from its metadata database after the demo.
    with sqlite3.connect(workdir / "airflow" / "airflow.db") as db:
        runs = db.execute("SELECT run_id, state, run_type FROM dag_run WHERE dag_id = 'crm_export'")
        assert runs.fetchall() == [(said.group(1), "success", "manual")]
        tasks = dict(db.execute("SELECT task_id, state FROM task_instance").fetchall())
    assert tasks == {"extract": "success", "approve_export": "success", "export": "success"}
    assert survivors(workdir) == []
    shutil.rmtree(workdir)  # the demo keeps it for its user; the test has read it


def test_ctrl_c_while_the_gate_waits_stops_everything(tmp_path: Path) -> None:
    demo = _start("--wait", "300", cwd=tmp_path)  # nobody approves: the gate waits
    assert demo.stdout is not None
    lines: list[str] = []
    killer = threading.Timer(420, demo.kill)  # never hang the suite
    killer.start()
    try:
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("waiting for a reviewer"):
                demo.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
                break
        rest = demo.stdout.read()
        code = demo.wait(timeout=60)
    finally:
        killer.cancel()
        demo.kill()
    out = "".join(lines) + rest
    assert any(x.startswith("waiting for a reviewer") for x in lines), out
    assert code == 130, out
    assert out.rstrip().endswith("stopped"), out
    assert "Traceback" not in out
    assert survivors(workdir_of(out)) == []
    shutil.rmtree(workdir_of(out))
