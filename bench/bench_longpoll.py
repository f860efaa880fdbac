"""Long-poll benchmark: 10,000 requests waiting at once, and how fast a decision wakes one.

What it measures
  The real server (``sluicegate serve``, examples/policy.yaml) runs as a subprocess on a free
  127.0.0.1 port with RLIMIT_NOFILE raised (``preexec_fn``), on a fresh SQLite file (default)
  or a fresh PostgreSQL schema (``--db postgresql://...``; ``--workers N`` runs N replicas on N
  ports: the waits are spread over them and each decision is sent to a *different* replica
  than its waiter's, so every wake-up crosses PostgreSQL ``LISTEN``/``NOTIFY``).

  1. Seed (not measured as a goal): ``--n`` (10,000) pending requests (PII exports, 2
     approvals from data-stewards) are opened with ``Approvals.open`` in the bench process
     (``--seed store``, the same rows the API writes, faster) or through the API (``--seed
     api``).
  2. Wait: ``--client-procs`` (1) client processes open one connection per request (at most
     ``--ramp`` connects in flight per process) and send ``GET /api/v1/requests/{id}/wait
     ?timeout=120`` on each; a wait that comes back still pending is sent again at once (what
     a real client does). The script reports how long it took until the server's
     ``sluicegate_long_polls_waiting`` gauge (GET /metrics) reached the number of waits sent.
  3. Steady state: for ``--steady`` (10) s with everything waiting and nothing decided: the
     server's CPU (utime+stime from /proc/<pid>/stat, % of one core), RSS and threads.
  4. Decide: ``--sample`` (500) of the waiting requests, evenly spread over the ids and over
     ``--decide-over`` (25) s, are approved through the API (POST .../decisions by alice, then
     bob, each with a review token; the second approval ends the request). The latency is the
     waiter's clock (time.monotonic, system-wide) when its wait response arrived minus the
     decider's clock just before bob's POST was sent: what a reviewer clicking "approve"
     waits for the pipeline to move on, the decision's own commit included. Every decision
     has its own connections, so the schedule holds however slow the server is; decisions
     not done ``--decide-limit`` (180) s after the planned end are abandoned, and waits not
     back ``--grace`` (30) s after that count as missing. Also printed: the same measured
     from when bob's POST *returned* (the wake-up alone), and the decision POSTs' latencies.
  5. After: the clients close every connection; the server's RSS just after, and again once
     the server has let go of the abandoned waits (its gauge reaches 0; bounded by
     ``--drain`` seconds, 130 by default: a wait whose client left lives until its timeout).

  Memory: VmRSS / VmHWM of the server from /proc/<pid>/status: idle (after start), after
  seeding, with everything waiting, after the decisions, after the clients left, drained.
  The peak is VmHWM (the kernel's high-water mark of the RSS) read once the decisions are
  done, so it covers the ramp of the waits, the steady state and the decisions; a waiter's
  cost is that peak minus the RSS just before the waits began, over the number of waits.

  The client is a minimal HTTP/1.1 client on raw asyncio streams over uvloop (see
  bench/_server.py): about 10,000 sockets and 10,000 small tasks per process, cheap enough
  to stay out of the server's way; ``--client httpx`` uses one ``httpx.AsyncClient`` per
  process instead, for comparison. Everything runs on the same machine: the load generator
  competes with the server for its cores.

Goals from the issue (27, item 4): server RSS <= 250 MB with 10,000 waiting (<= 25 KiB a
waiter); p95 decision-to-return <= 50 ms, measured from the decision's send. The script
asserts nothing; it prints figures.

Run it from the repository root with the core and its server extra installed::

    python bench/bench_longpoll.py                       # SQLite, 10,000 waits
    python bench/bench_longpoll.py --db postgresql://postgres@127.0.0.1:5432/test
    python bench/bench_longpoll.py --db postgresql://postgres@127.0.0.1:5432/test --workers 2
    python bench/bench_longpoll.py --n 2000 --sample 200 --drain 0    # a quick look
    python bench/bench_longpoll.py --profile /tmp/prof   # py-spy the server while waiting

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
import sys
import time
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _server as S  # the shared helper next to this file

TERMINAL = {"allowed", "denied", "approved", "expired", "cancelled"}


# --------------------------------------------------------------------------- waiter process


async def _wait_all(cfg: dict[str, Any], pipe: Any) -> dict[str, Any]:
    """One connection and one long poll per id; report when all are sent, stop on request."""
    ids: list[str] = cfg["ids"]
    ports: list[int] = cfg["ports"]
    token: str = cfg["token"]
    timeout = cfg["timeout"]
    returned: dict[str, tuple[float, str]] = {}
    errors: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    sem = asyncio.Semaphore(cfg["ramp"])
    sent_all = asyncio.Event()
    pending_sends = len(ids)
    t_start = time.monotonic()
    ramp_done: list[float] = []

    def sent_one() -> None:
        nonlocal pending_sends
        pending_sends -= 1
        if pending_sends == 0:
            ramp_done.append(time.monotonic() - t_start)
            sent_all.set()

    async def raw_waiter(k: int, rid: str) -> None:
        conn = S.RawConn(S.HOST, ports[cfg["port_of"][k]], auth=token)
        path = f"/api/v1/requests/{rid}/wait?timeout={timeout:g}"
        tries = 0
        try:
            async with sem:
                try:
                    await asyncio.wait_for(conn.connect(), 60)
                    conn.send("GET", path)
                    counts["sent"] += 1
                except (OSError, asyncio.TimeoutError) as err:
                    errors[f"connect: {type(err).__name__}"] += 1
                    return
                finally:
                    sent_one()
            while True:
                try:
                    status, body = await conn.recv()
                except S.HTTPError as err:
                    # A reset before any answer (an overflowing accept queue): reconnect and
                    # send again, as a real client would; a few times, with a pause.
                    errors[f"recv: {str(err).split(':')[0]}"] += 1
                    tries += 1
                    if tries > 5:
                        return
                    await asyncio.sleep(1.0)
                    try:
                        await asyncio.wait_for(conn.connect(), 60)
                        conn.send("GET", path)
                        counts["resent after an error"] += 1
                    except (OSError, asyncio.TimeoutError) as err2:
                        errors[f"reconnect: {type(err2).__name__}"] += 1
                        return
                    continue
                t = time.monotonic()
                if status != 200:
                    errors[f"HTTP {status}"] += 1
                    return
                st = json.loads(body)["status"]
                if st in TERMINAL:
                    returned[rid] = (t, st)
                    return
                counts["repolls"] += 1
                if conn.writer is None:
                    await conn.connect()
                conn.send("GET", path)
        finally:
            conn.close()

    hx_clients: dict[int, Any] = {}

    async def httpx_waiter(k: int, rid: str) -> None:
        port = ports[cfg["port_of"][k]]
        client = hx_clients[port]
        path = f"/api/v1/requests/{rid}/wait"
        first = True
        while True:
            try:
                if first:
                    async with sem:
                        req = client.get(path, params={"timeout": timeout})
                        fut = asyncio.ensure_future(req)
                        counts["sent"] += 1
                        sent_one()
                        first = False
                    r = await fut
                else:
                    r = await client.get(path, params={"timeout": timeout})
            except Exception as err:  # a boundary: count and stop this waiter
                errors[type(err).__name__] += 1
                if first:
                    sent_one()
                return
            t = time.monotonic()
            if r.status_code != 200:
                errors[f"HTTP {r.status_code}"] += 1
                return
            st = r.json()["status"]
            if st in TERMINAL:
                returned[rid] = (t, st)
                return
            counts["repolls"] += 1

    if cfg["client"] == "httpx":
        import httpx

        for p in set(ports):
            hx_clients[p] = httpx.AsyncClient(
                base_url=f"http://{S.HOST}:{p}",
                headers={"Authorization": f"Bearer {token}"},
                limits=httpx.Limits(max_connections=len(ids) + 10, max_keepalive_connections=0),
                timeout=httpx.Timeout(timeout + 60, connect=60),
            )
        waiter = httpx_waiter
    else:
        waiter = raw_waiter

    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(waiter(k, rid)) for k, rid in enumerate(ids)]
    if not tasks:
        sent_all.set()
    await sent_all.wait()
    pipe.send({"sent": counts["sent"], "errors": dict(errors), "ramp_s": ramp_done[:1]})
    # Wait for "stop" from the parent (bounded by the parent's own deadlines).
    await loop.run_in_executor(None, pipe.recv)
    t_stop = time.monotonic()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in hx_clients.values():
        with contextlib.suppress(Exception):
            await c.aclose()
    return {
        "returned": returned,
        "errors": dict(errors),
        "counts": dict(counts),
        "still_waiting": len(ids) - len(returned),
        "close_s": time.monotonic() - t_stop,
    }


def _waiter_proc(cfg: dict[str, Any], pipe: Any) -> None:
    S.raise_nofile()
    pipe.send(S.run(_wait_all(cfg, pipe)))
    pipe.close()


# --------------------------------------------------------------------------- driver


def _waiting(servers: list[S.ServerProcess]) -> int | None:
    """The sum of the servers' ``sluicegate_long_polls_waiting`` gauges (None if unreadable)."""

    async def one(port: int) -> float | None:
        conn = S.RawConn(S.HOST, port)
        try:
            status, body = await asyncio.wait_for(conn.request("GET", "/metrics"), 20)
        except (S.HTTPError, asyncio.TimeoutError):
            return None
        finally:
            conn.close()
        if status != 200:
            return None
        return S.metric_value(body.decode(), "sluicegate_long_polls_waiting")

    async def all_() -> list[float | None]:
        return await asyncio.gather(*(one(s.port) for s in servers))

    vals = S.run(all_())
    if any(v is None for v in vals):
        return None
    return int(sum(v for v in vals if v is not None))


def _mem(servers: list[S.ServerProcess]) -> str:
    parts = []
    for s in servers:
        parts.append(
            f"VmRSS {S.mib(s.rss_kib())} (VmHWM {S.mib(s.hwm_kib())}, "
            f"{S.proc_threads(s.pid)} threads)"
        )
    return "; ".join(parts)


def _seed_store(url: str, n: int) -> list[str]:
    """Open ``n`` pending requests straight through the workflow (same rows as the API)."""
    import uuid

    from sluicegate.model import Action, Requester
    from sluicegate.policy import load_policy
    from sluicegate.store import Store
    from sluicegate.workflow import Workflow as Approvals

    action = Action.model_validate(
        json.loads((S.EXAMPLES / "actions" / "pii-export.json").read_text())
    )
    requester = Requester(**S.REQUESTER, principal="svc-bench")
    tag = uuid.uuid4().hex[:8]
    ids = []
    with Store(url) as store:
        approvals = Approvals(store, load_policy(S.POLICY))
        for i in range(n):
            answer = approvals.open(
                idempotency_key=f"lp-{tag}-{i}", action=action, requester=requester
            )
            assert answer.request is not None and answer.created
            ids.append(str(answer.request.id))
    return ids


def _decide(
    sample: list[tuple[str, int]],
    tokens: dict[str, str],
    spread_s: float,
    limit_s: float,
) -> tuple[dict[str, tuple[float, float]], list[float], Counter[str]]:
    """Approve each (id, decider port) twice (alice, then bob), spread over ``spread_s``.

    Every decision has its own connections, so the schedule holds however slow the server
    answers; whatever is not done ``limit_s`` after the start is abandoned (and counted).
    Returns (when bob's POST was sent, when it returned) per id (monotonic), all POST
    latencies, and errors.
    """
    decided: dict[str, tuple[float, float]] = {}
    post_lat: list[float] = []
    errors: Counter[str] = Counter()
    body = json.dumps({"verdict": "approve", "comment": "bench"}).encode()

    async def go() -> None:
        t0 = time.monotonic() + 0.2
        step = spread_s / max(1, len(sample))

        async def one(k: int, rid: str, port: int) -> None:
            await asyncio.sleep(max(0.0, t0 + k * step - time.monotonic()))
            for who in ("alice", "bob"):
                conn = S.RawConn(S.HOST, port, auth=tokens[who])
                try:
                    a = time.monotonic()
                    status, resp = await conn.request(
                        "POST", f"/api/v1/requests/{rid}/decisions", body
                    )
                    b = time.monotonic()
                except S.HTTPError as err:
                    errors[f"{who}: {err}"] += 1
                    return
                finally:
                    conn.close()
                if status != 200:
                    errors[f"{who}: HTTP {status}"] += 1
                    return
                post_lat.append(b - a)
                if who == "bob":
                    if json.loads(resp)["status"] != "approved":
                        errors["bob: not approved"] += 1
                        return
                    decided[rid] = (a, b)

        tasks = [asyncio.create_task(one(k, rid, port)) for k, (rid, port) in enumerate(sample)]
        _, late = await asyncio.wait(tasks, timeout=limit_s)
        for t in late:
            t.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            errors[f"not done within {limit_s:g} s"] += len(late)

    S.run(go())
    return decided, post_lat, errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", help="postgresql://... (default: a fresh SQLite file)")
    ap.add_argument("--workers", type=int, default=1, help="server replicas (PostgreSQL only)")
    ap.add_argument("--n", type=int, default=10_000, help="requests waiting at once (10000)")
    ap.add_argument("--timeout", type=float, default=120.0, help="?timeout= of each wait (120)")
    ap.add_argument("--sample", type=int, default=500, help="waits decided (500)")
    ap.add_argument("--decide-over", type=float, default=25.0, help="spread decisions over S s")
    ap.add_argument("--steady", type=float, default=10.0, help="seconds of steady state (10)")
    ap.add_argument("--settle", type=float, default=180.0, help="max s for all waits to arrive")
    ap.add_argument(
        "--decide-limit", type=float, default=180.0, help="max s for decisions past the plan"
    )
    ap.add_argument("--grace", type=float, default=30.0, help="max s to wait for late returns")
    ap.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="K=V",
        help="extra environment for the server (e.g. MALLOC_ARENA_MAX=2); repeatable",
    )
    ap.add_argument("--drain", type=float, default=130.0, help="max s for the server to drain")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw")
    ap.add_argument("--client-procs", type=int, default=1, help="waiter processes (1)")
    ap.add_argument("--ramp", type=int, default=200, help="connects in flight per process")
    ap.add_argument(
        "--seed",
        choices=("store", "api"),
        default="store",
        help="open the requests with Approvals.open in this process (store) or via the API",
    )
    ap.add_argument("--seed-concurrency", type=int, default=50, help="connections for --seed api")
    ap.add_argument("--log-level", default="info", help="server log level (info: serve's default)")
    ap.add_argument("--profile", metavar="DIR", help="py-spy the server in steady state")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir / PostgreSQL schema")
    args = ap.parse_args(argv)
    if args.workers > 1 and not args.db:
        ap.error("--workers > 1 needs --db postgresql://... (one process on SQLite)")
    args.n = max(1, min(args.n, 50_000))
    args.sample = max(1, min(args.sample, args.n))
    args.client_procs = max(1, min(args.client_procs, 16))
    for name in ("settle", "grace", "drain", "steady", "decide-over", "decide-limit"):
        attr = name.replace("-", "_")
        setattr(args, attr, min(max(0.0, getattr(args, attr)), 900.0))
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)

    nofile = S.raise_nofile()
    need = args.n // args.client_procs + 1000
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"the clients run on the same machine and compete with the server for CPU"
    )
    if nofile < need:
        print(f"warning: RLIMIT_NOFILE is {nofile}, each waiter process needs ~{need}")
    with S.FreshDatabase(args.db, keep=args.keep, tag="lpbench") as db:
        req_token = S.create_token(db.url, "svc-bench", "request")
        review = {who: S.create_token(db.url, who, "review") for who in ("alice", "bob")}
        env = dict(kv.split("=", 1) for kv in args.server_env)
        servers = [
            S.ServerProcess(db.url, db.workdir, log_level=args.log_level, n=k, env=env)
            for k in range(args.workers)
        ]
        procs: list[Any] = []
        pipes: list[Any] = []
        try:
            for s in servers:
                s.wait_ready()
            time.sleep(1.0)
            print(
                f"server: {args.workers} x `sluicegate serve` (log level {args.log_level}) on "
                f"{db.where}; RLIMIT_NOFILE {nofile} (server raised likewise)"
                + (f"; server env {env}" if env else "")
            )
            print(f"memory, idle:             {_mem(servers)}")

            t0 = time.monotonic()
            if args.seed == "api":
                ids = S.seed_pending(servers[0].port, req_token, args.n, args.seed_concurrency)
                how = f"through the API ({args.seed_concurrency} connections)"
            else:
                ids = _seed_store(db.url, args.n)
                how = "with Approvals.open in the bench process"
            dt = time.monotonic() - t0
            print(
                f"seeded {len(ids):,} pending requests {how} in {dt:.1f} s "
                f"({len(ids) / dt:,.0f}/s; not a goal)"
            )
            print(f"memory, after seeding:    {_mem(servers)}")

            # ---- start the waits
            ctx = mp.get_context("spawn")
            nports = len(servers)
            chunks = [ids[k :: args.client_procs] for k in range(args.client_procs)]
            wait_port: dict[str, int] = {}
            for k, chunk in enumerate(chunks):
                port_of = [(k + j * args.client_procs) % nports for j in range(len(chunk))]
                for rid, pi in zip(chunk, port_of, strict=True):
                    wait_port[rid] = pi
                cfg = {
                    "ids": chunk,
                    "ports": [s.port for s in servers],
                    "port_of": port_of,
                    "token": req_token,
                    "timeout": args.timeout,
                    "client": args.client,
                    "ramp": args.ramp,
                }
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_waiter_proc, args=(cfg, child), daemon=True)
                procs.append(p)
                pipes.append(parent)
            cpu0 = [s.cpu() for s in servers]
            before_waits = [s.rss_kib() for s in servers]
            t_wait0 = time.monotonic()
            for p in procs:
                p.start()
            sent = 0
            send_errors: Counter[str] = Counter()
            ramp_s = []
            for pipe in pipes:
                if not pipe.poll(args.settle + 60):
                    raise SystemExit("a waiter process did not report its sends")
                info = pipe.recv()
                sent += info["sent"]
                send_errors.update(info["errors"])
                ramp_s += info["ramp_s"]
            t_sent = time.monotonic() - t_wait0
            waiting = _waiting(servers)
            deadline = t_wait0 + args.settle
            while (waiting is None or waiting < sent) and time.monotonic() < deadline:
                time.sleep(1.0)
                waiting = _waiting(servers)
            t_all = time.monotonic() - t_wait0
            cpu1 = [s.cpu() for s in servers]
            ramp_cpu = " + ".join(
                f"{(b - a) / t_all * 100:.0f}%" for a, b in zip(cpu0, cpu1, strict=True)
            )
            print(
                f"\nwaits: {sent:,} sent by {args.client_procs} {args.client} client process(es) "
                f"in {t_sent:.1f} s (send errors: {dict(send_errors) or 'none'}); server gauge "
                f"{waiting if waiting is not None else '?'} waiting after {t_all:.1f} s "
                f"(server CPU meanwhile {ramp_cpu} of one core)"
            )
            if waiting is None or waiting < sent:
                print(f"  not all waits arrived within --settle {args.settle:g} s")

            # ---- steady state
            cpu0 = [s.cpu() for s in servers]
            m0 = S.machine_cpu()
            spy = None
            if args.profile and args.steady >= 1:
                out = os.path.join(args.profile, "steady.txt")
                spy = (S.start_py_spy(servers[0].pid, args.steady, out), out)
            time.sleep(args.steady)
            cpu1 = [s.cpu() for s in servers]
            m1 = S.machine_cpu()
            steady = args.steady or 1.0
            busy = (m1[0] - m0[0]) / max(1.0, m1[1] - m0[1])
            print(
                f"steady state, {args.steady:g} s with everything waiting: server CPU "
                + " + ".join(
                    f"{(b - a) / steady * 100:.0f}%" for a, b in zip(cpu0, cpu1, strict=True)
                )
                + f" of one core, machine busy {busy * 100:.0f}% of {os.cpu_count()} cores"
            )
            print(f"memory, {sent:,} waiting:   {_mem(servers)}")
            if spy is not None:
                with contextlib.suppress(Exception):
                    spy[0].wait(timeout=60)
                print("  py-spy profile of the server in steady state:")
                print("    " + S.summarise_profile(spy[1]).replace("\n", "\n    "))

            # ---- decide a sample
            step = max(1, len(ids) // args.sample)
            picked = ids[::step][: args.sample]
            # A different replica than the waiter's when there are several: LISTEN/NOTIFY.
            sample = [(rid, servers[(wait_port[rid] + 1) % nports].port) for rid in picked]
            cpu0 = [s.cpu() for s in servers]
            t_dec0 = time.monotonic()
            decided, post_lat, dec_errors = _decide(
                sample, review, args.decide_over, args.decide_over + args.decide_limit
            )
            t_dec = time.monotonic() - t_dec0
            cpu1 = [s.cpu() for s in servers]
            print(
                f"\ndecisions: {len(decided):,} of {len(sample):,} requests approved (2 POSTs "
                f"each) over {t_dec:.1f} s (planned {args.decide_over:g} s); errors: "
                f"{dict(dec_errors) or 'none'}; server CPU "
                + " + ".join(
                    f"{(b - a) / t_dec * 100:.0f}%" for a, b in zip(cpu0, cpu1, strict=True)
                )
            )
            print(f"  decision POST latency:     {S.summary_ms(post_lat)}")

            # ---- collect
            grace_end = time.monotonic() + args.grace
            while time.monotonic() < grace_end:
                w = _waiting(servers)
                if w is not None and w <= sent - len(decided):
                    break
                time.sleep(0.5)
            print(f"memory, after decisions:  {_mem(servers)}")
            # The high-water mark once the waits have come, stayed and been answered: the
            # peak, not a steady-state sample that a burst could have exceeded.
            peaks = [s.hwm_kib() for s in servers]
            for pipe in pipes:
                pipe.send("stop")
            returned: dict[str, tuple[float, str]] = {}
            wait_errors: Counter[str] = Counter()
            counts: Counter[str] = Counter()
            for pipe in pipes:
                if not pipe.poll(120):
                    raise SystemExit("a waiter process did not report")
                r = pipe.recv()
                returned.update(r["returned"])
                wait_errors.update(r["errors"])
                counts.update(r["counts"])
            for p in procs:
                p.join(timeout=30)
            lat = [returned[rid][0] - t[0] for rid, t in decided.items() if rid in returned]
            lat_woken = [returned[rid][0] - t[1] for rid, t in decided.items() if rid in returned]
            missing = [rid for rid in decided if rid not in returned]
            unexpected = len(set(returned) - set(decided))
            neg = sum(1 for v in lat_woken if v < 0)
            print(
                f"decision -> wait return:   {S.summary_ms(lat)}  "
                f"(from just before bob's POST was sent; n={len(lat):,}; missing "
                f"{len(missing)}; returned without a decision {unexpected})"
            )
            print(
                f"  from bob's POST's response: {S.summary_ms(lat_woken)} ({neg} answered "
                "before the POST's response)"
            )
            print(
                f"waits re-sent after a pending answer (timeout): {counts.get('repolls', 0):,}; "
                f"re-sent after a connection error: {counts.get('resent after an error', 0):,}; "
                f"wait errors: {dict(wait_errors) or 'none'}"
            )

            # ---- after
            time.sleep(2.0)
            print(f"memory, clients gone:     {_mem(servers)}")
            if args.drain > 0:
                t_d0 = time.monotonic()
                cpu0 = [s.cpu() for s in servers]
                w = _waiting(servers)
                while (w is None or w > 0) and time.monotonic() - t_d0 < args.drain:
                    time.sleep(1.0)
                    w = _waiting(servers)
                td = time.monotonic() - t_d0
                cpu1 = [s.cpu() for s in servers]
                print(
                    f"after the clients left, the server still held {w if w is not None else '?'}"
                    f" abandoned waits after {td:.0f} s (server CPU meanwhile "
                    + " + ".join(
                        f"{(b - a) / td * 100:.0f}%" for a, b in zip(cpu0, cpu1, strict=True)
                    )
                    + ")"
                )
                print(f"memory, drained:          {_mem(servers)}")
            print(
                f"\nserver log lines at ERROR: {sum(s.errors_logged() for s in servers)}; "
                f"peak RSS (VmHWM) with {sent:,} waiting: "
                + ", ".join(
                    f"{S.mib(peak)} = {peak * 1024 / 1e6:.0f} MB "
                    f"({(peak - base) / max(1, sent / len(servers)):.1f} KiB a waiter over the "
                    f"{S.mib(base)} before the waits)"
                    for peak, base in zip(peaks, before_waits, strict=True)
                )
            )
            print(
                "goals: server RSS <= 250 MB with 10,000 waiting (<= 25 KiB a waiter); "
                "p95 decision->return <= 50 ms from the decision's send"
            )
            print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            for pipe in pipes:
                with contextlib.suppress(Exception):
                    pipe.send("stop")
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.terminate()
            for s in servers:
                s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
