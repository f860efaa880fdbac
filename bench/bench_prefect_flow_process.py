"""What an allowed gate adds to a Prefect flow run run the way Prefect runs a deployment's flow:
a runner (``prefect.runner.Runner``, what ``flow.serve()`` starts) in a subprocess starts each
flow run in a new process (``python -m prefect.engine``), which imports the flow's file (the
adapter's import included) and runs it against the Prefect API.

Two flow files, written to a temporary folder at start: ``gated_flow.py`` (``orders-gated``:
``approval_gate("read", ..., config=<block name>)``, the documented form, then a task) and
``plain_flow.py`` (``orders-plain``: the same task, no gate; it does not import the adapter).
The example policy's ``routine-reads`` allows the read: one round trip, nobody asked. Prefect
is ``prefect_test_harness()`` (its API server in a subprocess, SQLite); ``sluicegate serve``
(SQLite) is another. Runs alternate gated, plain, plain, gated, ... (ABBA), each started with
``run_deployment`` and followed to its end; each gated run is paired with the plain run next
to it. Per run, from its state history:

- ``process``: Pending (the runner is about to start the process) -> Completed: the process
  start, Prefect's and the flow file's imports, the flow;
- ``flow``: Running (the flow file is loaded) -> Completed: the flow, the gate's first call
  (the block read from Prefect's API, the core's import, the round trip) included.

Then, in fresh interpreters, alternating: ``import prefect_sluicegate`` beyond ``import
prefect; from prefect import flow, task`` (what a flow file imports anyway), and what the
gate's first call imports of the core beyond that (the core's part).

Figures only, no asserts. Goal (issue 27): the gate adds <= 5 ms per flow run, p95, in a
fresh process; the adapter's import <= 30 ms beyond Prefect's. ``--adapter-path DIR`` puts a
copy of another ``prefect_sluicegate`` first on the path (to measure a version before a change).

    .venvs/prefect/bin/python bench/bench_prefect_flow_process.py [--pairs 20] [--imports 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _server import (  # noqa: E402
    FreshDatabase,
    ServerProcess,
    create_token,
    load_average,
    pct,
    row_ms,
    say,
    timed_imports,
)

GATED = """
from prefect import flow, task

from prefect_sluicegate import approval_gate

ORDERS = {"namespace": "postgres://prod:5432", "name": "sales.public.orders"}


@task
def read_orders() -> int:
    return 1


@flow(name="orders-gated")
def orders_gated(block: str) -> int:
    approval_gate("read", inputs=[ORDERS], config=block)
    return read_orders()
"""

PLAIN = """
from prefect import flow, task


@task
def read_orders() -> int:
    return 1


@flow(name="orders-plain")
def orders_plain(block: str) -> int:
    return read_orders()
"""

#: Guarded: a flow run's process imports the runner's main module again.
RUNNER = """
import asyncio

from prefect.runner import Runner

from gated_flow import orders_gated
from plain_flow import orders_plain

if __name__ == "__main__":
    runner = Runner(name="bench-flow-process", query_seconds=1, pause_on_shutdown=False)
    runner.add_flow(orders_gated, name="bench")
    runner.add_flow(orders_plain, name="bench")
    asyncio.run(runner.start())
"""

IMPORTS = """
import time
t0 = time.perf_counter()
import prefect
from prefect import flow, task
t1 = time.perf_counter()
import prefect_sluicegate
t2 = time.perf_counter()
# what the gate's first call loads of the core (the client, the gate, the model) and what
# making the client loads (httpx, the core's settings)
import sluicegate.client, sluicegate.gate, sluicegate.model, sluicegate.idempotency
import httpx, sluicegate._http
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""

DEPLOYMENTS = {"gated": "orders-gated/bench", "plain": "orders-plain/bench"}


def one_run(name: str, block: str, timeout: float = 120.0) -> dict[str, float]:
    """Run deployment ``name`` once, to its end; the run's windows (module docstring)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    run = run_deployment(DEPLOYMENTS[name], parameters={"block": block}, timeout=0)
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run.id).state
            if state is not None and state.is_final():
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"flow run {run.id} of {name} did not end in {timeout:.0f} s")
            time.sleep(0.1)
        if not state.is_completed():
            raise SystemExit(f"flow run {run.id} of {name} ended {state.type.value}: {state}")
        at: dict[str, float] = {}
        for s in client.read_flow_run_states(run.id):
            at.setdefault(s.type.value, s.timestamp.timestamp())
    return {
        "process": at["COMPLETED"] - at["PENDING"],
        "flow": at["COMPLETED"] - at["RUNNING"],
    }


def served(work: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The runner in a subprocess, once both deployments exist."""
    from prefect.client.orchestration import get_client

    log = (work / "runner.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(work / "runner.py")], cwd=work, env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the runner exited:\n{(work / 'runner.log').read_text()}")
        with get_client(sync_client=True) as client:
            try:
                for name in DEPLOYMENTS.values():
                    client.read_deployment_by_name(name)
                return proc
            except Exception:
                time.sleep(0.5)
    raise SystemExit(f"the runner did not serve in time:\n{(work / 'runner.log').read_text()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=20, help="gated/plain run pairs")
    ap.add_argument("--imports", type=int, default=15, help="fresh interpreters timed")
    ap.add_argument("--adapter-path", help="a folder holding another prefect_sluicegate")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sluicegate-bench-prefect-proc-"))
    # An installed package has its bytecode compiled; an environment that says not to write
    # it (PYTHONDONTWRITEBYTECODE) would make every fresh process compile the adapter and the
    # core from source. Their bytecode is kept in the temp folder, out of the source tree.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect-home"))
    (work / "gated_flow.py").write_text(textwrap.dedent(GATED))
    (work / "plain_flow.py").write_text(textwrap.dedent(PLAIN))
    (work / "runner.py").write_text(textwrap.dedent(RUNNER))
    paths = [str(work)] + ([args.adapter_path] if args.adapter_path else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}

    import prefect
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    say("Prefect, an allowed gate in a fresh flow run process (a runner, python -m prefect.engine)")
    say(f"prefect {prefect.__version__}; adapter from {args.adapter_path or 'the installed tree'}; "
        f"{os.cpu_count()} CPUs; load average {load_average()} at start")  # fmt: skip
    results: dict[str, list[float]] = {}
    runner = None
    with (
        FreshDatabase(None, tag="prefect-proc") as db,
        prefect_test_harness(server_startup_timeout=120),
    ):
        api = str(PREFECT_API_URL.value())
        env["PREFECT_API_URL"] = api  # the harness sets it in this process's settings only
        server = ServerProcess(db.url, db.workdir, log_level="warning")
        try:
            server.wait_ready()
            token = create_token(db.url, "prefect-bench", "request")
            sys.path[:0] = paths  # this process saves the block: the same class as the flows'
            from prefect_sluicegate import SluicegateConfig

            block = f"bench-{uuid.uuid4().hex[:8]}"
            SluicegateConfig(server_url=f"http://127.0.0.1:{server.port}", token=token).save(block)
            runner = served(work, env)
            one_run("gated", block)  # warm-up: the deployments, the server, the databases
            one_run("plain", block)
            t = time.monotonic()
            for i in range(args.pairs):
                order = ("gated", "plain") if i % 2 == 0 else ("plain", "gated")
                got = {name: one_run(name, block) for name in order}
                for window in ("process", "flow"):
                    g, p = got["gated"][window], got["plain"][window]
                    results.setdefault(f"gated {window}", []).append(g)
                    results.setdefault(f"plain {window}", []).append(p)
                    results.setdefault(f"added {window}", []).append(g - p)
            took = time.monotonic() - t
        finally:
            if runner is not None:
                runner.terminate()
                runner.wait(timeout=30)
            server.stop()

    say(f"\n{args.pairs} pairs, interleaved ABBA ({took:.0f} s)")
    for window, what in (
        ("process", "Pending -> Completed (process start, imports, flow)"),
        ("flow", "Running -> Completed (the flow, the gate's first call)"),
    ):
        say(f" {what}")
        say(row_ms("gated", results[f"gated {window}"]))
        say(row_ms("plain", results[f"plain {window}"]))
        say(row_ms("added by the gate (paired)", results[f"added {window}"]))

    timed = timed_imports(args.imports + 1, env, IMPORTS)[1:]  # the first writes the bytecode
    say(f"\nfresh interpreters ({args.imports}): import times")
    say(row_ms("import prefect; from prefect import flow, task", [a for a, _, _ in timed]))
    say(row_ms("import prefect_sluicegate beyond it", [b for _, b, _ in timed]))
    say(row_ms("the core the gate's call imports beyond it", [c for _, _, c in timed]))
    # Met only if both windows say so: the whole run's (imports included) is mostly process
    # start's noise, and can come out negative; the flow's holds the gate's first call.
    added = max(pct(sorted(results[f"added {w}"]), 95) for w in ("process", "flow"))
    adapter = sorted(b for _, b, _ in timed)
    say("\ngoals (issue 27)")
    say(f"  added per flow run, p95 <= 5 ms (the larger of the two windows): {added * 1e3:.1f} ms"
        f" -> {'MET' if added <= 0.005 else 'NOT MET'}")  # fmt: skip
    say(f"  adapter import beyond prefect's, p50 <= 30 ms: {pct(adapter, 50) * 1e3:.1f} ms -> "
        f"{'MET' if pct(adapter, 50) <= 0.030 else 'NOT MET'}")  # fmt: skip
    say(f"load average {load_average()} at the end (2 shared cores: other load shows here)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
