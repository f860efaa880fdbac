"""HTTP server benchmark: gates opened per second and status reads per second under load.

What it measures
  The real server (``sluicegate serve``, uvicorn with uvloop + httptools, examples/policy.yaml)
  runs as a subprocess on a free 127.0.0.1 port, on a fresh SQLite file (default) or a fresh
  PostgreSQL schema (``--db postgresql://...``). ``--workers N`` runs ``sluicegate serve
  --workers N`` (N processes on one port, on either database); ``--replicas N`` runs N separate
  ``sluicegate serve`` on N ports sharing the database, the clients spread over them.

  A load generator keeps ``--clients`` (200) concurrent clients busy, each one request at a
  time on its own keep-alive connection, for ``--seconds`` (10) after ``--warmup`` (2) s. By
  default the loop is closed (a client sends again as soon as it is answered: the figure is
  the most the server completes, and latency is whatever queueing that load causes; with 200
  clients, p99 <= 50 ms would take > 4,000 requests/s). ``--rate R`` opens the loop: R
  requests/s in all are offered on a fixed schedule, and latency counts from each request's
  due time: the p99 at a given throughput. In each phase:

  - ``allowed``: POST /api/v1/requests, a routine read (examples/actions/routine-read.json),
    unique idempotency key: the policy allows it (200, one audit row);
  - ``pending``: the same with a PII export (examples/actions/pii-export.json): a new pending
    request (201: request row, dataset rows, audit row);
  - ``mixed``: each open is pending with probability ``--pending-share`` (0.5), else allowed;
    figures are given for both kinds apart and together;
  - ``reads``: GET /api/v1/requests/{id}, each id drawn at random from ``--read-ids``
    (50,000) pending requests inserted beforehand (bench_inbox's bulk seed: a real request
    cloned), so reads go over the whole id space, not a hot few that stay in every cache;
  - ``healthz``: GET /healthz (a sync route with no auth and no database), for reference: the
    ceiling of the framework stack (uvicorn + FastAPI + threadpool) on this machine.

  ``--micro`` first times the core calls behind each route in this process, one thread, no
  HTTP (token lookup, Store.get, Approvals.open allowed / pending, the JSON answer): the CPU
  floor per request that no server tuning removes.

  Printed per phase: completed requests/s (those completing inside the measured window),
  latency p50/p95/p99/max measured at the client (send to last byte), non-2xx responses and
  connection errors, the server's CPU (utime+stime from /proc/<pid>/stat, in % of one core;
  100% is all a single Python process can use), the load generator's CPU and the whole
  machine's busy share. The load generator runs on the same machine and competes with the
  server for its cores: read the client CPU figure next to every result.

  The client is a minimal HTTP/1.1 client on asyncio streams (``--client raw``, default; see
  bench/_server.py) or ``httpx.AsyncClient`` (``--client httpx``), both on uvloop, in
  ``--client-procs`` processes (1) sharing the clients. The clients authenticate with
  ``--tokens`` (8) request tokens of as many principals, client i with token i mod 8, so the
  server's token cache is not one hot entry.

Goals from the issue, at 200 concurrent clients on a 2-core machine: >= 1,000 opens/s,
>= 3,000 reads/s, p99 <= 50 ms. The script asserts nothing; it prints figures.

Run it from the repository root with the core and its server extra installed::

    python bench/bench_server.py                                  # SQLite, all phases
    python bench/bench_server.py --db postgresql://postgres@127.0.0.1:5432/test
    python bench/bench_server.py --db postgresql://postgres@127.0.0.1:5432/test --workers 2
    python bench/bench_server.py --workers 2 --phases reads --rate 3000   # p99 at 3,000/s
    python bench/bench_server.py --phases reads --client httpx --client-procs 2
    python bench/bench_server.py --log-level warning             # no access log lines
    python bench/bench_server.py --micro 2000 --phases healthz    # core call costs only
    python bench/bench_server.py --profile /tmp/prof   # py-spy the server (needs py-spy;
                                                       # sampling costs the server some CPU)

The temporary directory (with the server logs) and the PostgreSQL schema are removed at the
end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import sys
import time
import uuid
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _server as S  # the shared helper next to this file

PHASES = ("allowed", "pending", "mixed", "reads", "healthz")

# --------------------------------------------------------------------------- load worker


async def _load(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run ``cfg["clients"]`` clients until ``cfg["end"]`` (monotonic); figures as a dict."""
    templates = S.templates()
    ports: list[int] = cfg["ports"]
    mode: str = cfg["mode"]
    ids: list[str] = cfg["ids"]
    share: float = cfg["pending_share"]
    start, measure_from, end = cfg["start"], cfg["measure_from"], cfg["end"]
    lat: dict[str, list[float]] = {"pending": [], "allowed": [], "read": []}
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    cpu: dict[str, float] = {}
    tokens: list[str] = cfg["tokens"]

    httpx_clients: dict[int, Any] = {}
    if cfg["client"] == "httpx":
        import httpx

        per_port = max(1, cfg["clients"] // len(ports) + 1)
        for p in ports:
            httpx_clients[p] = httpx.AsyncClient(
                base_url=f"http://{S.HOST}:{p}",
                limits=httpx.Limits(max_connections=per_port, max_keepalive_connections=per_port),
                timeout=httpx.Timeout(30.0),
            )

    def usage() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    async def cpu_sampler() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        cpu["from"] = usage()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        cpu["to"] = usage()

    async def client(i: int) -> None:
        port = ports[(cfg["offset"] + i) % len(ports)]
        rng = random.Random(cfg["seed"] * 100_003 + i)
        token = tokens[(cfg["offset"] + i) % len(tokens)]
        auth = {"Authorization": f"Bearer {token}"}
        raw = S.RawConn(S.HOST, port, auth=token) if not httpx_clients else None
        hx = httpx_clients.get(port)
        prefix = f"{cfg['prefix']}-{cfg['offset'] + i}-"
        n = 0
        # Open loop (--rate): this client's k-th request is due at a fixed time, whatever
        # happened to the one before, and its latency counts from then: a slow answer delays
        # the next send, and that wait counts too (no coordinated omission).
        rate = cfg["rate"] / cfg["total_clients"] if cfg["rate"] else 0.0
        phase = rng.random() / rate if rate else 0.0
        if raw is not None:
            # Connect before the clock starts: 200 connects at once can see a SYN dropped and
            # retried a second or three later, which would show as one request's latency.
            with contextlib.suppress(OSError):
                await raw.connect()
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        try:
            while time.monotonic() < end:
                n += 1
                due = start + phase + (n - 1) / rate if rate else 0.0
                if rate and due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                if mode == "reads":
                    kind, method, body = "read", "GET", None
                    path = f"/api/v1/requests/{rng.choice(ids)}"
                elif mode == "healthz":
                    kind, method, path, body = "read", "GET", "/healthz", None
                else:
                    if mode == "mixed":
                        kind = "pending" if rng.random() < share else "allowed"
                    else:
                        kind = mode
                    method, path = "POST", "/api/v1/requests"
                    body = (templates[kind] % f"{prefix}{n}").encode()
                t0 = min(due, time.monotonic()) if rate else time.monotonic()
                try:
                    if raw is not None:
                        status, _ = await raw.request(method, path, body)
                    else:
                        r = await hx.request(
                            method,
                            path,
                            content=body,
                            headers={**auth, "content-type": "application/json"} if body else auth,
                        )
                        status = r.status_code
                except Exception as err:  # a boundary: count it, back off a little, go on
                    if time.monotonic() >= measure_from:
                        errors[type(err).__name__] += 1
                    await asyncio.sleep(0.05)
                    continue
                t1 = time.monotonic()
                if measure_from <= t1 <= end:
                    if 200 <= status < 300:
                        lat[kind].append(t1 - t0)
                        statuses[f"{kind}:{status}"] += 1
                    else:
                        errors[f"HTTP {status}"] += 1
        finally:
            if raw is not None:
                raw.close()

    sampler = asyncio.create_task(cpu_sampler())
    await asyncio.gather(*(client(i) for i in range(cfg["clients"])))
    await sampler
    for c in httpx_clients.values():
        await c.aclose()
    return {
        "lat": lat,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "cpu": cpu.get("to", 0.0) - cpu.get("from", 0.0),
    }


def _worker(conn: Any) -> None:
    """A client process: say ready, take a config, run it, send the figures back."""
    S.raise_nofile()
    if conn.recv() == "import-httpx":
        import httpx  # noqa: F401  (imported before the clock starts)
    conn.send("ready")
    cfg = conn.recv()
    conn.send(S.run(_load(cfg)))
    conn.close()


# --------------------------------------------------------------------------- driver


def micro(url: str, token: str, n: int) -> None:
    """Per-call cost of the core work behind each route: in this process, one thread."""
    from sluicegate.model import Action, Requester
    from sluicegate.policy import load_policy
    from sluicegate.server.api._answers import request_out
    from sluicegate.server.wiring import ServerState
    from sluicegate.settings import Settings
    from sluicegate.store import Store
    from sluicegate.workflow import Workflow as Approvals

    store = Store(url)
    policy = load_policy(S.POLICY)
    approvals = Approvals(store, policy)
    st = ServerState.build(
        Settings(db_url=url, policy=S.POLICY, secret_key=S.secret_key(url)), store, policy
    )
    actions = {
        kind: Action.model_validate(json.loads((S.EXAMPLES / "actions" / name).read_text()))
        for kind, name in (("pending", "pii-export.json"), ("allowed", "routine-read.json"))
    }
    requester = Requester(**S.REQUESTER, principal="svc-bench")
    tag = uuid.uuid4().hex[:8]
    ids: list[str] = []

    def timed(label: str, fn: Any) -> None:
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            fn(i)
        w, c = time.perf_counter() - w0, time.process_time() - c0
        print(f"  {label:44} {w / n * 1e6:7.0f} us wall  {c / n * 1e6:7.0f} us CPU per call")

    def open_pending(i: int) -> None:
        a = approvals.open(
            idempotency_key=f"micro-{tag}-p{i}", action=actions["pending"], requester=requester
        )
        assert a.request is not None
        ids.append(str(a.request.id))

    print(f"micro (in-process, one thread, no HTTP; {n:,} calls each):")
    timed("Store.token_info (auth, every request)", lambda i: store.token_info(token))
    timed(
        "Approvals.open -> allowed",
        lambda i: approvals.open(
            idempotency_key=f"micro-{tag}-a{i}", action=actions["allowed"], requester=requester
        ),
    )
    timed("Approvals.open -> pending (new request)", open_pending)
    timed("Store.get (request + decisions)", lambda i: store.get(ids[i]))
    req = store.get(ids[0])
    timed("request_out(...).model_dump_json()", lambda i: request_out(st, req).model_dump_json())
    store.close()


def run_phase(
    mode: str,
    servers: list[S.ServerProcess],
    tokens: list[str],
    ids: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    procs, pipes = [], []
    for _ in range(args.client_procs):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child,), daemon=True)
        p.start()
        parent.send("import-httpx" if args.client == "httpx" else "go")
        procs.append(p)
        pipes.append(parent)
    for pipe in pipes:
        if not pipe.poll(60):
            raise SystemExit("a client process did not start")
        pipe.recv()
    now = time.monotonic()
    start = now + 0.3
    measure_from = start + args.warmup
    end = measure_from + args.seconds
    base, extra = divmod(args.clients, args.client_procs)
    offset = 0
    for k, pipe in enumerate(pipes):
        n = base + (1 if k < extra else 0)
        pipe.send(
            {
                "ports": [s.port for s in servers],
                "mode": mode,
                "ids": ids,
                "pending_share": args.pending_share,
                "start": start,
                "measure_from": measure_from,
                "end": end,
                "tokens": tokens,
                "client": args.client,
                "clients": n,
                "total_clients": args.clients,
                "rate": args.rate,
                "offset": offset,
                "seed": args.seed + k,
                "prefix": f"{mode}-{uuid.uuid4().hex[:8]}-{k}",
            }
        )
        offset += n
    time.sleep(max(0.0, measure_from - time.monotonic()))
    cpu0 = [s.cpu() for s in servers]
    m0 = S.machine_cpu()
    spy = None
    if args.profile:
        out = os.path.join(args.profile, f"{mode}.txt")
        spy = (S.start_py_spy(servers[0].pids()[-1], args.seconds, out), out)
    time.sleep(max(0.0, end - time.monotonic()))
    cpu1 = [s.cpu() for s in servers]
    m1 = S.machine_cpu()
    results = []
    for pipe in pipes:
        if not pipe.poll(args.seconds + 120):
            raise SystemExit("a client process did not report")
        results.append(pipe.recv())
    for p in procs:
        p.join(timeout=10)
    lat: dict[str, list[float]] = {"pending": [], "allowed": [], "read": []}
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    client_cpu = 0.0
    for r in results:
        for k, v in r["lat"].items():
            lat[k].extend(v)
        statuses.update(r["statuses"])
        errors.update(r["errors"])
        client_cpu += r["cpu"]
    profile = None
    if spy is not None:
        try:
            spy[0].wait(timeout=60)
        except Exception:
            spy[0].kill()
        profile = S.summarise_profile(spy[1])
    return {
        "profile": profile,
        "lat": lat,
        "statuses": statuses,
        "errors": errors,
        "server_cpu": [(b - a) / args.seconds for a, b in zip(cpu0, cpu1, strict=True)],
        "client_cpu": client_cpu / args.seconds,
        "machine_busy": (m1[0] - m0[0]) / max(1.0, m1[1] - m0[1]),
    }


def report(mode: str, r: dict[str, Any], seconds: float) -> None:
    lat = r["lat"]
    rows = []
    if mode == "reads":
        rows.append(("reads (GET /requests/{id})", lat["read"]))
    elif mode == "healthz":
        rows.append(("GET /healthz (reference)", lat["read"]))
    elif mode == "mixed":
        rows.append(("opens, mixed (all)", lat["pending"] + lat["allowed"]))
        rows.append(("  of which pending (201)", lat["pending"]))
        rows.append(("  of which allowed (200)", lat["allowed"]))
    else:
        label = "opens, pending (201)" if mode == "pending" else "opens, allowed (200)"
        rows.append((label, lat[mode]))
    for label, vals in rows:
        print(f"  {label:28} {len(vals) / seconds:8,.0f} /s   {S.summary_ms(vals)}")
    errs = sum(r["errors"].values())
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "none"
    print(f"  {'errors (non-2xx, conn.)':28} {errs:8,}      {detail}")
    srv = " + ".join(f"{c * 100:.0f}%" for c in r["server_cpu"])
    print(
        f"  {'CPU':28} server {srv} of one core; load generator {r['client_cpu'] * 100:.0f}%; "
        f"machine busy {r['machine_busy'] * 100:.0f}% of {os.cpu_count()} cores"
    )
    if r.get("profile"):
        print("  py-spy profile of one server process, measured window:")
        print("    " + r["profile"].replace("\n", "\n    "))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", help="postgresql://... (default: a fresh SQLite file)")
    ap.add_argument(
        "--workers", type=int, default=1, help="`serve --workers N`: N processes, one port"
    )
    ap.add_argument(
        "--replicas", type=int, default=1, help="separate `serve` processes on their own ports"
    )
    ap.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open loop: offer this many requests/s in all (spread over the clients); "
        "default 0 = closed loop, each client sends again as soon as it has its answer",
    )
    ap.add_argument("--phases", default=",".join(PHASES), help=f"of {','.join(PHASES)}")
    ap.add_argument("--clients", type=int, default=200, help="concurrent clients (200)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (2)")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw")
    ap.add_argument("--client-procs", type=int, default=1, help="load generator processes (1)")
    ap.add_argument("--pending-share", type=float, default=0.5, help="pending share in mixed")
    ap.add_argument("--read-ids", type=int, default=50_000, help="requests read in 'reads'")
    ap.add_argument("--tokens", type=int, default=8, help="request tokens the clients share")
    ap.add_argument("--log-level", default="info", help="server log level (info: serve's default)")
    ap.add_argument(
        "--profile",
        metavar="DIR",
        help="record the server with py-spy (--gil) in each measured window; stacks to DIR",
    )
    ap.add_argument("--micro", type=int, default=0, metavar="N", help="time core calls N times")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir / PostgreSQL schema")
    args = ap.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if set(phases) - set(PHASES):
        ap.error(f"unknown phases {sorted(set(phases) - set(PHASES))}")
    args.seconds = min(max(1.0, args.seconds), 600.0)
    args.clients = max(1, min(args.clients, 5000))
    args.client_procs = max(1, min(args.client_procs, args.clients, 16))

    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    S.raise_nofile()
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        "the load generator runs on the same machine and competes with the server for CPU"
    )
    with S.FreshDatabase(args.db, keep=args.keep, tag="srvbench") as db:
        req_token = S.create_token(db.url, "svc-bench", "request")
        if args.micro:
            micro(db.url, req_token, args.micro)
        servers = [
            S.ServerProcess(db.url, db.workdir, log_level=args.log_level, n=k, workers=args.workers)
            for k in range(args.replicas)
        ]
        try:
            for s in servers:
                s.wait_ready()
            print(
                f"server: {args.replicas} x `sluicegate serve --workers {args.workers}` "
                f"(uvicorn; CPU and RSS summed over each one's processes), "
                f"log level {args.log_level}, on {db.where}"
            )
            loop_kind = (
                f"open loop at {args.rate:,.0f} requests/s offered in all"
                if args.rate
                else "closed loop (each client sends again when answered)"
            )
            print(
                f"load: {args.clients} concurrent clients (one keep-alive connection each), "
                f"{loop_kind}, client={args.client} on {S.loop_name()}, "
                f"{args.client_procs} process(es); "
                f"{args.warmup:g} s warm-up + {args.seconds:g} s measured per phase"
            )
            ids: list[str] = []
            if "reads" in phases:
                from bench_inbox import seed

                t0 = time.monotonic()
                ids = seed(db.url, args.read_ids, 0, jobs=50, datasets=1000)
                print(
                    f"seeded {len(ids):,} pending requests for reads in "
                    f"{time.monotonic() - t0:.1f} s (not measured)"
                )
            from sluicegate.store import Store

            with Store(db.url) as store:
                tokens = [
                    store.create_token(f"svc-bench-{k}", "request")
                    for k in range(max(1, args.tokens))
                ]
            rss0 = [s.rss_kib() for s in servers]
            for mode in phases:
                print(f"\nphase {mode}:")
                r = run_phase(mode, servers, tokens, ids, args)
                report(mode, r, args.seconds)
            rss1 = [s.rss_kib() for s in servers]
            print(
                "\nserver RSS before/after the phases: "
                + ", ".join(f"{S.mib(a)} -> {S.mib(b)}" for a, b in zip(rss0, rss1, strict=True))
                + f"; server log lines at ERROR: {sum(s.errors_logged() for s in servers)}"
            )
            print("goals (200 clients, 2 cores): opens >= 1,000/s, reads >= 3,000/s, p99 <= 50 ms")
            print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            for s in servers:
                s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
