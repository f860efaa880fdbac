"""What the gates' lineage costs a pipeline step, with a healthy, a slow and a dead backend.

Starts ``sluicegate serve`` (SQLite) once per backend mode, with ``OPENLINEAGE_URL`` pointing
at a local HTTP backend that answers as Marquez does (``healthy``: 201 at once), takes 5 s an
event (``slow``), answers 500 (``failing``), or is not there (``dead``: a closed port, where
openlineage-python's HTTP transport retries for about 9 s; the emitter then rests the backend,
one attempt per backoff period, while the events wait in its queue); ``off`` runs with no
OpenLineage configuration at all, the reference. In each mode a pipeline makes, one after
another over one keep-alive connection:

- ``allowed`` gates (the policy lets them pass: the server emits START and COMPLETE), and
- ``pending`` gates approved by two reviewers, then released (START, OTHER, OTHER, COMPLETE),
  timing the pipeline's own calls (open, release).

It prints the latency of each call and how much each mode adds to ``off``, then what the
server counted (``sluicegate_lineage_events_emitted_total`` by outcome, and
``sluicegate_lineage_events_dropped_total`` by reason). Figures, no asserts.

    python bench/bench_lineage_emit.py [--gates 400] [--cycles 60]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import (
    HOST,
    POLICY,
    FreshDatabase,
    ServerProcess,
    create_token,
    metric_value,
    pct,
)

ALLOWED = {
    "kind": "read",
    "summary": "Read the orders table",
    "inputs": [{"namespace": "postgres://prod:5432", "name": "sales.public.orders"}],
}
PENDING = {
    "kind": "export",
    "summary": "Export customers to the partner bucket",
    "inputs": [{"namespace": "postgres://prod:5432", "name": "crm.public.customers"}],
    "outputs": [{"namespace": "s3://partner-share", "name": "exports/customers.csv"}],
}
REQUESTER = {
    "orchestrator": "bench",
    "job": "bench.lineage",
    "run_id": "run-1",
    "parent": {"namespace": "bench", "name": "bench.lineage", "run_id": str(uuid.uuid4())},
}
MODES = ("off", "healthy", "slow", "failing", "dead")


class _Backend(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, delay: float, status: int) -> None:
        self.delay, self.status, self.received = delay, status, 0
        super().__init__((HOST, 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Backend

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received += 1
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def backend(mode: str) -> Iterator[tuple[str | None, subprocess.Popen[str] | None]]:
    """The backend for ``mode``, in its own process (in this one it would compete with the
    measuring client for this process's GIL and show up as the server's cost)."""
    if mode == "off":
        yield None, None
        return
    if mode == "dead":
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        yield f"http://{HOST}:{port}", None
        return
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-backend", mode],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    try:
        yield f"http://{HOST}:{port}", proc
    finally:
        proc.terminate()
        proc.wait(10)


def serve_backend(mode: str) -> None:
    """``--serve-backend MODE``: print the port, serve until stdin closes; then print how
    many events arrived."""
    server = _Backend(5.0 if mode == "slow" else 0.0, 500 if mode == "failing" else 201)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.readline()
    print(server.received, flush=True)


def received(proc: subprocess.Popen[str] | None) -> int:
    if proc is None:
        return 0
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    return int(proc.stdout.readline())


def measure(mode: str, gates: int, cycles: int, workdir: str) -> dict[str, Any]:
    with backend(mode) as (url, recorder), FreshDatabase(None) as db:
        env = {"OPENLINEAGE_URL": url} if url else {}
        server = ServerProcess(db.url, workdir, policy=POLICY, log_level="warning", env=env)
        try:
            server.wait_ready()
            base = f"http://{HOST}:{server.port}"
            pipeline = create_token(db.url, "bench-pipeline", "request")
            reviewers = [create_token(db.url, r, "review") for r in ("alice", "bob")]
            times: dict[str, list[float]] = {"allowed": [], "open": [], "release": []}
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {pipeline}"}) as c:
                for i in range(gates):
                    body = {"idempotency_key": f"a-{i}", "action": ALLOWED, "requester": REQUESTER}
                    t0 = time.perf_counter()
                    r = c.post("/api/v1/requests", json=body)
                    times["allowed"].append(time.perf_counter() - t0)
                    assert r.status_code == 200 and r.json()["status"] == "allowed", r.text
                decide = [httpx.Client(base_url=base, headers={"Authorization": f"Bearer {t}"})
                          for t in reviewers]  # fmt: skip
                for i in range(cycles):
                    body = {"idempotency_key": f"p-{i}", "action": PENDING, "requester": REQUESTER}
                    t0 = time.perf_counter()
                    r = c.post("/api/v1/requests", json=body)
                    times["open"].append(time.perf_counter() - t0)
                    rid = r.json()["id"]
                    for d in decide:
                        d.post(f"/api/v1/requests/{rid}/decisions", json={"verdict": "approve"})
                    t0 = time.perf_counter()
                    r = c.post(f"/api/v1/requests/{rid}/release")
                    times["release"].append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
                for d in decide:
                    d.close()
                time.sleep(0.5)  # let the emitter send what it can before reading the counts
                metrics = httpx.get(f"{base}/metrics").text
        finally:
            server.stop()
        got = received(recorder)
    counts = {
        o: metric_value(metrics, f'sluicegate_lineage_events_emitted_total{{outcome="{o}"}}')
        for o in ("sent", "failed", "dropped")
    }
    for reason in ("queue_full", "shutdown"):
        name = f'sluicegate_lineage_events_dropped_total{{reason="{reason}"}}'
        counts[f"dropped ({reason})"] = metric_value(metrics, name)
    return {"times": times, "counts": counts, "received": got}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gates", type=int, default=400, help="allowed gates per mode")
    ap.add_argument("--cycles", type=int, default=60, help="open-approve-release cycles per mode")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--serve-backend", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_backend:
        serve_backend(args.serve_backend)
        return
    modes = [m for m in args.modes.split(",") if m]
    print(f"Python {sys.version.split()[0]}; {args.gates} allowed gates and {args.cycles} "
          "approved gates per mode, one pipeline, one keep-alive connection; SQLite")  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for mode in modes:
            results[mode] = measure(mode, args.gates, args.cycles, workdir)
    ref = results.get("off")
    print()
    print(f"{'mode':<9} {'call':<14} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
          f" {'+p50':>7} {'+p95':>7}")  # fmt: skip
    for mode, res in results.items():
        for call, values in res["times"].items():
            s = sorted(values)
            p50, p95, p99 = (pct(s, q) * 1000 for q in (50, 95, 99))
            if ref is not None:
                r = sorted(ref["times"][call])
                d50 = f"{p50 - pct(r, 50) * 1000:+7.2f}"
                d95 = f"{p95 - pct(r, 95) * 1000:+7.2f}"
            else:
                d50 = d95 = "      -"
            label = {"allowed": "allowed open", "open": "pending open"}.get(call, call)
            print(f"{mode:<9} {label:<14} {p50:8.2f} {p95:8.2f} {p99:8.2f} {s[-1] * 1000:8.2f}"
                  f" {d50} {d95}")  # fmt: skip
    print()
    for mode, res in results.items():
        c = res["counts"]
        shown = ", ".join(f"{k} {int(v or 0)}" for k, v in c.items())
        extra = f"; backend received {res['received']}" if res["received"] else ""
        print(f"{mode:<9} server counted: {shown}{extra}")
    print("\n+p50/+p95: added to the same call with lineage off (goal: <= 10 ms in every mode)")


if __name__ == "__main__":
    main()
