"""One allowed gate opened on an idle server: what a pipeline step pays for its one call.

A task opens one gate and exits, often minutes after the last one: the server has been idle,
its threads asleep. This prints the round trip of ``POST /api/v1/requests`` for a routine read
(the policy allows it: one audit row) made after ``--idle`` ms of quiet and back to back, p50
over ``--calls`` calls, each on a new connection, as a new client makes it:

- clients: the standard library's ``http.client`` (the floor: no client to speak of),
  ``SluicegateClient.open_gate`` (httpx) and the whole gate, ``Gate(client).open`` (the
  client, the state machine and the outcome an adapter reads);
- servers: ``sluicegate serve`` as shipped, and the same with the quiet writer turned off
  (``QUIET_S`` set to infinity in that process: every write goes through the writer thread),
  alternating round by round;
- ``--micro``: a savepoint and its release inside a store batch, through SQLAlchemy's
  ``begin_nested()`` and through ``exec_driver_sql`` (what ``Store.write`` uses).

Both servers on SQLite (examples/policy.yaml), each a subprocess on 127.0.0.1. Figures only.
Run from the repository root in the core environment (about a minute)::

    uv run --locked python bench/bench_idle_open.py [--idle 50] [--calls 60] [--rounds 3] [--micro]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _server import EXAMPLES, HOST, POLICY, ServerProcess  # noqa: E402

ACTION = json.loads((EXAMPLES / "actions" / "routine-read.json").read_text())
REQUESTER = {"orchestrator": "airflow", "job": "bench.idle_open", "run_id": "r", "step": "gate"}
WITHOUT_QUIET_WRITER = [
    sys.executable,
    "-c",
    "import sys, sluicegate.server.group_commit as w; w.QUIET_S = float('inf'); "
    "from sluicegate.cli import main; sys.argv[0] = 'sluicegate'; main()",
]


def clients(port: int, token: str) -> dict[str, Callable[[str], None]]:
    from sluicegate.client import SluicegateClient
    from sluicegate.gate import Gate

    url = f"http://{HOST}:{port}"

    def stdlib(key: str) -> None:
        body = json.dumps({"idempotency_key": key, "action": ACTION, "requester": REQUESTER})
        conn = http.client.HTTPConnection(HOST, port)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request("POST", "/api/v1/requests", body, headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 200:
            raise SystemExit(f"open answered {response.status}")

    def client(key: str) -> None:
        with SluicegateClient(url, token) as c:
            c.open_gate(key, ACTION, REQUESTER)

    def gate(key: str) -> None:
        with SluicegateClient(url, token) as c:
            if not Gate(c).open(key, ACTION, REQUESTER).proceed:
                raise SystemExit("the gate did not let a routine read through")

    return {"http.client": stdlib, "SluicegateClient": client, "Gate.open": gate}


def micro(work: Path, n: int = 2000) -> None:
    from sluicegate.store import Store

    # Inside a batch, read() gives the batch's own connection: the one Store.write uses.
    with Store(f"sqlite:///{work}/micro.db") as store, store.batch(), store.read() as conn:
        t = time.perf_counter()
        for _ in range(n):
            with conn.begin_nested():
                pass
        nested = (time.perf_counter() - t) / n
        t = time.perf_counter()
        for _ in range(n):
            conn.exec_driver_sql("SAVEPOINT sp")
            conn.exec_driver_sql("RELEASE SAVEPOINT sp")
        plain = (time.perf_counter() - t) / n
    print(f"savepoint + release in a batch ({n} each): begin_nested() {nested * 1e6:.0f} us, "
          f"exec_driver_sql {plain * 1e6:.0f} us")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=float, default=50.0, help="ms of quiet before each call")
    ap.add_argument("--calls", type=int, default=60, help="calls per client, server and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--micro", action="store_true", help="also time savepoints in a batch")
    args = ap.parse_args()

    from sluicegate.store import Store

    work = Path(tempfile.mkdtemp(prefix="sluicegate-idle-open-"))
    servers = {"as shipped": None, "quiet writer off": WITHOUT_QUIET_WRITER}
    seen: dict[tuple[str, str, str], list[float]] = {}
    for rnd in range(args.rounds):
        for name, command in servers.items():
            db = f"sqlite:///{work}/{rnd}-{len(seen)}.db"
            server = ServerProcess(db, str(work), policy=POLICY, log_level="warning",
                                   n=len(seen), command=command)  # fmt: skip
            try:
                server.wait_ready()
                with Store(db) as store:
                    token = store.create_token("bench", "request")
                for label, call in clients(server.port, token).items():
                    for idle in (args.idle, 0.0):
                        for i in range(args.calls + 5):
                            time.sleep(idle / 1000)
                            t = time.perf_counter()
                            call(f"{label}-{idle}-{i}")
                            if i >= 5:  # the first calls warm the server up
                                seen.setdefault((name, label, f"{idle:g}"), []).append(
                                    time.perf_counter() - t
                                )
            finally:
                server.stop()
    print(f"allowed open, p50 over {args.calls * args.rounds} calls each, a new connection per "
          f"call (after {args.idle:g} ms of quiet / back to back):")  # fmt: skip
    for name in servers:
        for label in ("http.client", "SluicegateClient", "Gate.open"):
            cells = [statistics.median(seen[(name, label, f"{idle:g}")]) * 1e3
                     for idle in (args.idle, 0.0)]  # fmt: skip
            print(f"  server {name:<17} client {label:<24} {cells[0]:6.2f} / {cells[1]:6.2f} ms")
    if args.micro:
        micro(work)


if __name__ == "__main__":
    main()
