"""What an allowed gate adds to a Dagster step run the way Dagster runs one: a fresh process per
step (the multiprocess executor, Dagster's default, starts each step in a new ``spawn``-ed
process that loads the code location), the adapter's import included.

Two code modules, written to a temporary folder at start: ``gated_code`` (one asset,
``read_gated``, under ``@approval_required`` with kind ``read``, which the example policy's
``routine-reads`` allows: one round trip, nobody asked) and ``plain_code`` (the same asset
without the gate; it does not import the adapter). Each run is ``execute_job(reconstructable(
...))`` on a persistent instance (``DAGSTER_HOME`` in the temp folder), so its one step runs in
a new process. Runs alternate gated, plain, plain, gated, ... (ABBA), and each gated run is
paired with the plain run next to it. Per run, from the run's event log:

- ``worker``: STEP_WORKER_STARTED (the step's process is up, Dagster imported) -> STEP_SUCCESS:
  loading the code (the adapter's import), the step, the gate;
- ``whole``: STEP_WORKER_STARTING (the run worker launches the process) -> STEP_SUCCESS;
- ``body``: STEP_START -> STEP_SUCCESS (the gate, without the import).

Then, in fresh interpreters, alternating: ``import dagster_sluicegate`` beyond ``import
dagster``, and what the gate's first call imports of the core beyond that (the core's part).

Figures only, no asserts. Goal (issue 27): the gate adds <= 5 ms per step, p95, in a fresh
process; the adapter's import <= 30 ms beyond Dagster's. ``--adapter-path DIR`` puts a copy
of another ``dagster_sluicegate`` first on the path (to measure a version before a change).

    .venvs/dagster/bin/python bench/bench_dagster_step_process.py [--pairs 20] [--imports 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _server import (  # noqa: E402
    HOST,
    POLICY,
    ServerProcess,
    load_average,
    pct,
    quiet,
    row_ms,
    say,
    timed_imports,
)

GATED = """
from dagster import Definitions, EnvVar, asset, define_asset_job
from dagster_sluicegate import SluicegateResource, approval_required


@asset(tags={"sluicegate/action": "read"})
@approval_required
def read_gated(context) -> None:
    pass


defs = Definitions(
    assets=[read_gated],
    jobs=[define_asset_job("gated_job", selection=[read_gated])],
    resources={"sluicegate": SluicegateResource(
        server_url=EnvVar("BENCH_SLUICEGATE_URL"), token=EnvVar("BENCH_SLUICEGATE_TOKEN"))},
)


def gated_job():
    return defs.resolve_job_def("gated_job")
"""

PLAIN = """
from dagster import Definitions, asset, define_asset_job


@asset(tags={"sluicegate/action": "read"})
def read_gated(context) -> None:
    pass


defs = Definitions(
    assets=[read_gated], jobs=[define_asset_job("plain_job", selection=[read_gated])]
)


def plain_job():
    return defs.resolve_job_def("plain_job")
"""

IMPORTS = """
import time
t0 = time.perf_counter()
import dagster
t1 = time.perf_counter()
import dagster_sluicegate
t2 = time.perf_counter()
# what the gate's first call loads of the core (the client, the gate, the model) and what
# making the client loads (httpx, the core's settings)
import sluicegate.client, sluicegate.gate, sluicegate.model, sluicegate.idempotency
import httpx, sluicegate._http
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def windows(instance: Any, run_id: str) -> dict[str, float]:
    """The run's one step: seconds of each window (see the module's docstring)."""
    at: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None:
            at.setdefault(event.event_type_value, entry.timestamp)
    return {
        "worker": at["STEP_SUCCESS"] - at["STEP_WORKER_STARTED"],
        "whole": at["STEP_SUCCESS"] - at["STEP_WORKER_STARTING"],
        "body": at["STEP_SUCCESS"] - at["STEP_START"],
    }


def run_once(job: Any, instance: Any) -> dict[str, float]:
    from dagster import execute_job

    with execute_job(job, instance=instance) as result:
        if not result.success:
            raise SystemExit(f"run {result.run_id} failed; see the log in the temp folder")
        return windows(instance, result.run_id)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=20, help="gated/plain run pairs")
    ap.add_argument("--imports", type=int, default=15, help="fresh interpreters timed")
    ap.add_argument("--adapter-path", help="a folder holding another dagster_sluicegate")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sluicegate-bench-dagster-proc-"))
    # An installed package has its bytecode compiled; an environment that says not to write
    # it (PYTHONDONTWRITEBYTECODE) would make every fresh process compile the adapter and the
    # core from source. Their bytecode is kept in the temp folder, out of the source tree.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    (work / "gated_code.py").write_text(textwrap.dedent(GATED))
    (work / "plain_code.py").write_text(textwrap.dedent(PLAIN))
    paths = [str(work)] + ([args.adapter_path] if args.adapter_path else [])
    sys.path[:0] = paths  # spawn-ed step processes get this process's sys.path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    os.environ["DAGSTER_HOME"] = str(work / "dagster-home")
    (work / "dagster-home").mkdir()
    (work / "dagster-home" / "dagster.yaml").write_text("")  # defaults: SQLite in the folder

    from importlib.metadata import version

    say("Dagster, an allowed gate in a fresh step process (multiprocess executor, spawn)")
    say(f"dagster {version('dagster')}; adapter from {args.adapter_path or 'the installed tree'}; "
        f"{os.cpu_count()} CPUs; load average {load_average()} at start")  # fmt: skip
    from dagster import DagsterInstance, reconstructable

    from sluicegate.store import Store

    db = f"sqlite:///{work}/sluicegate.db"
    server = ServerProcess(db, str(work), policy=POLICY, log_level="warning")
    results: dict[str, list[float]] = {}
    try:
        server.wait_ready()
        with Store(db) as store:
            os.environ["BENCH_SLUICEGATE_TOKEN"] = store.create_token("dagster-prod", "request")
        os.environ["BENCH_SLUICEGATE_URL"] = f"http://{HOST}:{server.port}"
        import gated_code
        import plain_code

        jobs = {"gated": reconstructable(gated_code.gated_job),
                "plain": reconstructable(plain_code.plain_job)}  # fmt: skip
        with DagsterInstance.get() as instance, quiet(work / "dagster.log"):
            run_once(jobs["gated"], instance)  # warm-up: the instance's tables, the server
            run_once(jobs["plain"], instance)
            t = time.monotonic()
            for i in range(args.pairs):
                order = ("gated", "plain") if i % 2 == 0 else ("plain", "gated")
                got = {name: run_once(jobs[name], instance) for name in order}
                for window in ("worker", "whole", "body"):
                    g, p = got["gated"][window], got["plain"][window]
                    results.setdefault(f"gated {window}", []).append(g)
                    results.setdefault(f"plain {window}", []).append(p)
                    results.setdefault(f"added {window}", []).append(g - p)
            took = time.monotonic() - t
    finally:
        server.stop()

    say(f"\n{args.pairs} pairs, interleaved ABBA ({took:.0f} s)")
    for window, what in (("worker", "worker up -> step done (code load + step)"),
                         ("whole", "process launched -> step done"),
                         ("body", "STEP_START -> step done")):  # fmt: skip
        say(f" {what}")
        say(row_ms("gated", results[f"gated {window}"]))
        say(row_ms("plain", results[f"plain {window}"]))
        say(row_ms("added by the gate (paired)", results[f"added {window}"]))

    timed = timed_imports(args.imports + 1, env, IMPORTS)[1:]  # the first writes the bytecode
    say(f"\nfresh interpreters ({args.imports}): import times")
    say(row_ms("import dagster", [a for a, _, _ in timed]))
    say(row_ms("import dagster_sluicegate beyond it", [b for _, b, _ in timed]))
    say(row_ms("the core the gate's call imports beyond it", [c for _, _, c in timed]))
    added = sorted(results["added worker"])
    adapter = sorted(b for _, b, _ in timed)
    say("\ngoals (issue 27)")
    say(f"  added per step, p95 <= 5 ms: {pct(added, 95) * 1e3:.1f} ms -> "
        f"{'MET' if pct(added, 95) <= 0.005 else 'NOT MET'}")  # fmt: skip
    say(f"  adapter import beyond dagster's, p50 <= 30 ms: {pct(adapter, 50) * 1e3:.1f} ms -> "
        f"{'MET' if pct(adapter, 50) <= 0.030 else 'NOT MET'}")  # fmt: skip
    say(f"load average {load_average()} at the end (2 shared cores: other load shows here)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
