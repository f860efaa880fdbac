"""What an allowed Sluicegate gate adds to an Airflow 3 task, run as Airflow runs a task: a fresh
task process per task instance that parses the DAG file (issue 27, item 1 for Airflow).

Why a file of its own, not a mode of ``bench_airflow_gate.py``: that benchmark runs everything
in ``dag.test()``, one warm process that parsed every DAG file once and runs each task in
itself, so a task never pays the DAG file's imports (``import sluicegate_airflow`` among them)
and its deferred gate's trigger runs inline while Airflow's own HITL operator waits for
``dag.test()``'s 1 s sleep loop. Here nothing shares a process with the tasks.

How a task runs here, and why this way
  Airflow 3 runs a task instance through ``supervise_task`` (``airflow.sdk.execution_time.
  supervisor``): the executor's worker (the LocalExecutor's worker processes, a Celery worker)
  calls ``BaseExecutor.run_workload(ExecuteTask)``, which forks a task process; that process
  parses the task's DAG file (``task_runner.parse``: a ``BundleDagBag`` of the one file),
  runs the task, and talks to the Execution API (``airflow api-server``) through its
  supervisor. This benchmark does exactly that, from a driver process that plays the
  scheduler and the LocalExecutor's worker: it creates each DAG run from the serialized DAG
  (``create_dagrun``, no DAG file imported here), queues each task instance in dependency
  order, makes its ``ExecuteTask`` workload (``ExecuteTask.make`` with a JWT as the executor
  makes it) and calls ``BaseExecutor.run_workload`` as ``local_executor._run_worker`` does,
  one task at a time. The driver never imports ``sluicegate``, ``sluicegate_airflow`` or a
  DAG file (checked before each fork: a forked task process would inherit them), as a real
  worker, forked from the scheduler, has not. Not used: ``airflow tasks test`` and
  ``dag.test()`` run the task inside the process that parsed the file (``_run_task``); a
  LocalExecutor under ``dag.test(use_executor=True)`` forks its workers from that process,
  so they inherit the DAG file's imports; a real scheduler would add its own loop's timing.
  What is not Airflow's own code here: the scheduler's choice of what to queue (a fixed order).
  Bytecode is cached (``PYTHONPYCACHEPREFIX`` in the temp dir, whatever the environment's
  ``PYTHONDONTWRITEBYTECODE`` says), as a deployment's task processes import compiled modules;
  the warm-up runs compile them once.

  The task process's time is taken from the fork (``run_workload`` called) to the moment its
  success is recorded (the TI's ``end_date``), and the TI's own duration (``start_date``: the
  supervisor's ``ti_run`` as the process starts, so it includes the parse). Not up to
  ``run_workload``'s return: when the task's sockets close before its exit is seen, Airflow's
  supervisor waits in ``select()`` on no socket for ``[workers] min_heartbeat_interval`` (5 s by
  default) before it notices the exit, a race that ends about one task in two here at random
  (printed, for ``done``); it holds the worker's slot, not the DAG's progress. The interval is
  set to 2 s here so that the race costs the benchmark less time (the tasks last well under 2 s,
  so no heartbeat is sent either way).

Servers, each a subprocess on 127.0.0.1, none pinned to a CPU (nor is the driver): ``sluicegate
serve`` (SQLite, examples/policy.yaml) and ``airflow api-server --apps execution -w 1``
(SQLite metadata database, throwaway AIRFLOW_HOME).

The DAGs (``bench/airflow_dags/allowed/``, one file each, so a task process parses only its
own and pays the adapter's import only where the file uses it):
  ``no_gate.py``        extract -> done                     (imports nothing of Sluicegate)
  ``gated_task.py``     extract -> done, done is ``@task.sluicegate(kind="read", ...)``
  ``gate_operator.py``  extract -> gate -> done, gate an ``ApprovalGateOperator(kind="read")``
  ``plain_task.py``     extract -> gate -> done, gate a trivial ``@task``
The policy allows kind ``read``: the gate asks once and goes on.

What it prints
  1. Per task process (fork -> parse -> run -> exit, the wall time of ``run_workload``), the
     variants interleaved (each round runs the four DAGs in a shuffled order, seeded), p50 and
     p95 of the round-by-round difference: ``@task.sluicegate``'s ``done`` - the plain
     ``done``; ``ApprovalGateOperator`` - the trivial task in its place; and the whole run
     (every task process of the DAG: each one parses the file, so each pays the import).
  2. The adapter's import alone, in fresh interpreters that first import what a task process
     has before it parses a DAG file (the supervisor and the task runner), interleaved:
     parsing each DAG file as the task runner does (``BundleDagBag``) minus parsing
     ``no_gate.py``; ``import sluicegate_airflow.operators`` and ``.decorators`` timed alone;
     and one ``-X importtime`` breakdown of the gated file's parse by who pays it: the
     provider (``sluicegate_airflow``), the core (``sluicegate``), third-party packages they
     pulled in, and Airflow itself (the provider registry behind ``task.sluicegate``).
  The load average at the start, between the parts and at the end: these are wall times on
  shared cores. Figures only, no asserts. From the repository root (about 10 minutes)::

    .venvs/airflow/bin/python bench/bench_airflow_allowed.py [--rounds 40] [--imports 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DAGS = HERE / "airflow_dags" / "allowed"
sys.path.insert(0, str(HERE))

from _server import HOST, POLICY, ServerProcess, create_token, free_port, pct, quiet  # noqa: E402

#: variant -> (dag_id, file, task ids in dependency order)
VARIANTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "no_gate": ("allowed_no_gate", "no_gate.py", ("extract", "done")),
    "gated_task": ("allowed_gated_task", "gated_task.py", ("extract", "done")),
    "gate_operator": ("allowed_gate_operator", "gate_operator.py", ("extract", "gate", "done")),
    "plain_task": ("allowed_plain_task", "plain_task.py", ("extract", "gate", "done")),
}
#: Airflow's provider registry (initialised in this driver, as in a scheduler) imports the
#: provider's package ``__init__`` for ``get_provider_info``, which imports nothing; a task
#: process forked from here inherits that, and must inherit no more.
INHERITED_AT_MOST = ("sluicegate", "sluicegate_airflow")
GOAL_MS = 5.0
IMPORT_GOAL_MS = 30.0


def say(*parts: object) -> None:
    print(*parts, flush=True)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- environment


def prepare_env(work: Path, api_port: int) -> None:
    """Airflow's configuration through the environment, before ``airflow`` is imported."""
    home = work / "airflow-home"
    home.mkdir()
    # A deployed task process imports compiled bytecode (written once, by the install or the
    # first import). This machine's environment sets PYTHONDONTWRITEBYTECODE, under which every
    # fresh process compiles each module it imports from source again: the bytecode is kept
    # here instead, in a cache of the benchmark's own (nothing written into the repository or
    # the virtualenv), for this process, the task processes it forks and the servers.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    sys.dont_write_bytecode = False
    sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # The supervisor's select() after a task's sockets close; see the module docstring.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
    })  # fmt: skip


def run_checked(cmd: Sequence[str], what: str) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return out.stdout


SERIALIZE = """
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
DagBundlesManager().sync_bundles_to_db()
bag = DagBag({folder!r})
assert not bag.import_errors, bag.import_errors
sync_bag_to_db(bag, "dags-folder", None)
print(sorted(bag.dag_ids))
"""


class ApiServer:
    """``airflow api-server --apps execution -w 1`` on ``port``, in its own process group."""

    def __init__(self, work: Path, port: int) -> None:
        self.url = f"http://{HOST}:{port}"
        self.log_path = work / "airflow-api-server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--apps", "execution", "-w", "1",
             "-H", HOST, "-p", str(port)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"airflow api-server exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/execution/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.25)
        raise SystemExit(f"airflow api-server not ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


# --------------------------------------------------------------------------- task processes


class Worker:
    """The scheduler's and the LocalExecutor worker's part: create a run, queue its task
    instances in order, run each through ``BaseExecutor.run_workload`` (a fresh task process)."""

    def __init__(self, work: Path) -> None:
        from airflow.api_fastapi.auth.tokens import JWTGenerator, get_signing_args
        from airflow.configuration import conf
        from airflow.executors.base_executor import get_execution_api_server_url

        self.log = work / "tasks.log"
        self.server = get_execution_api_server_url()
        self.jwt = JWTGenerator(
            valid_for=conf.getint("execution_api", "jwt_expiration_time"),
            audience=conf.get_mandatory_list_value("execution_api", "jwt_audience")[0],
            issuer=conf.get("api_auth", "jwt_issuer", fallback=None),
            **get_signing_args(make_secret_key_if_needed=False),
        )
        self.runs = 0
        from setproctitle import getproctitle

        self.title = getproctitle()

    def run(self, variant: str) -> dict[str, tuple[float, float, float]]:
        """Run ``variant``'s DAG once: task id -> seconds (fork -> success recorded, the TI's
        start -> end, ``run_workload``'s whole wall)."""
        from airflow.executors.base_executor import BaseExecutor
        from airflow.executors.workloads import BundleInfo, ExecuteTask
        from airflow.models.dagbag import DBDagBag
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState, TaskInstanceState
        from airflow.utils.types import DagRunTriggeredByType, DagRunType
        from setproctitle import setproctitle
        from sqlalchemy import select

        dag_id, file, tasks = VARIANTS[variant]
        self.runs += 1
        run_id = f"bench_{self.runs}_{variant}"
        with create_session() as session:
            dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
            assert dag is not None, f"{dag_id} is not serialized"
            dag.create_dagrun(
                run_id=run_id, run_after=datetime.now(timezone.utc), run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.TEST, state=DagRunState.RUNNING,
                session=session,
            )  # fmt: skip
        out: dict[str, tuple[float, float, float]] = {}
        for task_id in tasks:
            where = (TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id,
                     TaskInstance.task_id == task_id)  # fmt: skip
            with create_session() as session:
                ti = session.scalars(select(TaskInstance).where(*where)).one()
                ti.try_number += 1
                ti.state = TaskInstanceState.QUEUED
                ti.queued_dttm = datetime.now(timezone.utc)
                session.flush()
                workload = ExecuteTask.make(
                    ti, dag_rel_path=Path(file), generator=self.jwt,
                    bundle_info=BundleInfo(name="dags-folder"),
                )  # fmt: skip
            leaked = sorted(m for m in sys.modules if m.startswith(INHERITED_AT_MOST) and
                            m != INHERITED_AT_MOST[1])  # fmt: skip
            assert not leaked, f"the driver imported {leaked[:3]}: task processes would inherit it"
            with quiet(self.log):
                forked = datetime.now(timezone.utc)
                started = time.perf_counter()
                BaseExecutor.run_workload(workload, server=self.server)
                wall = time.perf_counter() - started
            setproctitle(self.title)  # run_workload renamed this process "airflow supervisor"
            with create_session() as session:
                ti = session.scalars(select(TaskInstance).where(*where)).one()
                if ti.state != TaskInstanceState.SUCCESS:
                    raise SystemExit(f"{dag_id}.{task_id} ended {ti.state}; see {self.log}")
                out[task_id] = (
                    (ti.end_date - forked).total_seconds(),
                    (ti.end_date - ti.start_date).total_seconds(),
                    wall,
                )
        return out


def task_processes(worker: Worker, rounds: int, seed: int) -> None:
    names = list(VARIANTS)
    for name in names:  # warm-up: not counted (first run of each DAG, caches on disk)
        worker.run(name)
    rng = random.Random(seed)
    results: list[dict[str, dict[str, tuple[float, float, float]]]] = []
    for i in range(rounds):
        order = names[:]
        rng.shuffle(order)
        results.append({name: worker.run(name) for name in order})
        if (i + 1) % 10 == 0:
            say(f"  {i + 1}/{rounds} rounds, load average {load()}")

    def col(variant: str, task: str, k: int = 0) -> list[float]:
        return [r[variant][task][k] for r in results]

    def total(variant: str) -> list[float]:
        return [sum(t[0] for t in r[variant].values()) for r in results]

    def line(label: str, values: Sequence[float]) -> str:
        s = sorted(values)
        return f"  {label:<58} p50 {pct(s, 50) * 1e3:7.1f}  p95 {pct(s, 95) * 1e3:7.1f} ms"

    say("\nper task process, fork -> parse -> run -> success recorded:")
    for variant, (_, _, tasks) in VARIANTS.items():
        for task in tasks:
            say(line(f"{variant}.{task}", col(variant, task)))
    say("\nthe same task instances' own duration (TI start -> end, as the Execution API set it):")
    for variant, task in (("no_gate", "done"), ("gated_task", "done"), ("plain_task", "gate"),
                          ("gate_operator", "gate")):  # fmt: skip
        say(line(f"{variant}.{task}", col(variant, task, 1)))

    def paired(a: list[float], b: list[float]) -> list[float]:
        return [x - y for x, y in zip(a, b, strict=True)]

    gated = paired(col("gated_task", "done"), col("no_gate", "done"))
    operator = paired(col("gate_operator", "gate"), col("plain_task", "gate"))
    say("\nrun_workload's whole wall (to the supervisor's return; see the docstring):")
    for variant, task in (("no_gate", "done"), ("gated_task", "done")):
        say(line(f"{variant}.{task}", col(variant, task, 2)))
    say(f"\nround by round differences ({rounds} rounds, goal <= {GOAL_MS:.0f} ms p95):")
    say(line("@task.sluicegate done - plain done (task process)", gated))
    say(
        line(
            "  the same by the TI's duration",
            paired(col("gated_task", "done", 1), col("no_gate", "done", 1)),
        )
    )
    say(line("ApprovalGateOperator - trivial @task (task process)", operator))
    say(
        line(
            "  the same by the TI's duration",
            paired(col("gate_operator", "gate", 1), col("plain_task", "gate", 1)),
        )
    )
    say(line("gated_task.extract - no_gate.extract (no gate, same file)",
             paired(col("gated_task", "extract"), col("no_gate", "extract"))))  # fmt: skip
    say(
        line(
            "whole run: @task.sluicegate DAG - no-gate DAG",
            paired(total("gated_task"), total("no_gate")),
        )
    )
    say(line("whole run: ApprovalGateOperator DAG - trivial-task DAG",
             paired(total("gate_operator"), total("plain_task"))))  # fmt: skip
    p95 = pct(sorted(gated), 95) * 1e3
    say(f"  -> @task.sluicegate's step, p95 {p95:+.1f} ms: goal "
        f"{'met' if p95 <= GOAL_MS else 'NOT met'}")  # fmt: skip


# --------------------------------------------------------------------------- imports alone

#: What a task process has imported before it parses its DAG file (forked from the supervisor,
#: then the task runner), and the parse itself as ``task_runner.parse`` does it.
PRELOAD = """
import time, sys
import airflow.sdk.execution_time.supervisor
import airflow.sdk.execution_time.task_runner
from airflow.dag_processing.dagbag import BundleDagBag
"""
PRELOADED_LAST = "airflow.dag_processing.dagbag"
PARSE = (
    PRELOAD
    + """
t = time.perf_counter()
bag = BundleDagBag(dag_folder={path!r}, safe_mode=False, load_op_links=False,
                   bundle_path={folder!r}, bundle_name="dags-folder")
took = time.perf_counter() - t
assert bag.dags and not bag.import_errors, bag.import_errors
print(took)
"""
)
IMPORT = (
    PRELOAD
    + """
t = time.perf_counter()
import {module}
print(time.perf_counter() - t)
"""
)


def fresh(code: str, *flags: str, path: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter; ``path``: a folder put first on its ``sys.path``."""
    env = {**os.environ, "PYTHONPATH": path} if path else None
    out = subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True,
                         check=False, env=env)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"fresh interpreter failed:\n{out.stderr[-3000:]}")
    return out


#: What the gate's ``execute`` imports of the core (on top of the provider's modules).
CORE_AT_EXECUTE = ", ".join(
    f"sluicegate.{m}"
    for m in ("client", "_http", "calls", "gate", "model", "wire", "idempotency", "datasets")
)


def imports(n: int, seed: int, before: str) -> None:
    """Part 2; ``before``: a folder holding another copy of ``sluicegate_airflow`` (the provider
    before a change), whose parse is measured too, interleaved with the rest."""
    cases: dict[str, tuple[str, str]] = {
        f"parse {v}.py": (PARSE.format(path=str(DAGS / f"{v}.py"), folder=str(DAGS)), "")
        for v in ("no_gate", "gated_task", "gate_operator")
    }
    if before:
        cases |= {
            f"parse {v}.py, provider from --before": (cases[f"parse {v}.py"][0], before)
            for v in ("gated_task", "gate_operator")
        }
    cases |= {
        f"import {m}": (IMPORT.format(module=m), "")
        for m in ("sluicegate_airflow", "sluicegate_airflow.decorators",
                  "sluicegate_airflow.operators")
    }  # fmt: skip
    cases["then the core, as execute imports it"] = (
        IMPORT.replace("t = time", "import sluicegate_airflow.decorators\nt = time").format(
            module=CORE_AT_EXECUTE
        ),
        "",
    )
    for code, path in cases.values():  # warm-up, not counted: compiles the bytecode once
        fresh(code, path=path)
    rng = random.Random(seed)
    took: dict[str, list[float]] = {c: [] for c in cases}
    for _ in range(n):
        order = list(cases)
        rng.shuffle(order)
        for case in order:
            code, path = cases[case]
            took[case].append(float(fresh(code, path=path).stdout.strip().splitlines()[-1]))
    say(f"\nthe adapter's import in a fresh task process ({n} interpreters each, interleaved; "
        "after the supervisor's and task runner's imports):")  # fmt: skip
    for case, values in took.items():
        s = sorted(values)
        say(f"  {case:<44} p50 {pct(s, 50) * 1e3:7.1f}  p95 {pct(s, 95) * 1e3:7.1f} ms")
    base = took["parse no_gate.py"]
    for case in [c for c in took if c.startswith("parse") and c != "parse no_gate.py"]:
        extra = sorted(a - b for a, b in zip(took[case], base, strict=True))
        say(
            f"  {case} - parse no_gate.py: p50 {pct(extra, 50) * 1e3:+.1f}  "
            f"p95 {pct(extra, 95) * 1e3:+.1f} ms (goal <= {IMPORT_GOAL_MS:.0f} ms)"
        )
    breakdown(PARSE.format(path=str(DAGS / "gated_task.py"), folder=str(DAGS)))
    if before:
        say("  the same, provider from --before:")
        breakdown(PARSE.format(path=str(DAGS / "gated_task.py"), folder=str(DAGS)), before)


def breakdown(code: str, path: str = "") -> None:
    """Who pays the gated file's parse: ``-X importtime`` self times of the modules first
    imported after the preload, by top-level package (median of 5 interpreters)."""
    per: dict[str, list[float]] = {}
    for _ in range(5):
        err = fresh(code, "-X", "importtime", path=path).stderr.splitlines()
        marker = next(i for i, ln in enumerate(err) if ln.endswith(f"| {PRELOADED_LAST}"))
        seen: dict[str, float] = {}
        for ln in err[marker + 1 :]:
            if not ln.startswith("import time:"):
                continue
            self_us, _, name = (p.strip() for p in ln[len("import time:") :].split("|"))
            top = name.split(".")[0]
            group = top if top in ("sluicegate_airflow", "sluicegate", "airflow") else "others"
            if group == "others":
                group = f"others ({top})" if top in ("pydantic_settings", "httpx") else "others"
            seen[group] = seen.get(group, 0.0) + int(self_us) / 1e3
        for group, ms in seen.items():
            per.setdefault(group, []).append(ms)
    say("  the gated file's parse, modules it imports beyond the preload, by who (-X importtime "
        "self times, median of 5):")  # fmt: skip
    for group, values in sorted(per.items(), key=lambda kv: -statistics.median(kv[1])):
        say(f"    {group:<40} {statistics.median(values):7.1f} ms")


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40, help="rounds of the four DAGs")
    ap.add_argument("--imports", type=int, default=20, help="fresh interpreters per import case")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--before",
        default="",
        help="a folder with another sluicegate_airflow "
        "(e.g. a copy from before a change): its parse is measured too (part 2)",
    )
    ap.add_argument("--skip-tasks", action="store_true", help="part 2 only")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = ap.parse_args()

    from importlib.metadata import version

    work = Path(tempfile.mkdtemp(prefix="sluicegate-bench-airflow-allowed-"))
    api_port = free_port()
    prepare_env(work, api_port)
    stoppers: list[Any] = []
    try:
        say("Sluicegate in Airflow: an allowed gate, each task in a fresh task process")
        say(f"Python {sys.version.split()[0]}, apache-airflow {version('apache-airflow')}, "
            f"sluicegate-airflow {version('airflow-provider-sluicegate')}; {os.cpu_count()} "
            f"CPUs, nothing pinned; load average {load()} at start")  # fmt: skip
        run_checked([sys.executable, "-m", "airflow", "db", "migrate"], "airflow db migrate")
        sg_db = f"sqlite:///{work}/sluicegate.db"
        sg = ServerProcess(sg_db, str(work), policy=POLICY, log_level="warning")
        stoppers.append(sg.stop)
        api = ApiServer(work, api_port)
        stoppers.append(api.stop)
        sg.wait_ready()
        token = create_token(sg_db, "airflow-prod", "request")
        os.environ["AIRFLOW_CONN_SLUICEGATE_DEFAULT"] = json.dumps(
            {"conn_type": "sluicegate", "host": f"http://{HOST}:{sg.port}", "password": token}
        )
        run_checked([sys.executable, "-c", SERIALIZE.format(folder=str(DAGS))], "serializing")
        api.wait_ready()
        if not args.skip_tasks:
            task_processes(Worker(work), args.rounds, args.seed)
            say(f"load average {load()}")
        imports(args.imports, args.seed, args.before)
        say(f"\nload average {load()} at the end")
    finally:
        for stop in reversed(stoppers):
            with contextlib.suppress(Exception):
                stop()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
