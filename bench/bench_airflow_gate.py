"""The approval gate in Airflow 3: how fast a decision releases the gated task, against Airflow's
own approval operator, and what a gate the policy allows costs a DAG run.

Everything runs in ``dag.test()`` (no scheduler, no triggerer) on a throwaway AIRFLOW_HOME
(SQLite, ``airflow db migrate``), with the DAGs of ``bench/airflow_dags/bench_gates.py``
(extract -> gate -> done; ``done`` writes ``time.time()`` to a file as it starts). Servers, each
a subprocess on 127.0.0.1: ``sluicegate serve`` (SQLite, examples/policy.yaml) and Airflow's
``airflow api-server --apps core -w 1`` on the same metadata database, with the simple auth
manager (user ``reviewer``, role admin; its token from ``POST /auth/token``).

What it measures
  1. Sluicegate: decision -> downstream start. ``ApprovalGateOperator`` on an export of
     crm.public.customers (the policy wants two approvals) defers to ``ApprovalTrigger``, which
     ``dag.test()`` runs inline: a long poll (``GET /api/v1/requests/{id}/wait``, held up to
     ``poll_seconds`` = 30 s, answered the moment the request ends). A reviewer thread waits
     until the request is pending (``GET /api/v1/requests?status=pending``, every 50 ms), sends
     alice's approval, sleeps an offset u in [0, 1) s, notes ``time.time()`` and sends bob's
     (the final) approval. Latency = ``done``'s start - that time.
  2. Airflow's own gate: ``ApprovalOperator`` of apache-airflow-providers-standard
     (``airflow.providers.standard.operators.hitl``), answered through Airflow's REST API as
     the Required Actions UI does: the reviewer thread waits until the task instance is parked
     (``GET /api/v2/dags/{dag}/dagRuns/~/hitlDetails?response_received=false`` shows it with
     state ``awaiting_input``), sleeps the same u, notes the time and sends
     ``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/-1/hitlDetails``
     ``{"chosen_options": ["Approve"]}``. How that resumes the task on Airflow 3.3:
     ``HITLOperator.execute`` writes the request (``upsert_hitl_detail``) and raises
     ``TaskAwaitingInput`` (no trigger; on 3.1-3.2 it deferred to ``HITLTrigger``, which reads
     the database every 5 s); the route ``update_hitl_detail``
     (airflow/api_fastapi/core_api/routes/public/hitl.py) records the response and calls
     ``handle_event_submit`` (airflow/models/trigger.py), which sets the task instance to
     SCHEDULED with the response as ``next_kwargs["event"]``. ``dag.test()``
     (airflow/sdk/definitions/dag.py, ``DAG.test``) does not resolve it itself: while a task is
     ``awaiting_input`` and nothing is scheduled, its loop logs "Waiting for Human-in-the-loop
     input" and ``time.sleep(1)``, then reads the task instances again, so the response waits
     for the end of that sleep: about 0.5 s on average, up to 1 s, plus the resume. (A real
     deployment's scheduler loop polls instead; the figure is dag.test's.)
     The offsets u are i/N for i < N, shuffled (seeded), the same list for both gates, and
     the trials alternate between them, so both meet the same spread of phases.
     Where the time goes, per trial: decision -> dag.test() has it (our gate: the inline
     trigger's event; HITL: the loop wakes and starts the task again), -> the gate task's
     end_date (the resume: ``execute_complete``; ours also records the release, one more
     round trip), -> ``done`` starts. For that, dag.test()'s helpers ``_run_inline_trigger``
     and ``_run_task`` (airflow/sdk/definitions/dag.py) are wrapped in this process to note
     the time; they behave as before. The final decision call's round trip is shown too, and
     how long this process spent collecting garbage within each trial (``gc.callbacks``): a
     collection of the oldest generation pauses dag.test(), its inline trigger and the task.
  3. The cost of an allowed gate: ``bench_gated_task`` (``done``'s body behind its own gate,
     ``@task.sluicegate``: no gate task) and ``bench_allowed_gate`` (the gate on a kind ``read`` the
     policy allows: one round trip, no request opened) against ``bench_no_gate`` (the same
     DAG without it), ``bench_allowed_gate_no_xcom`` (the gate with ``do_xcom_push=False``: its
     returned approval is not written as an XCom) and ``bench_plain_task`` (a trivial @task in
     the gate's place, to tell what any extra task costs in dag.test from what the gate adds;
     the gate asks in ``execute``, through the core's ``Gate.open``, and Airflow renders every
     string of its action as any operator's),
     ``dag.test()`` wall time per run, interleaved (the order rotates), median of each and
     their differences; from the task instances' start/end dates, the gate task alone next to
     the trivial task, and ``done``'s duration with and without the gate, also paired round by
     round (the median of each round's difference: the runs of one round are seconds apart, so
     the machine's drift over minutes cancels), with the GC pauses inside each ``done`` run.
     Before each run the garbage collector is settled (``gc.collect()``, then ``gc.freeze()``),
     so that a collection of the oldest generation, half a second in this process, does not
     land in one run by chance (it did: that noise, ±10 ms at 15 runs, hid a 5 ms goal).
     The rounds alternate between two placements: the servers on the same CPUs as dag.test(),
     as the operating system schedules them, and the servers on a CPU of their own (the
     last; every thread of theirs and of this process pinned, ``sched_setaffinity``), as a
     server on its own host would be. Sharing, the server's work on the gate's request
     competes with the task that sent it; on a CPU of its own it does not.
     Then the gate's own work done outside Airflow, step by step: reading the
     connection (``SluicegateHook.server()``), building the client (``SluicegateClient(url,
     token)``; it connects on its first call), one ``Gate.open`` round trip (a new connection);
     and Airflow's own ``_serialize_rendered_fields`` (the task runner's step that sends a
     task's rendered template fields, paid per field on every run) for ``done`` with and
     without ``@task.sluicegate``, whose one extra field is ``sluicegate_action``.
  One warm-up run of each DAG comes first and is not counted. Figures only, no asserts.

Not a headline: the ratio of section 1 to section 2. ``dag.test()`` runs our deferred gate's
trigger inline in its own process and re-runs the task at once, while Airflow's HITL operator
waits for ``dag.test()``'s ``time.sleep(1)`` loop, so most of that gap is the sleep; in a real
deployment both go through the triggerer or the API, then the scheduler and a worker. Nor is
section 3 the allowed gate's cost in a deployment: every task runs in this one warm process,
which parsed the DAG files once, so no task pays ``import sluicegate_airflow``; that figure is
``bench_airflow_allowed.py``'s (a fresh task process per task, as Airflow 3 runs them).

The machine's load average is printed at the start and the end: the figures are wall times on
shared cores. Run it from the repository root, in the Airflow environment (about 10 minutes)::

    .venvs/airflow/bin/python bench/bench_airflow_gate.py [--trials 20] [--allowed-runs 80]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
DAGS = HERE / "airflow_dags"
sys.path.insert(0, str(HERE))

from _server import (  # noqa: E402
    HOST,
    POLICY,
    ServerProcess,
    child_pids,
    free_port,
    pct,
    pin,
    quiet,
)

SG_DAG = "bench_sluicegate_gate"
HITL_DAG = "bench_airflow_hitl"
ALLOWED_DAG = "bench_allowed_gate"
ALLOWED_NO_XCOM_DAG = "bench_allowed_gate_no_xcom"
GATED_TASK_DAG = "bench_gated_task"
NO_GATE_DAG = "bench_no_gate"
PLAIN_DAG = "bench_plain_task"
GATE_TASK = "approve_export"
GOAL_P95_S = 0.25
GOAL_ALLOWED_MS = 5.0
REFERENCE = "earlier session, this machine: Airflow's gate 0.59 s median, 1.05 s max"
TRIAL_LIMIT_S = 120.0  # a trial that takes longer is stuck: stop everything
#: Section 3's placements: the servers (Sluicegate's, Airflow's API server) on the same CPUs
#: as dag.test(), as everything ran before; or on a CPU of their own and dag.test() on the
#: others, as a server on its own host would be (a gate's request then no longer competes with
#: the very task that waits for it: that is the difference between the two).
SHARED = "servers sharing the CPUs with dag.test()"
SPLIT = "servers on a CPU of their own"
ALL_CPUS = set(os.sched_getaffinity(0))
CONSOLE = os.dup(2)  # the real stderr, for the watchdog (quiet() redirects fd 2)


# --------------------------------------------------------------------------- environment


def prepare_home(work: Path) -> dict[str, str]:
    """Airflow's configuration through the environment, set before ``airflow`` is imported."""
    home = work / "airflow-home"
    home.mkdir()
    password = secrets.token_urlsafe(12)
    passwords = work / "simple_auth_passwords.json"
    passwords.write_text(json.dumps({"reviewer": password}))
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "reviewer:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    os.environ.update(env)
    return {"password": password}


def say(*parts: object) -> None:
    print(*parts, flush=True)


class AirflowApiServer:
    """``airflow api-server --apps core -w 1`` on a free port, in its own process group."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = work / "airflow-api-server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--apps", "core", "-w", "1",
             "-H", HOST, "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 120.0) -> float:
        import httpx

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"airflow api-server exited:\n{self.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.25)
        raise SystemExit(f"airflow api-server not ready after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-n:])
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own group: uvicorn and worker
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


# --------------------------------------------------------------------------- reviewers


class Reviewers:
    """The people: Sluicegate's stewards (alice, bob) and Airflow's ``reviewer``."""

    def __init__(self, sg_url: str, sg_tokens: dict[str, str], af_url: str, af_token: str):
        import httpx

        self.sg = httpx.Client(base_url=sg_url, timeout=30)
        self.sg_auth = {who: {"Authorization": f"Bearer {t}"} for who, t in sg_tokens.items()}
        self.af = httpx.Client(
            base_url=af_url, timeout=30, headers={"Authorization": f"Bearer {af_token}"}
        )

    def sluicegate(self, offset: float, box: dict[str, Any]) -> None:
        """Wait for the gate's request, approve as alice, sleep ``offset``, approve as bob."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = self.sg.get(
                "/api/v1/requests",
                params={"status": "pending", "job": f"{SG_DAG}.{GATE_TASK}"},
                headers=self.sg_auth["alice"],
            )
            r.raise_for_status()
            items = r.json()["items"]
            if items:
                rid = items[0]["id"]
                url = f"/api/v1/requests/{rid}/decisions"
                body = {"verdict": "approve", "comment": ""}
                self.sg.post(url, json=body, headers=self.sg_auth["alice"]).raise_for_status()
                time.sleep(offset)
                box["t_decided"] = time.time()
                r = self.sg.post(url, json=body, headers=self.sg_auth["bob"])
                box["call_s"] = time.time() - box["t_decided"]
                r.raise_for_status()
                return
            time.sleep(0.05)
        box["error"] = "no pending Sluicegate request within 60 s"

    def airflow(self, offset: float, box: dict[str, Any]) -> None:
        """Wait for the parked HITL task, sleep ``offset``, answer Approve through the API."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = self.af.get(
                f"/api/v2/dags/{HITL_DAG}/dagRuns/~/hitlDetails",
                params={"response_received": "false"},
            )
            r.raise_for_status()
            parked = [
                d for d in r.json()["hitl_details"]
                if d["task_instance"]["state"] == "awaiting_input"
            ]  # fmt: skip
            if parked:
                ti = parked[0]["task_instance"]
                url = (
                    f"/api/v2/dags/{HITL_DAG}/dagRuns/{quote(ti['dag_run_id'], safe='')}"
                    f"/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails"
                )
                time.sleep(offset)
                box["t_decided"] = time.time()
                r = self.af.patch(url, json={"chosen_options": ["Approve"], "params_input": {}})
                box["call_s"] = time.time() - box["t_decided"]
                if r.status_code != 200:
                    box["error"] = f"PATCH hitlDetails: {r.status_code} {r.text[:300]}"
                return
            time.sleep(0.05)
        box["error"] = "no task awaiting input within 60 s"


# --------------------------------------------------------------------------- runs


class Bench:
    def __init__(self, work: Path, dags: dict[str, Any], stop_all: Callable[[], None]) -> None:
        self.work = work
        self.dags = dags
        self.mark = work / "done.mark"
        self.log = work / "dag-test.log"
        self.stop_all = stop_all
        os.environ["SLUICEGATE_BENCH_MARK"] = str(self.mark)
        self.seen: dict[str, list[float]] = {}
        self._instrument()
        self.gc_pauses: list[tuple[float, float, int]] = []  # (start, seconds, generation)
        self._gc_started = (0.0, 0.0)
        gc.callbacks.append(self._gc_callback)

    def _gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        """Note each of this process's garbage collections: a collection of the oldest
        generation stops dag.test(), its trigger and its tasks alike (all in this process)."""
        if phase == "start":
            self._gc_started = (time.time(), time.perf_counter())
        else:
            wall, started = self._gc_started
            self.gc_pauses.append((wall, time.perf_counter() - started, info["generation"]))

    def gc_within(self, start: float, end: float) -> float:
        """Seconds this process spent collecting garbage between two ``time.time()`` points."""
        return sum(d for t, d, _ in self.gc_pauses if start <= t <= end)

    def _instrument(self) -> None:
        """Note when dag.test() gets the decision: the inline trigger's event (our gate), or
        the gate task's second ``_run_task`` (the HITL resume). Wrappers only, same behaviour."""
        import airflow.sdk.definitions.dag as dag_module

        run_task, run_trigger = dag_module._run_task, dag_module._run_inline_trigger
        seen = self.seen

        def _run_task(*, ti: Any, task: Any, run_triggerer: bool = False) -> Any:
            seen.setdefault(f"run:{ti.task_id}", []).append(time.time())
            return run_task(ti=ti, task=task, run_triggerer=run_triggerer)

        def _run_inline_trigger(trigger: Any, task_sdk_ti: Any) -> Any:
            event = run_trigger(trigger, task_sdk_ti)
            seen.setdefault("trigger_event", []).append(time.time())
            return event

        dag_module._run_task = _run_task  # type: ignore[assignment]
        dag_module._run_inline_trigger = _run_inline_trigger

    def _watchdog(self, what: str) -> threading.Timer:
        def fire() -> None:
            msg = f"\n{what} took over {TRIAL_LIMIT_S:.0f} s: stuck; see {self.log}\n"
            os.write(CONSOLE, msg.encode())
            self.stop_all()
            os._exit(3)

        timer = threading.Timer(TRIAL_LIMIT_S, fire)
        timer.daemon = True
        timer.start()
        return timer

    def run(self, dag_id: str) -> tuple[Any, float]:
        """``dag.test()`` of ``dag_id``, its logs to the log file; (dag run, wall seconds)."""
        self.mark.unlink(missing_ok=True)
        self.seen.clear()
        timer = self._watchdog(f"dag.test() of {dag_id}")
        try:
            with quiet(self.log):
                started = time.perf_counter()
                dr = self.dags[dag_id].test()
                wall = time.perf_counter() - started
        finally:
            timer.cancel()
        return dr, wall

    def gated(
        self, dag_id: str, reviewer: Callable[[float, dict[str, Any]], None], offset: float
    ) -> tuple[float | None, dict[str, Any]]:
        """One trial: (latency or None, what the reviewer noted + ``error`` if it failed)."""
        box: dict[str, Any] = {}
        thread = threading.Thread(target=reviewer, args=(offset, box), daemon=True)
        thread.start()
        dr, box["wall_s"] = self.run(dag_id)
        thread.join(10)
        got = states(dr)
        if "error" not in box and got.get("done") != "success":
            box["error"] = f"task states {got}"
        if "error" not in box and not self.mark.exists():
            box["error"] = "done did not record its start"
        if "error" in box:
            return None, box
        gate_end = next(ti.end_date for ti in dr.get_task_instances() if ti.task_id == GATE_TASK)
        gate_runs = self.seen.get(f"run:{GATE_TASK}", [])
        resumed = (self.seen.get("trigger_event") or gate_runs[1:] or [float("nan")])[-1]
        done = float(self.mark.read_text())
        box["to_resume_s"] = resumed - box["t_decided"]
        box["resume_s"] = gate_end.timestamp() - resumed
        box["gate_end_to_done_s"] = done - gate_end.timestamp()
        box["to_gate_end_s"] = gate_end.timestamp() - box["t_decided"]
        box["gc_s"] = self.gc_within(box["t_decided"], done)
        return done - box["t_decided"], box


def states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def durations(dag_run: Any) -> dict[str, float]:
    out = {}
    for ti in dag_run.get_task_instances():
        if ti.start_date and ti.end_date:
            out[ti.task_id] = (ti.end_date - ti.start_date).total_seconds()
    return out


# --------------------------------------------------------------------------- output


def row(name: str, values: Sequence[float], unit: str = "s", n_of: int | None = None) -> str:
    s = sorted(values)
    k = 1.0 if unit == "s" else 1e3
    fmt = "{:8.3f}" if unit == "s" else "{:8.1f}"
    n = f"{len(s)}" + (f"/{n_of}" if n_of is not None and n_of != len(s) else "")
    if not s:
        return f"  {name:<60} n {n:>5}   no samples"
    cells = "  ".join(
        f"{label} " + fmt.format(v * k)
        for label, v in (("p50", pct(s, 50)), ("p95", pct(s, 95)), ("max", s[-1]))
    )
    return f"  {name:<60} n {n:>5}  {cells} {unit}"


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="decision trials per gate")
    ap.add_argument(
        "--allowed-runs", type=int, default=80, help="runs of each variant and placement"
    )
    ap.add_argument("--seed", type=int, default=1, help="shuffles the decision offsets")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sluicegate-bench-airflow-"))
    secret = prepare_home(work)
    stoppers: list[Callable[[], None]] = []

    def stop_all() -> None:
        for stop in reversed(stoppers):
            with contextlib.suppress(Exception):
                stop()
        stoppers.clear()

    try:
        measure(args, work, secret, stoppers, stop_all)
    finally:
        stop_all()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def measure(
    args: argparse.Namespace,
    work: Path,
    secret: dict[str, str],
    stoppers: list[Callable[[], None]],
    stop_all: Callable[[], None],
) -> None:
    from importlib.metadata import version

    say("Sluicegate in Airflow: decision -> gated task, Airflow's HITL ApprovalOperator, "
        "cost of an allowed gate")  # fmt: skip
    say(f"Python {platform.python_version()}, apache-airflow {version('apache-airflow')}, "
        f"providers-standard {version('apache-airflow-providers-standard')}, "
        f"sluicegate-airflow {version('airflow-provider-sluicegate')}; "
        f"{os.cpu_count()} CPUs; dag.test() on SQLite; load average {load()} at start")  # fmt: skip

    t = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"airflow db migrate failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    setup = [f"db migrate {time.monotonic() - t:.1f} s"]

    import httpx

    from sluicegate.store import Store

    sg_db = f"sqlite:///{work}/sluicegate.db"
    sg = ServerProcess(sg_db, str(work), policy=POLICY, log_level="warning")
    stoppers.append(sg.stop)
    af = AirflowApiServer(work)
    stoppers.append(af.stop)
    sg.wait_ready()
    with Store(sg_db) as store:
        tokens = {"airflow-prod": store.create_token("airflow-prod", "request")}
        tokens |= {r: store.create_token(r, "review") for r in ("alice", "bob")}
    conn = {"conn_type": "sluicegate", "host": f"http://{HOST}:{sg.port}",
            "password": tokens.pop("airflow-prod")}  # fmt: skip
    os.environ["AIRFLOW_CONN_SLUICEGATE_DEFAULT"] = json.dumps(conn)
    setup.append(f"api-server ready in {af.wait_ready():.1f} s")
    r = httpx.post(
        f"{af.url}/auth/token", json={"username": "reviewer", "password": secret["password"]}
    )
    if r.status_code not in (200, 201):
        raise SystemExit(f"POST /auth/token: {r.status_code} {r.text[:300]}")
    af_token = r.json()["access_token"]

    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    with quiet(work / "dag-test.log"):
        DagBundlesManager().sync_bundles_to_db()
        bag = DagBag(str(DAGS))
        if not bag.import_errors:
            sync_bag_to_db(bag, "dags-folder", None)
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    names = (SG_DAG, HITL_DAG, ALLOWED_DAG, ALLOWED_NO_XCOM_DAG, GATED_TASK_DAG, NO_GATE_DAG,
             PLAIN_DAG)  # fmt: skip
    dags = {d: bag.get_dag(d) for d in names}
    bench = Bench(work, dags, stop_all)
    people = Reviewers(f"http://{HOST}:{sg.port}", tokens, af.url, af_token)
    say("setup: " + ", ".join(setup))

    # warm-up (imports, first connections, first serialization): not counted
    t = time.monotonic()
    for dag_id, who in ((SG_DAG, people.sluicegate), (HITL_DAG, people.airflow)):
        lat, box = bench.gated(dag_id, who, 0.0)
        if lat is None:
            raise SystemExit(f"warm-up {dag_id} failed: {box['error']} (log: {bench.log})")
    for dag_id in (ALLOWED_DAG, ALLOWED_NO_XCOM_DAG, GATED_TASK_DAG, NO_GATE_DAG, PLAIN_DAG):
        dr, _ = bench.run(dag_id)
        if states(dr).get("done") != "success":
            raise SystemExit(f"warm-up {dag_id} failed: {states(dr)} (log: {bench.log})")
    say(f"warm-up {time.monotonic() - t:.1f} s")

    # 1 + 2: decision -> downstream start, both gates, alternating, the same offsets
    n = args.trials
    offsets = [i / n for i in range(n)]
    random.Random(args.seed).shuffle(offsets)
    lat: dict[str, list[float]] = {SG_DAG: [], HITL_DAG: []}
    calls: dict[str, list[float]] = {SG_DAG: [], HITL_DAG: []}
    to_resume: dict[str, list[float]] = {SG_DAG: [], HITL_DAG: []}
    resume: dict[str, list[float]] = {SG_DAG: [], HITL_DAG: []}
    to_done: dict[str, list[float]] = {SG_DAG: [], HITL_DAG: []}
    to_gate_end: dict[str, list[float]] = {SG_DAG: [], HITL_DAG: []}
    gc_in: dict[str, list[float]] = {SG_DAG: [], HITL_DAG: []}  # GC pauses within each trial
    errors: dict[str, list[str]] = {SG_DAG: [], HITL_DAG: []}
    t = time.monotonic()
    for i, offset in enumerate(offsets):
        order = [(SG_DAG, people.sluicegate), (HITL_DAG, people.airflow)]
        for dag_id, who in order if i % 2 == 0 else order[::-1]:
            value, box = bench.gated(dag_id, who, offset)
            if value is None:
                errors[dag_id].append(box["error"])
            else:
                lat[dag_id].append(value)
                calls[dag_id].append(box["call_s"])
                to_resume[dag_id].append(box["to_resume_s"])
                resume[dag_id].append(box["resume_s"])
                to_done[dag_id].append(box["gate_end_to_done_s"])
                to_gate_end[dag_id].append(box["to_gate_end_s"])
                gc_in[dag_id].append(box["gc_s"])
    decided_s = time.monotonic() - t

    gc_count, oldest = len(bench.gc_pauses), [d for _, d, gen in bench.gc_pauses if gen == 2]

    # 3: allowed gate vs no gate (and vs a trivial task in its place), interleaved, the order
    # rotating each round; the rounds alternate between the placements of the servers
    variants = [ALLOWED_DAG, ALLOWED_NO_XCOM_DAG, GATED_TASK_DAG, NO_GATE_DAG, PLAIN_DAG]
    placements = [SHARED] + ([SPLIT] if len(ALL_CPUS) > 1 else [])
    costs = {p: Costs(variants) for p in placements}
    servers = [*sg.pids(), *process_tree(af.proc.pid)]
    bad: list[str] = []
    t = time.monotonic()
    for i in range(len(placements) * args.allowed_runs):
        placement, k = placements[i % len(placements)], i // len(placements)
        place(placement, servers)
        c = costs[placement]
        this_round: dict[str, float] = {}
        for dag_id in variants[k % len(variants) :] + variants[: k % len(variants)]:
            settle_gc()
            dr, wall = bench.run(dag_id)
            got = states(dr)
            if got.get("done") != "success" or got.get(GATE_TASK, "success") != "success":
                bad.append(f"{dag_id}: {got}")
                continue
            c.walls[dag_id].append(wall)
            d = durations(dr)
            if dag_id == ALLOWED_DAG:
                c.gate_task.append(d[GATE_TASK])
                c.extract_task.append(d["extract"])
            elif dag_id == PLAIN_DAG:
                c.plain_task.append(d[GATE_TASK])
            if dag_id in c.done:
                c.done[dag_id].append(d["done"])
                this_round[dag_id] = d["done"]
                done_ti = next(ti for ti in dr.get_task_instances() if ti.task_id == "done")
                c.done_gc[dag_id].append(
                    bench.gc_within(done_ti.start_date.timestamp(), done_ti.end_date.timestamp())
                )
        for dag_id, diffs in c.paired.items():
            if dag_id in this_round and NO_GATE_DAG in this_round:
                diffs.append(this_round[dag_id] - this_round[NO_GATE_DAG])
    place(SHARED, servers)
    # the allowed gate's own work outside Airflow: the hook's client, one Gate.open round trip
    from sluicegate.client import SluicegateClient
    from sluicegate.gate import Gate
    from sluicegate_airflow.hooks import SluicegateHook
    from sluicegate_airflow.operators.approval import OPEN_RETRY_SECONDS

    gate = dags[ALLOWED_DAG].get_task(GATE_TASK)
    conn_s: list[float] = []
    client_s: list[float] = []
    open_s: list[float] = []
    requester = {"orchestrator": "airflow", "job": f"{ALLOWED_DAG}.{GATE_TASK}", "owner": "carol"}
    for i in range(args.allowed_runs):
        t0 = time.perf_counter()
        url, token = SluicegateHook(gate.sluicegate_conn_id).server()  # what get_conn() does
        t1 = time.perf_counter()
        with SluicegateClient(url, token) as client:
            t2 = time.perf_counter()
            outcome = Gate(client).open(
                f"bench-direct-{i}", gate.action(), requester, timeout=OPEN_RETRY_SECONDS
            )
            t3 = time.perf_counter()
        if outcome.kind.value != "allowed":
            bad.append(f"direct Gate.open: {outcome.message}")
        conn_s.append(t1 - t0)
        client_s.append(t2 - t1)
        open_s.append(t3 - t2)
    # What Airflow's task runner does with a task's template fields before it runs (each
    # rendered value goes through a new pydantic TypeAdapter): the gated task has one field
    # more than the plain one, sluicegate_action.
    from airflow.sdk.execution_time.task_runner import _serialize_rendered_fields

    fields_s: dict[str, list[float]] = {GATED_TASK_DAG: [], NO_GATE_DAG: []}
    for _ in range(max(200, args.allowed_runs)):
        for dag_id in fields_s:
            task_ = dags[dag_id].get_task("done")
            t0 = time.perf_counter()
            _serialize_rendered_fields(task_)
            fields_s[dag_id].append(time.perf_counter() - t0)
    allowed_s = time.monotonic() - t

    say(f"\n1+2. decision -> the gated task's completion (its end_date), and -> the downstream "
        f"task's start ({n} trials each, offsets i/{n} shuffled, alternating; "
        f"{decided_s:.0f} s)")  # fmt: skip
    say(row("Sluicegate ApprovalGateOperator -> gate task completes", to_gate_end[SG_DAG], n_of=n))
    say(row("Airflow HITL ApprovalOperator -> gate task completes", to_gate_end[HITL_DAG], n_of=n))
    say(row("Sluicegate ApprovalGateOperator -> downstream starts", lat[SG_DAG], n_of=n))
    say(row("Airflow HITL ApprovalOperator -> downstream starts", lat[HITL_DAG], n_of=n))
    say(row("  final decision call, Sluicegate POST decisions", calls[SG_DAG], "ms"))
    say(row("  final decision call, Airflow PATCH hitlDetails", calls[HITL_DAG], "ms"))
    say("    where it goes: decision -> dag.test() has it -> gate task ends -> downstream starts")
    for dag_id, label in ((SG_DAG, "Sluicegate"), (HITL_DAG, "Airflow HITL")):
        how = "trigger event" if dag_id == SG_DAG else "loop wakes, resumes"
        say(row(f"  {label}: decision -> {how}", to_resume[dag_id]))
        say(row(f"  {label}: resume -> gate task end_date", resume[dag_id]))
        say(row(f"  {label}: gate task end_date -> downstream start", to_done[dag_id]))
        say(row(f"  {label}: of the trial, this process collecting garbage", gc_in[dag_id]))
        if lat[dag_id]:
            slowest = max(range(len(lat[dag_id])), key=lat[dag_id].__getitem__)
            say(f"    {label}'s slowest trial: {lat[dag_id][slowest]:.3f} s to downstream, "
                f"of which {gc_in[dag_id][slowest]:.3f} s collecting garbage")  # fmt: skip
    longest = max(oldest, default=0.0) * 1e3
    say(f"    this process's garbage collections in 1+2: {gc_count}, of the oldest generation "
        f"{len(oldest)}, the longest {longest:.0f} ms")  # fmt: skip
    for dag_id, errs in errors.items():
        for e in sorted(set(errs)):
            say(f"  FAILED trials of {dag_id}: {errs.count(e)}x {e}")

    m = args.allowed_runs
    say(f"\n3. an allowed gate (kind read) vs no gate ({m} runs of each variant in each placement "
        f"of the servers, interleaved, the collector settled before each run; "
        f"{allowed_s:.0f} s)")  # fmt: skip
    goals: list[list[str]] = []
    for placement, c in costs.items():
        say(f"  {placement}:")
        goals.append(report_costs(c, m))
    say("  the gate's own work, outside Airflow (servers sharing the CPUs):")
    say(row("  hook.server() (reads the connection)", conn_s, "ms", m))
    say(row("  SluicegateClient(url, token)", client_s, "ms", m))
    say(row("  Gate.open round trip (a new connection)", open_s, "ms", m))
    for dag_id, label in ((GATED_TASK_DAG, "@task.sluicegate"), (NO_GATE_DAG, "plain @task")):
        n_fields = len(dags[dag_id].get_task("done").template_fields)
        say(row(f"  Airflow's rendered-fields step, done as {label} ({n_fields} fields)",
                fields_s[dag_id], "ms"))  # fmt: skip
    for b in bad:
        say(f"  FAILED run: {b}")

    say(f"\nload average {load()} at the end (the machine is shared: other load shows here)")
    say("\ngoals")
    for what, values in (("gate task completes", to_gate_end[SG_DAG]),
                         ("downstream starts", lat[SG_DAG])):  # fmt: skip
        s = sorted(values)
        if not s:
            say(f"  Sluicegate decision -> {what}: no successful trial -> NOT MET")
            continue
        p95 = pct(s, 95)
        say(f"  Sluicegate decision -> {what}, p95 <= {GOAL_P95_S} s: {p95:.3f} s "
            f"-> {verdict(p95 <= GOAL_P95_S and not errors[SG_DAG])}"
            + (f" ({len(errors[SG_DAG])} failed trials)" if errors[SG_DAG] else ""))  # fmt: skip
    h = sorted(lat[HITL_DAG])
    if h:
        say(f"  Airflow's gate (reference, {REFERENCE}): this run {pct(h, 50):.2f} s median, "
            f"{h[-1]:.2f} s max; not a comparison: our trigger runs inline in dag.test() while "
            "Airflow's operator waits for dag.test()'s 1 s sleep loop, so the gap is mostly that "
            "sleep (a real deployment's comparison is the real-deployment issue's)")  # fmt: skip
    for placement, lines in zip(costs, goals, strict=True):
        say(f"  allowed gate cost <= {GOAL_ALLOWED_MS:.0f} ms, {placement}:")
        for line in lines:
            say(f"    {line}")


class Costs:
    """Section 3's figures for one placement of the servers."""

    def __init__(self, variants: Sequence[str]) -> None:
        self.walls: dict[str, list[float]] = {d: [] for d in variants}
        self.gate_task: list[float] = []  # the allowed gate task (TI end - start)
        self.plain_task: list[float] = []  # the trivial task in its place
        self.extract_task: list[float] = []
        #: done's duration (TI end - start): behind @task.sluicegate, and without a gate
        self.done: dict[str, list[float]] = {GATED_TASK_DAG: [], NO_GATE_DAG: []}
        #: per round, done's duration behind the gate minus without it (the two ran seconds
        #: apart, so the machine's drift over minutes cancels out)
        self.paired: dict[str, list[float]] = {GATED_TASK_DAG: []}
        self.done_gc: dict[str, list[float]] = {d: [] for d in self.done}  # GC inside done


def report_costs(c: Costs, m: int) -> list[str]:
    """Print one placement's figures; returns its lines for the goals."""
    walls, done = c.walls, c.done
    say(row("dag.test() wall, extract -> allowed gate -> done", walls[ALLOWED_DAG], "ms", m))
    say(row("dag.test() wall, the same, do_xcom_push=False", walls[ALLOWED_NO_XCOM_DAG], "ms", m))
    say(row("dag.test() wall, extract -> done behind @task.sluicegate", walls[GATED_TASK_DAG],
            "ms", m))  # fmt: skip
    say(row("dag.test() wall, extract -> done", walls[NO_GATE_DAG], "ms", m))
    say(row("dag.test() wall, extract -> trivial @task -> done", walls[PLAIN_DAG], "ms", m))
    say(row("allowed gate task alone (TI end - start)", c.gate_task, "ms", m))
    say(row("trivial @task in the gate's place (TI end - start)", c.plain_task, "ms", m))
    say(row("trivial @task extract, allowed-gate runs (TI end - start)", c.extract_task, "ms", m))
    say(row("done behind @task.sluicegate (TI end - start)", done[GATED_TASK_DAG], "ms", m))
    say(row("done without a gate (TI end - start)", done[NO_GATE_DAG], "ms", m))
    for dag_id, label in ((GATED_TASK_DAG, "behind @task.sluicegate"),
                          (NO_GATE_DAG, "without a gate")):  # fmt: skip
        say(row(f"  done {label}: GC pauses inside its run", c.done_gc[dag_id], "ms", m))

    def med_ms(a: Sequence[float], b: Sequence[float]) -> float:
        return (statistics.median(a) - statistics.median(b)) * 1e3 if a and b else float("nan")

    goals: list[str] = []
    if not all(walls.values()):
        return ["no figures (every run of a variant failed)"]
    diff_ms = med_ms(walls[ALLOWED_DAG], walls[NO_GATE_DAG])
    say(f"  differences of the medians: allowed gate - no gate {diff_ms:+.1f} ms "
        f"(of which one more task, trivial task - no gate: "
        f"{med_ms(walls[PLAIN_DAG], walls[NO_GATE_DAG]):+.1f} ms; allowed gate - trivial "
        f"task: {med_ms(walls[ALLOWED_DAG], walls[PLAIN_DAG]):+.1f} ms, without its XCom "
        f"{med_ms(walls[ALLOWED_NO_XCOM_DAG], walls[PLAIN_DAG]):+.1f} ms); gate task - "
        f"trivial task (TI durations): {med_ms(c.gate_task, c.plain_task):+.1f} ms")  # fmt: skip
    goals.append(f"ApprovalGateOperator (a task more; difference of dag.test() medians): "
                 f"{diff_ms:+.1f} ms -> {verdict(diff_ms <= GOAL_ALLOWED_MS)}")  # fmt: skip

    def difference(label: str, a: Sequence[float], b: Sequence[float], goal: bool = True) -> str:
        mid, (lo, hi) = med_ms(a, b), median_difference_ci(a, b)
        met = f" -> {verdict(mid <= GOAL_ALLOWED_MS)}" if goal else ""
        return f"{label}: {mid:+.1f} ms (95% CI {lo:+.1f} to {hi:+.1f}){met}"

    goals.append(difference("@task.sluicegate (the gate in the task), dag.test() wall",
                            walls[GATED_TASK_DAG], walls[NO_GATE_DAG]))  # fmt: skip
    goals.append(difference("the same from the done task's own duration",
                            done[GATED_TASK_DAG], done[NO_GATE_DAG]))  # fmt: skip
    paired = c.paired[GATED_TASK_DAG]
    if paired:
        mid, (lo, hi) = statistics.median(paired) * 1e3, median_ci(paired)
        goals.append(
            "  paired, @task.sluicegate: the median of each round's difference in done's "
            f"duration {mid:+.1f} ms (95% CI {lo:+.1f} to {hi:+.1f})"
        )
    return goals


def settle_gc() -> None:
    """Collect, then freeze what survives, before a run of section 3: a collection of the
    oldest generation (half a second in dag.test's process, see section 1+2) then does not
    land inside one run by chance, and each run starts with the same young generations."""
    gc.collect()
    gc.freeze()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out = [pid]
    for child in child_pids(pid):
        out += process_tree(child)
    return out


def place(placement: str, servers: Sequence[int]) -> None:
    """Run the servers and this process (dag.test(), its tasks and threads) on the CPUs that
    ``placement`` gives them."""
    if placement == SPLIT:
        own = {max(ALL_CPUS)}
        pin(servers, own)
        pin([os.getpid()], ALL_CPUS - own)
    else:
        pin(servers, ALL_CPUS)
        pin([os.getpid()], ALL_CPUS)


def median_ci(values: Sequence[float], rounds: int = 2000) -> tuple[float, float]:
    """A 95% bootstrap interval (ms) of the median of ``values`` (seeded)."""
    rng = random.Random(7)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)] * 1e3, medians[int(0.975 * rounds) - 1] * 1e3


def median_difference_ci(
    a: Sequence[float], b: Sequence[float], rounds: int = 2000
) -> tuple[float, float]:
    """A 95% bootstrap interval (ms) of median(a) - median(b): how far the noise of these runs
    leaves the difference uncertain (seeded, so a run prints the same interval again)."""
    rng = random.Random(7)
    diffs = sorted(
        statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b)))
        for _ in range(rounds)
    )
    return diffs[int(0.025 * rounds)] * 1e3, diffs[int(0.975 * rounds) - 1] * 1e3


if __name__ == "__main__":
    main()
