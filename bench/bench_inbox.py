"""Inbox benchmark: listings at 100,000 pending requests, and what they cost everyone else.

What it measures
  The real server (``sluicegate serve``, examples/policy.yaml) runs as a subprocess on a free
  127.0.0.1 port, on a fresh SQLite file (default) or a fresh PostgreSQL schema (``--db
  postgresql://...``).

  1. Seed (not measured): ``--pending`` (100,000) pending requests and ``--ended`` (50,000)
     ended ones (approved, denied, expired, cancelled), interleaved in time, are inserted
     straight into the store in the bench process: one real PII-export request opened with the
     workflow, cloned with new ids, ``--jobs`` (50) job names and ``--datasets`` (1,000)
     per-request dataset names besides the export's own two (which every request names).
     Approved requests carry two decisions, denied ones one, a fifth of the pending ones one.
  2. Listings through ``GET /api/v1/requests`` over ``--conns`` (4) keep-alive connections,
     each with its own token (four principals: the token cache is not one hot entry):
     the inbox's first page (``status=pending``), deep pages (``before=`` an id drawn at
     random from the whole id space: keyset pagination, no OFFSET), 500-item pages, and the
     filters (job, job + status, a rare dataset, the dataset every request names + status).
     ``--n`` (300) requests per case; p50/p99 of the client's time to the whole response.
  3. The review inbox page (``GET /inbox``, signed in as alice): p50/p99.
  4. The stall: ``--stall-conns`` (4) connections list 500-item deep pages back to back while
     one connection opens allowed gates (a routine read: one audit row committed) one after
     the other; gate-open p50/p99 with the listings running, against the same without them.
     A listing that ran on the event loop held every gate open (and long poll) behind it.

Goal from the issue: listings p99 <= 20 ms at 100,000 pending, never on the event loop.
The script asserts nothing; it prints figures. Everything runs on one machine: the client
competes with the server for CPU.

Run it from the repository root::

    python bench/bench_inbox.py
    python bench/bench_inbox.py --db postgresql://postgres@127.0.0.1:5432/test
    python bench/bench_inbox.py --pending 10000 --ended 5000 --n 100    # a quick look
    python bench/bench_inbox.py --explain    # the plans of every listing, then stop
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _server as S  # the shared helper next to this file

_CHUNK = 5000
_ENDED = ("approved", "denied", "expired", "cancelled")
_PRINCIPALS = ("alice", "bob", "carol", "erin")
_COMMON_DATASET = "crm.public.customers"  # every seeded request names it (the PII export)


# --------------------------------------------------------------------------- seeding


def seed(url: str, pending: int, ended: int, jobs: int, datasets: int) -> list[str]:
    """Insert ``pending`` + ``ended`` requests (see the module); every id, oldest first."""
    from sqlalchemy import select

    from sluicegate.model import Action, Requester, utcnow, uuid7
    from sluicegate.policy import load_policy
    from sluicegate.store import Store
    from sluicegate.store.schema import decisions, request_datasets, requests
    from sluicegate.workflow import Workflow

    action = Action.model_validate(
        json.loads((S.EXAMPLES / "actions" / "pii-export.json").read_text())
    )
    requester = Requester(**S.REQUESTER, principal="svc-bench")
    rng = random.Random(7)
    total = pending + ended
    statuses = ["pending"] * pending + [rng.choice(_ENDED) for _ in range(ended)]
    rng.shuffle(statuses)
    ids: list[str] = []
    with Store(url) as store:
        answer = Workflow(store, load_policy(S.POLICY)).open(
            idempotency_key="inbox-template", action=action, requester=requester
        )
        assert answer.request is not None
        with store.read() as conn:
            template = (
                conn.execute(select(requests).where(requests.c.id == str(answer.request.id)))
                .one()
                ._asdict()
            )
            own = [
                r._asdict()
                for r in conn.execute(
                    select(request_datasets).where(
                        request_datasets.c.request_id == str(answer.request.id)
                    )
                )
            ]
        now = utcnow()
        for start in range(0, total, _CHUNK):
            rows: list[dict[str, Any]] = []
            sets: list[dict[str, Any]] = []
            votes: list[dict[str, Any]] = []
            for k in range(start, min(total, start + _CHUNK)):
                rid = str(uuid7())
                ids.append(rid)
                status = statuses[k]
                created = now - timedelta(seconds=(total - k) * 0.05)
                job = f"etl.job-{k % jobs}"
                rows.append(
                    {
                        **template,
                        "id": rid,
                        "idempotency_key": f"inbox-{k}",
                        "status": status,
                        "job": job,
                        "created_at": created,
                        "expires_at": now + timedelta(hours=24),
                        "decided_at": None if status == "pending" else created,
                    }
                )
                sets += [{**d, "request_id": rid} for d in own]
                sets.append(
                    {
                        "request_id": rid,
                        "role": "input",
                        "namespace": "postgres://prod:5432",
                        "name": f"warehouse.table_{rng.randrange(datasets)}",
                    }
                )
                voters = {"approved": 2, "denied": 1}.get(status, 0)
                if status == "pending" and k % 5 == 0:
                    voters = 1
                for v in range(voters):
                    votes.append(
                        {
                            "request_id": rid,
                            "reviewer": _PRINCIPALS[v],
                            "verdict": "deny" if status == "denied" else "approve",
                            "comment": "seeded",
                            "channel": "api",
                            "fingerprint": template["fingerprint"],
                            "decided_at": created,
                        }
                    )
            with store.write() as conn:
                conn.execute(requests.insert(), rows)
                conn.execute(request_datasets.insert(), sets)
                if votes:
                    conn.execute(decisions.insert(), votes)
        with store.write() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("ANALYZE")
            else:
                conn.exec_driver_sql("ANALYZE")
    return ids


def explain(url: str, ids: list[str], job: str, rare: str) -> None:
    """The plan of each listing's page query (``EXPLAIN QUERY PLAN`` / ``EXPLAIN``)."""
    from sluicegate.model import Status
    from sluicegate.store import Store
    from sluicegate.store.requests import page_ids

    before = ids[len(ids) // 2]
    pending = Status.PENDING
    cases = {
        "pending, first page": {"status": pending},
        "pending, deep page": {"status": pending, "before": before},
        "all, deep page": {"before": before},
        "job, deep page": {"job": job, "before": before},
        "job + pending, deep page": {"job": job, "status": pending, "before": before},
        "rare dataset, deep page": {"dataset": rare, "before": before},
        "common dataset + pending, deep": {"dataset": _COMMON_DATASET, "status": pending,
                                           "before": before},
        "common ns::dataset": {"dataset": f"postgres://prod:5432::{_COMMON_DATASET}"},
    }  # fmt: skip
    with Store(url) as store, store.read() as conn:
        sqlite = conn.dialect.name == "sqlite"
        for name, kw in cases.items():
            stmt = page_ids(
                status=kw.get("status"),
                dataset=kw.get("dataset"),
                job=kw.get("job"),
                limit=50,
                before=kw.get("before"),
            )
            sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, COSTS OFF) "
            plan = [" ".join(str(c) for c in r[-1:]) for r in conn.exec_driver_sql(prefix + sql)]
            print(f"  {name}:\n    " + "\n    ".join(plan))


# --------------------------------------------------------------------------- clients


async def _timed(conns: list[S.RawConn], paths: list[str]) -> list[float]:
    """GET each path, spread over ``conns`` (one in flight each): the latencies."""
    todo = iter(paths)
    lat: list[float] = []

    async def worker(conn: S.RawConn) -> None:
        for path in todo:
            t = time.perf_counter()
            status, body = await conn.request("GET", path)
            lat.append(time.perf_counter() - t)
            if status != 200:
                raise SystemExit(f"GET {path}: {status} {body[:200]!r}")

    await asyncio.gather(*(worker(c) for c in conns))
    return lat


async def _gate_opens(port: int, token: str, seconds: float) -> list[float]:
    """Open allowed gates one after another for ``seconds``: the latencies."""
    template = S.templates()["allowed"]
    conn = S.RawConn(S.HOST, port, auth=token)
    tag = uuid.uuid4().hex[:8]
    lat: list[float] = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            body = (template % f"stall-{tag}-{len(lat)}").encode()
            t = time.perf_counter()
            status, resp = await conn.request("POST", "/api/v1/requests", body)
            lat.append(time.perf_counter() - t)
            if status != 200:
                raise SystemExit(f"gate open: {status} {resp[:200]!r}")
            await asyncio.sleep(0.005)
    finally:
        conn.close()
    return lat


async def _stall(port: int, tokens: list[str], req_token: str, paths: list[str],
                 conns: int, seconds: float) -> tuple[list[float], int]:  # fmt: skip
    """Gate opens while ``conns`` connections list ``paths`` round and round."""
    stop = asyncio.Event()
    listed = 0

    async def lister(k: int) -> None:
        nonlocal listed
        conn = S.RawConn(S.HOST, port, auth=tokens[k % len(tokens)])
        try:
            while not stop.is_set():
                status, _ = await conn.request("GET", random.choice(paths))
                listed += status == 200
        finally:
            conn.close()

    tasks = [asyncio.create_task(lister(k)) for k in range(conns)]
    await asyncio.sleep(0.5)
    lat = await _gate_opens(port, req_token, seconds)
    stop.set()
    await asyncio.gather(*tasks)
    return lat, listed


def _inbox_times(port: int, n: int) -> list[float]:
    """``GET /inbox`` ``n`` times, signed in as alice with a review token."""
    import httpx

    base = f"http://{S.HOST}:{port}"
    with httpx.Client(base_url=base, headers={"Origin": base}) as client:
        form = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        if csrf is None:
            raise SystemExit("no csrf field on /login")
        done = client.post(
            "/login", data={"token": _inbox_times.token, "csrf": csrf.group(1), "next": "/inbox"}
        )
        if done.status_code not in (302, 303):
            raise SystemExit(f"sign-in: {done.status_code} {done.text[:300]}")
        lat = []
        for _ in range(n):
            t = time.perf_counter()
            page = client.get("/inbox")
            lat.append(time.perf_counter() - t)
            if page.status_code != 200:
                raise SystemExit(f"/inbox: {page.status_code}")
    return lat


_inbox_times.token = ""  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", help="postgresql://... (default: a fresh SQLite file)")
    ap.add_argument("--pending", type=int, default=100_000)
    ap.add_argument("--ended", type=int, default=50_000)
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--datasets", type=int, default=1000)
    ap.add_argument("--n", type=int, default=300, help="requests per listing case (300)")
    ap.add_argument("--conns", type=int, default=4, help="connections per listing case (4)")
    ap.add_argument("--stall-conns", type=int, default=4)
    ap.add_argument("--stall-seconds", type=float, default=8.0)
    ap.add_argument("--explain", action="store_true", help="print the plans and stop")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir / PostgreSQL schema")
    args = ap.parse_args(argv)

    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with S.FreshDatabase(args.db, keep=args.keep, tag="inbox") as db:
        t0 = time.monotonic()
        ids = seed(db.url, args.pending, args.ended, args.jobs, args.datasets)
        print(
            f"seeded {args.pending:,} pending + {args.ended:,} ended requests on {db.where} "
            f"in {time.monotonic() - t0:.1f} s (not measured)"
        )
        job, rare = "etl.job-7", "warehouse.table_7"
        if args.explain:
            explain(db.url, ids, job, rare)
            return 0
        tokens = [S.create_token(db.url, who, "review") for who in _PRINCIPALS]
        req_token = S.create_token(db.url, "svc-bench", "request")
        _inbox_times.token = tokens[0]  # type: ignore[attr-defined]
        server = S.ServerProcess(db.url, db.workdir)
        try:
            server.wait_ready()
            rng = random.Random(11)

            def deep(query: str, n: int) -> list[str]:
                return [
                    f"/api/v1/requests?{query}&before={rng.choice(ids)}".replace("?&", "?")
                    for _ in range(n)
                ]

            n = args.n
            cases = {
                "pending, first page (50)": ["/api/v1/requests?status=pending"] * n,
                "pending, deep pages (50)": deep("status=pending", n),
                "pending, deep pages (500)": deep("status=pending&limit=500", max(20, n // 5)),
                "all statuses, deep (50)": deep("", n),
                "job, deep (50)": deep(f"job={job}", n),
                "job + pending, deep (50)": deep(f"job={job}&status=pending", n),
                "rare dataset, deep (50)": deep(f"dataset={rare}", n),
                "common dataset + pending, deep (50)": deep(
                    f"dataset={_COMMON_DATASET}&status=pending", n
                ),
            }

            async def listings() -> dict[str, list[float]]:
                conns = [
                    S.RawConn(S.HOST, server.port, auth=tokens[k % len(tokens)])
                    for k in range(args.conns)
                ]
                try:
                    await _timed(conns, cases["pending, first page (50)"][:20])  # warm up
                    return {name: await _timed(conns, paths) for name, paths in cases.items()}
                finally:
                    for c in conns:
                        c.close()

            print(f"\nGET /api/v1/requests, {args.conns} connections, {len(tokens)} tokens:")
            for name, lat in S.run(listings()).items():
                print(f"  {name:<38} {S.summary_ms(lat)}")
            print(f"  {'GET /inbox (alice, 100 pending a page)':<38} "
                  f"{S.summary_ms(_inbox_times(server.port, max(20, n // 5)))}")  # fmt: skip

            quiet = S.run(_gate_opens(server.port, req_token, args.stall_seconds))
            busy, listed = S.run(
                _stall(
                    server.port,
                    tokens,
                    req_token,
                    deep("status=pending&limit=500", 200),
                    args.stall_conns,
                    args.stall_seconds,
                )
            )
            print("\ngate opens (allowed), one at a time:")
            print(f"  quiet:                                  {S.summary_ms(quiet)}")
            print(
                f"  while {args.stall_conns} connections list 500-item pages: "
                f"{S.summary_ms(busy)} ({listed} pages listed meanwhile)"
            )
            print(f"\nserver log lines at ERROR: {server.errors_logged()}")
            print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            print("goal: listings p99 <= 20 ms at 100,000 pending, never on the event loop")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
