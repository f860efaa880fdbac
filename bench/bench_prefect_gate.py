"""The approval gate in Prefect 3: how fast a decision lets a paused flow run go on, next to
Prefect's own ``pause_flow_run`` resumed with ``resume_flow_run``.

Prefect runs as ``prefect_test_harness()`` (its API server in a subprocess, SQLite); the flows
run in threads of this process. ``sluicegate serve`` (SQLite, examples/policy.yaml) is a
subprocess on 127.0.0.1 with ``SLUICEGATE_PREFECT__API_URL`` pointing at the harness, so it
resumes paused runs through Prefect's API.

What it measures
  1. Sluicegate: decision -> flow continues. The flow calls ``approval_gate`` on an export of
     crm.public.customers (the policy wants two approvals) and notes ``time.time()`` the moment
     the gate returns. A reviewer waits until the request is pending and Prefect shows the run
     Paused (every 50 ms), sends alice's approval, sleeps an offset u in [0, 1) s, notes the
     time and sends bob's (the final) approval. Latency = gate returned - that time. Also
     counted: how many runs the server resumed (its outbox row for ``prefect:<run>`` sent with
     ACCEPT) rather than the gate itself.
  2. Prefect's own: the flow calls ``pause_flow_run(wait_for_input=<RunInput without
     defaults>)`` and notes the time when it returns, at Prefect's default poll interval
     (10 s) and at its best setting (``poll_interval=1``), both in this run. Once Prefect shows
     the run Paused, the driver sleeps an offset u in [0, interval) (the poll's phase; u = 0 is
     "resumed at once"), notes the time and calls ``resume_flow_run(id, run_input=...)``.
     These trials run two at a time (each waits at least one poll interval).
  The offsets are i/N of their range for i < N, shuffled (seeded).
  3. An allowed gate's cost in a warm process: in one flow run, ``approval_gate`` on a read
     of sales.public.orders (the policy allows it: one round trip, nobody asked), each call a
     step of its own, timed from the call to its return; with ``config=`` the name of a saved
     block (the documented form) and with the loaded block. The goal (5 ms added per step) is
     measured in a fresh process per flow run by ``bench_prefect_flow_process.py``.
  Figures only, no asserts.

Run it from the repository root, in the Prefect environment (about 3 minutes; with
``--allowed-only``, the allowed gate alone, under a minute)::

    .venvs/prefect/bin/python bench/bench_prefect_gate.py [--trials 20] [--allowed 200]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import FreshDatabase, ServerProcess, create_token, pct, summary_ms

CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}
ORDERS = {"namespace": "postgres://prod:5432", "name": "sales.public.orders"}
BUCKET = "s3://partner-share/exports/customers.csv"
#: Plain trials run this many at a time (each waits at least one 10 s poll). More made the
#: harness's SQLite database answer "database is locked" and crash runs on 2 shared cores.
PLAIN_AT_ONCE = 2
CONTINUED: dict[str, float] = {}  # flow run id -> time.time() when the flow went on
PLAIN_RUNS: dict[str, str] = {}  # a plain trial's tag -> its flow run's id
ALLOWED: dict[bool, list[float]] = {True: [], False: []}  # by block name? -> seconds per gate
#: The plain pause's poll intervals compared: Prefect's default, and the least it accepts.
POLLS = (10, 1)


def _flows() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from prefect import flow
    from prefect.flow_runs import pause_flow_run
    from prefect.input import RunInput
    from prefect.runtime import flow_run

    from prefect_sluicegate import approval_gate

    class Go(RunInput):
        ok: bool  # no default: a bare resume is refused, as with the gate's input

    @flow(name="bench-gate")
    def bench_gate(block: str) -> None:
        approval_gate("export", inputs=[CUSTOMERS], outputs=[BUCKET], config=block)
        CONTINUED[str(flow_run.id)] = time.time()

    @flow(name="bench-plain-pause")
    def bench_plain(tag: str, poll_interval: int) -> None:
        PLAIN_RUNS[tag] = str(flow_run.id)
        pause_flow_run(wait_for_input=Go, timeout=600, poll_interval=poll_interval)
        CONTINUED[str(flow_run.id)] = time.time()

    return bench_gate, bench_plain


def _allowed_flow() -> Callable[..., Any]:
    from prefect import flow

    from prefect_sluicegate import SluicegateConfig, approval_gate

    @flow(name="bench-allowed")
    def bench_allowed(block: str, n: int, by_name: bool) -> None:
        config: SluicegateConfig | str = block if by_name else SluicegateConfig.load(block)
        for i in range(n + 1):  # the first is a warm-up, not counted
            started = time.perf_counter()
            approval_gate("read", inputs=[ORDERS], config=config, step=f"read-{i}")
            if i:
                ALLOWED[by_name].append(time.perf_counter() - started)

    return bench_allowed


def _state(run_id: str) -> str | None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(uuid.UUID(run_id)).state
    return state.type.value if state is not None else None


def _wait_paused(run_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _state(run_id) != "PAUSED":
        if time.monotonic() > deadline:
            raise SystemExit(f"flow run {run_id} never paused")
        time.sleep(0.05)


def _start(fn: Callable[..., Any], **kw: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, kwargs=kw, daemon=True)
    thread.start()
    return thread


def _wait_continued(run_id: str, thread: threading.Thread, timeout: float = 120) -> float:
    thread.join(timeout)
    if run_id not in CONTINUED:
        raise SystemExit(f"flow run {run_id} did not go on")
    return CONTINUED[run_id]


class Reviewers:
    def __init__(self, server: ServerProcess, tokens: dict[str, str]) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30)
        self.tokens = tokens

    def pending(self, job: str, seen: set[str]) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = self.http.get(
                "/api/v1/requests",
                params={"status": "pending", "job": job},
                headers={"Authorization": f"Bearer {self.tokens['alice']}"},
            )
            r.raise_for_status()
            for item in r.json()["items"]:
                if item["id"] not in seen:
                    seen.add(item["id"])
                    return dict(item)
            time.sleep(0.05)
        raise SystemExit("no pending request showed up")

    def approve(self, rid: str, who: str) -> None:
        self.http.post(
            f"/api/v1/requests/{rid}/decisions",
            json={"verdict": "approve"},
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
        ).raise_for_status()


def bench_sluicegate(
    gate_flow: Callable[..., Any], reviewers: Reviewers, block: str, offsets: list[float]
) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    ids: list[str] = []
    seen: set[str] = set()
    for u in offsets:
        thread = _start(gate_flow, block=block)
        request = reviewers.pending("bench-gate", seen)
        run_id = request["requester"]["run_id"]
        _wait_paused(run_id)
        reviewers.approve(request["id"], "alice")
        time.sleep(u)
        decided = time.time()
        reviewers.approve(request["id"], "bob")
        latencies.append(_wait_continued(run_id, thread) - decided)
        ids.append(request["id"])
    return latencies, ids


def bench_plain(
    plain_flow: Callable[..., Any], offsets: list[float], poll_interval: int
) -> list[float]:
    from prefect.flow_runs import resume_flow_run

    def one(u: float) -> float:
        tag = uuid.uuid4().hex
        thread = _start(plain_flow, tag=tag, poll_interval=poll_interval)
        deadline = time.monotonic() + 60
        while tag not in PLAIN_RUNS:
            if time.monotonic() > deadline:
                raise SystemExit("a plain flow run never started")
            time.sleep(0.05)
        run_id = PLAIN_RUNS[tag]
        _wait_paused(run_id)
        time.sleep(u)
        resumed = time.time()
        resume_flow_run(uuid.UUID(run_id), run_input={"ok": True})
        return _wait_continued(run_id, thread) - resumed

    with ThreadPoolExecutor(PLAIN_AT_ONCE) as pool:
        return list(pool.map(one, offsets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--allowed", type=int, default=200, help="allowed gates timed, per way")
    parser.add_argument("--allowed-only", action="store_true", help="only the allowed gate")
    args = parser.parse_args()
    home = Path(
        os.environ.setdefault("PREFECT_HOME", f"/tmp/sluicegate-bench-prefect-{os.getpid()}")
    )

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from prefect_sluicegate import SluicegateConfig
    from sluicegate.store import Store
    from sluicegate.store.notifications import OutboxTable

    print(f"load average at start: {os.getloadavg()}")
    rng = random.Random(args.seed)
    gate_offsets = [i / args.trials for i in range(args.trials)]
    plain_offsets = {p: [p * i / args.trials for i in range(args.trials)] for p in POLLS}
    rng.shuffle(gate_offsets)
    for offsets in plain_offsets.values():
        rng.shuffle(offsets)
    gate_flow, plain_flow = _flows()
    allowed_flow = _allowed_flow()
    ours: list[float] = []
    plain: dict[int, list[float]] = {}
    by_server = 0
    with FreshDatabase(None, tag="prefect") as db, prefect_test_harness(server_startup_timeout=60):
        api = str(PREFECT_API_URL.value())
        server = ServerProcess(
            db.url, db.workdir, log_level="warning", env={"SLUICEGATE_PREFECT__API_URL": api}
        )
        server.wait_ready()
        try:
            tokens = {"prefect": create_token(db.url, "prefect-bench", "request")}
            tokens |= {r: create_token(db.url, r, "review") for r in ("alice", "bob")}
            SluicegateConfig(
                server_url=f"http://127.0.0.1:{server.port}", token=tokens["prefect"]
            ).save("bench", overwrite=True)
            for by_name in (True, False):
                allowed_flow(block="bench", n=args.allowed, by_name=by_name)
            if not args.allowed_only:
                reviewers = Reviewers(server, tokens)
                bench_sluicegate(gate_flow, reviewers, "bench", [0.0])  # warm-up, not counted
                ours, ids = bench_sluicegate(gate_flow, reviewers, "bench", gate_offsets)
                plain = {p: bench_plain(plain_flow, plain_offsets[p], p) for p in POLLS}
                with Store(db.url) as store:
                    table = OutboxTable(store)
                    by_server = sum(
                        1
                        for rid in ids
                        for row in table.rows(rid)
                        if row["target"].startswith("prefect:") and row["status"] == "sent"
                    )
        finally:
            server.stop()
    shutil.rmtree(home, ignore_errors=True)

    print(f"\nPrefect {_prefect_version()}, an allowed gate ({args.allowed} each; goal 5 ms)")
    print(f"  config= a block's name   {summary_ms(ALLOWED[True])}")
    print(f"  config= the loaded block {summary_ms(ALLOWED[False])}")
    if args.allowed_only:
        print(f"load average at end: {os.getloadavg()}")
        return
    n = args.trials
    print(f"\nPrefect {_prefect_version()}, {n} trials each; decision -> the flow goes on")
    print(f"  sluicegate approval_gate   {summary_ms(ours)}")
    print(f"    resumed by the server: {by_server}/{n} (the rest by the gate itself)")
    s_ours = sorted(ours)
    for poll in POLLS:
        s_plain = sorted(plain[poll])
        print(f"  plain pause_flow_run       {summary_ms(s_plain)}  (poll_interval {poll} s"
              f"{', the default' if poll == 10 else ', its best'})")  # fmt: skip
        ratios = ", ".join(f"p{p} {pct(s_plain, p) / pct(s_ours, p):.1f}x" for p in (50, 95))
        print(f"    ratio plain / sluicegate: {ratios}")
    print(f"load average at end: {os.getloadavg()}")


def _prefect_version() -> str:
    import prefect

    return str(prefect.__version__)


if __name__ == "__main__":
    main()
