"""Where an allowed gate's milliseconds go inside Airflow's task runner, step by step.

``bench_airflow_gate.py`` measures what an allowed ``@task.sluicegate`` adds to a DAG run; this
shows where inside the task it goes. It runs ``bench_gated_task`` (``done``'s body behind its own
gate on a kind ``read`` the policy allows) and ``bench_no_gate`` in ``dag.test()``, with
Airflow's task-runner steps wrapped to time them (the wrappers only note the time; the steps
behave as before), for ``done`` only:

- ``ti.render_templates``;
- ``_serialize_rendered_fields`` and the ``SetRenderedFields`` message to the supervisor;
- ``_execute_task``, and in it the gate's ``_open_or_defer`` (the action, the requester, the
  core's ``Gate.open``), and in that the connection lookup (``SluicegateHook.server``) and the
  gate's round trip (``Gate.open``);
- ``done``'s duration (TI end - start).

Variants, run in turn: the gate as shipped, and no gate. The
collector is settled before each run and the placements alternate by round, as in
``bench_airflow_gate.py`` section 3 (the servers sharing the CPUs with dag.test(), or on a CPU
of their own). One Sluicegate server (SQLite, examples/policy.yaml) as a subprocess. Figures
only (p50 over the runs). From the repository root, in the Airflow environment (about 2
minutes)::

    .venvs/airflow/bin/python bench/bench_airflow_task_steps.py [--runs 40]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_airflow_gate as gate_bench  # noqa: E402
from _server import HOST, POLICY, ServerProcess, quiet  # noqa: E402

AS_SHIPPED = "gate as shipped"
NO_GATE = "no gate"
VARIANTS = (AS_SHIPPED, NO_GATE)


class Steps:
    """The wrapped steps' durations, by (placement, variant, step), for the task ``done``."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        self.now: tuple[str, str] | None = None  # (placement, variant) being measured
        self.task: str | None = None  # the task the runner is running

    def note(self, step: str, seconds: float) -> None:
        if self.now is not None and self.task == "done":
            self.seen[(*self.now, step)].append(seconds)

    def wrap(self, owner: Any, name: str, step: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.note(step, time.perf_counter() - started)

        setattr(owner, name, timed)

    def instrument(self) -> None:
        import airflow.sdk.execution_time.task_runner as runner
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms

        import sluicegate_airflow.operators.approval as operators
        from sluicegate.gate import Gate
        from sluicegate_airflow.hooks import SluicegateHook

        run_task = runner._run_task_and_map_outcome

        def which_task(ti: Any, *args: Any, **kwargs: Any) -> Any:
            self.task = ti.task_id
            return run_task(ti, *args, **kwargs)

        runner._run_task_and_map_outcome = which_task
        self.wrap(runner.RuntimeTaskInstance, "render_templates", "ti.render_templates")
        self.wrap(SluicegateHook, "server", "    the connection lookup (hook.server)")
        self.wrap(runner, "_serialize_rendered_fields", "_serialize_rendered_fields")
        self.wrap(runner, "_execute_task", "_execute_task")
        self.wrap(operators._ActionGate, "_open_or_defer", "  the gate's _open_or_defer")
        self.wrap(Gate, "open", "    Gate.open (the round trip)")
        send = InProcessSupervisorComms.send

        def timed_send(comms: Any, msg: Any) -> Any:
            started = time.perf_counter()
            try:
                return send(comms, msg)
            finally:
                if type(msg).__name__ == "SetRenderedFields":
                    self.note("SetRenderedFields message", time.perf_counter() - started)

        InProcessSupervisorComms.send = timed_send  # type: ignore[method-assign]


@contextlib.contextmanager
def server(work: Path) -> Iterator[ServerProcess]:
    from sluicegate.store import Store

    db = f"sqlite:///{work}/sluicegate.db"
    sg = ServerProcess(db, str(work), policy=POLICY, log_level="warning")
    try:
        sg.wait_ready()
        with Store(db) as store:
            token = store.create_token("airflow-prod", "request")
        conn = {"conn_type": "sluicegate", "host": f"http://{HOST}:{sg.port}", "password": token}
        os.environ["AIRFLOW_CONN_SLUICEGATE_DEFAULT"] = json.dumps(conn)
        yield sg
    finally:
        sg.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40, help="runs of each variant and placement")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sluicegate-bench-airflow-steps-"))
    try:
        gate_bench.prepare_home(work)
        out = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True
        )
        if out.returncode != 0:
            raise SystemExit(f"airflow db migrate failed:\n{out.stdout[-2000:]}")
        with server(work) as sg:
            measure(args.runs, work, sg)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(runs: int, work: Path, sg: ServerProcess) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    log = work / "dag-test.log"
    with quiet(log):
        DagBundlesManager().sync_bundles_to_db()  # type: ignore[no-untyped-call]
        bag = DagBag(str(gate_bench.DAGS))
        sync_bag_to_db(bag, "dags-folder", None)
    dags = {v: bag.get_dag(gate_bench.NO_GATE_DAG if v == NO_GATE else gate_bench.GATED_TASK_DAG)
            for v in VARIANTS}  # fmt: skip
    steps = Steps()
    steps.instrument()
    placements = [gate_bench.SHARED] + ([gate_bench.SPLIT] if len(gate_bench.ALL_CPUS) > 1 else [])
    run_dag: Callable[[str], Any] = lambda v: dags[v].test()  # noqa: E731
    for v in VARIANTS:  # warm-up, not counted
        with quiet(log):
            run_dag(v)
    for i in range(runs * len(placements)):
        placement = placements[i % len(placements)]
        gate_bench.place(placement, sg.pids())
        for v in VARIANTS:
            gate_bench.settle_gc()
            steps.now = (placement, v)
            with quiet(log):
                dr = run_dag(v)
            steps.now = None
            ti = next(t for t in dr.get_task_instances() if t.task_id == "done")
            if ti.state != "success":
                raise SystemExit(f"{v}: done ended {ti.state} (log: {log})")
            steps.seen[(placement, v, "done's duration (TI end - start)")].append(
                (ti.end_date - ti.start_date).total_seconds()
            )
    gate_bench.place(gate_bench.SHARED, sg.pids())
    order = ["ti.render_templates", "_serialize_rendered_fields", "SetRenderedFields message",
             "_execute_task", "  the gate's _open_or_defer",
             "    the connection lookup (hook.server)", "    Gate.open (the round trip)",
             "done's duration (TI end - start)"]  # fmt: skip
    print(f"Where an allowed gate's time goes in done's task run, p50 over {runs} runs, ms "
          "(- : the step did not happen)")  # fmt: skip
    for placement in placements:
        print(f"\n{placement}")
        print(f"  {'step':<40}" + "".join(f"{v:>28}" for v in VARIANTS))
        for step in order:
            cells = []
            for v in VARIANTS:
                got = steps.seen.get((placement, v, step))
                cells.append(f"{statistics.median(got) * 1e3:28.3f}" if got else f"{'-':>28}")
            print(f"  {step:<40}" + "".join(cells))


if __name__ == "__main__":
    main()
