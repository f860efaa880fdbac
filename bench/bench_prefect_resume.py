"""The server's resume of a paused Prefect flow run when Prefect is briefly busy: decision ->
Prefect accepts the resume.

Prefect's server answers 503 while its SQLite database is locked, which passes in moments.
The Prefect gate waits ``RESUME_GRACE`` (2 s) for the server's resume before it resumes the run
itself, and the dispatcher's first backoff is also 2 s: a resume that met one 503 and waited
out that backoff made the flow run wait the whole grace. This bench times what one busy answer
costs now.

``sluicegate serve`` (SQLite, examples/policy.yaml) runs as a subprocess with
``SLUICEGATE_PREFECT__API_URL`` pointing at ``tests/core/support/fakeprefect.py``, which answers 503
to every ``--busy-every``-th resume (10 by default: one in ten) and accepts the others. Each
trial opens a request as a Prefect flow run (a random flow run id), bob denies it, and the
latency is from just before the deciding call to the moment the fake receives the resume it
accepts. Figures only, no asserts.

Run it from the repository root, in the core environment (about 20 s)::

    .venv/bin/python bench/bench_prefect_resume.py [--trials 60] [--busy-every 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.core.support

from _server import EXAMPLES, FreshDatabase, ServerProcess, create_token, summary_ms
from tests.core.support.fakeprefect import FakePrefect

#: The Prefect gate's wait for the server's resume (prefect_sluicegate.pause.RESUME_GRACE).
RESUME_GRACE = 2.0
ACTION = {
    "kind": "export",
    "summary": "Export customers to the partner bucket",
    "inputs": [
        {"namespace": "postgres://prod:5432", "name": "crm.public.customers",
         "classifications": ["pii"]},
    ],
    "outputs": [{"namespace": "s3://partner-share", "name": "exports/customers.csv"}],
}  # fmt: skip


def trial(c: httpx.Client, tokens: dict[str, str], prefect: FakePrefect) -> tuple[float, int]:
    """One request opened and denied; (seconds to the accepted resume, calls it took)."""
    run_id = str(uuid.uuid4())
    body = {
        "idempotency_key": uuid.uuid4().hex,
        "action": ACTION,
        "requester": {"orchestrator": "prefect", "job": "bench.gate", "run_id": run_id},
    }
    r = c.post("/api/v1/requests", json=body, headers={"Authorization": f"Bearer {tokens['p']}"})
    r.raise_for_status()
    rid = r.json()["id"]
    decision = {"verdict": "deny", "comment": "not this partner"}
    start = time.monotonic()
    r = c.post(
        f"/api/v1/requests/{rid}/decisions",
        json=decision,
        headers={"Authorization": f"Bearer {tokens['bob']}"},
    )
    r.raise_for_status()
    deadline = time.monotonic() + 30
    while True:
        calls = [call for call in prefect.calls if call.flow_run_id == run_id]
        accepted = [call for call in calls if call.answered < 300]
        if accepted:
            return accepted[0].at - start, len(calls)
        if time.monotonic() > deadline:
            raise SystemExit(f"flow run {run_id} was not resumed in 30 s: {calls}")
        time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--busy-every", type=int, default=10)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with FakePrefect() as prefect, FreshDatabase(None, tag="prefect-resume") as db:
        server = ServerProcess(
            db.url,
            db.workdir,
            policy=EXAMPLES / "policy.yaml",
            log_level="warning",
            env={"SLUICEGATE_PREFECT__API_URL": prefect.url},
        )
        try:
            server.wait_ready()
            tokens = {
                "p": create_token(db.url, "prefect-bench", "request"),
                "bob": create_token(db.url, "bob", "review"),
            }
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as c:
                trial(c, tokens, prefect)  # warm-up, not counted (and never busy)
                prefect.busy_every = args.busy_every
                results = [trial(c, tokens, prefect) for _ in range(args.trials)]
        finally:
            server.stop()
    all_s = [seconds for seconds, _ in results]
    busy = [seconds for seconds, calls in results if calls > 1]
    print(f"\n{args.trials} resumes, Prefect busy (503) on every {args.busy_every}th call")
    print(f"  decision -> resume accepted, all     {summary_ms(all_s)}")
    print(f"  those that met a 503 ({len(busy):2d})          {summary_ms(busy)}")
    late = sum(1 for s in all_s if s >= RESUME_GRACE)
    print(f"  at or past the gate's grace ({RESUME_GRACE:.0f} s): {late}/{args.trials}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
