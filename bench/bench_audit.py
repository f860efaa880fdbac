"""Audit log benchmark: verify and export a large hash-chained audit log, with memory.

What it measures
  1. Fill (not a goal, reported apart): N realistic audit rows (request lifecycles:
     request.created, policy.allowed, notification.sent, decision.recorded, request.approved,
     request.denied, gate.released, ...) with correctly chained hashes computed by
     ``sluicegate.audit.row_hash``, bulk-inserted 10,000 at a time straight into
     ``audit_events``; the ``audit_head`` row is then set to the last (seq, hash).
  2. ``audit.verify(engine)``: wall time, rows/s, and whether the chain is intact.
  3. ``audit.export(engine, out, "jsonl")`` and ``"csv"`` of every row to a file, and two
     filtered exports (``ExportFilter(reviewer=...)``, ``ExportFilter(dataset=...)``).

Each measured step runs in a fresh Python subprocess, so its peak RSS is its own: the peak
(VmHWM, reset just before the step; ``ru_maxrss`` where that is unavailable) is compared with
the process's RSS before the step (interpreter, imports and one open connection). Flat memory
means that growth does not scale with the number of rows: compare ``--rows 100000`` with
``--rows 1000000``.

Goals from the issue, for 1,000,000 rows on a 2-core machine: verify <= 10 s, export <= 20 s,
memory flat. The script asserts nothing; it prints figures.

Run it from the repository root with the core installed::

    python bench/bench_audit.py                          # 1,000,000 rows, fresh SQLite file
    python bench/bench_audit.py --rows 100000
    python bench/bench_audit.py --rows 100000 --db postgresql://postgres@127.0.0.1:5432/test

With ``--db`` pointing at PostgreSQL, a fresh schema ``sluicegate_bench_<pid>`` is created,
used through the URL query ``?options=-csearch_path%3D<schema>`` and dropped at the end
(``--keep`` keeps it, and the temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

STEPS = ("verify", "export-jsonl", "export-csv", "export-reviewer", "export-dataset")
REVIEWERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
FILTER_REVIEWER = "alice"
FILTER_DATASET = "crm.public.customers"


# --------------------------------------------------------------------------- measured steps


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def run_step(step: str, url: str, workdir: str) -> dict[str, Any]:
    """One measured step in this (fresh) process; returns figures as a dict."""
    from sqlalchemy import text

    from sluicegate import audit
    from sluicegate.store import Store

    store = Store(url, auto_migrate=False)
    engine = store.engine
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    # ru_maxrss of a child started by vfork/posix_spawn also counts the parent's peak, so
    # read VmHWM of this process instead, reset to the current RSS just before the step.
    base_now = _status_kib("VmRSS")
    reset = _reset_peak()
    base_peak = (
        _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    out: dict[str, Any] = {"step": step}
    t0 = time.perf_counter()
    if step == "verify":
        result = audit.verify(engine)
        out.update(rows=result.rows, ok=result.ok, detail=str(result))
    else:
        fmt = "csv" if step == "export-csv" else "jsonl"
        flt = None
        if step == "export-reviewer":
            flt = audit.ExportFilter(reviewer=FILTER_REVIEWER)
        elif step == "export-dataset":
            flt = audit.ExportFilter(dataset=FILTER_DATASET)
        path = os.path.join(workdir, f"{step}.{fmt}")
        with open(path, "w", encoding="utf-8", newline="") as fh:
            out["rows"] = audit.export(engine, fh, fmt, flt)
        out["bytes"] = os.path.getsize(path)
        os.unlink(path)
    out["seconds"] = time.perf_counter() - t0
    out["base_rss_kib"] = base_now
    out["peak_rss_kib"] = (
        _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    out["growth_kib"] = out["peak_rss_kib"] - max(base_peak, base_now)
    store.close()
    return out


# --------------------------------------------------------------------------- fill


def _rows(total: int, seed: int):  # type: ignore[no-untyped-def]
    """Yield (seq, ts, kind, request_id, actor, job, datasets, data) for realistic lifecycles."""
    from sluicegate.audit import format_ts
    from sluicegate.model import canonical_json

    rng = random.Random(seed)
    domains = ["crm", "billing", "finance", "hr", "marketing", "sales", "ml", "payments"]
    tables = [
        "customers",
        "contacts",
        "invoices",
        "ledger",
        "employees",
        "orders",
        "events",
        "features",
        "transactions",
        "consents",
    ]
    namespaces = [
        "postgres://prod:5432",
        "snowflake://acme.eu-west-1",
        "s3://acme-lake",
        "bigquery",
    ]
    rules = ["pii-export", "prod-writes", "privilege-change", "finance-deploy", None]
    channels = ["slack", "web", "teams-link", "cli", "api"]
    when = datetime(2025, 1, 1, tzinfo=timezone.utc)
    seq = 0
    while seq < total:
        request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        dom = rng.choice(domains)
        job = f"{dom}_daily.{rng.choice(['export', 'load', 'publish', 'sync'])}"
        ds = [
            f"{rng.choice(namespaces)}::{dom}.public.{rng.choice(tables)}"
            for _ in range(rng.choice([1, 1, 2]))
        ]
        datasets = canonical_json(sorted(set(ds)))
        principal = f"svc-{rng.choice(['airflow', 'dagster', 'prefect'])}"
        rule = rng.choice(rules)
        events: list[tuple[str, str | None, dict[str, Any]]] = [
            (
                "request.created",
                principal,
                {
                    "rule": rule,
                    "required_approvals": rng.choice([1, 2]),
                    "fingerprint": f"sha256:{rng.getrandbits(256):064x}",
                    "policy": f"sha256:{rng.getrandbits(256):064x}",
                    "summary": f"export {dom} rows to partner",
                },
            ),
        ]
        if rule is None:
            events.append(("policy.allowed", None, {"reason": "no rule matched"}))
        else:
            events.append(
                ("notification.sent", None, {"target": "slack:#data-approvals", "status": 200})
            )
            verdict = "approve" if rng.random() < 0.8 else "deny"
            for reviewer in rng.sample(REVIEWERS, rng.choice([1, 2])):
                if rng.random() < 0.05:
                    events.append(
                        (
                            "decision.rejected",
                            reviewer,
                            {"why": "is the job owner", "channel": rng.choice(channels)},
                        )
                    )
                events.append(
                    (
                        "decision.recorded",
                        reviewer,
                        {
                            "verdict": verdict,
                            "channel": rng.choice(channels),
                            "comment": "" if verdict == "approve" else "no ticket referenced",
                        },
                    )
                )
            events.append(
                (
                    f"request.{'approved' if verdict == 'approve' else 'denied'}",
                    None,
                    {"approvals": 1 if verdict == "approve" else 0},
                )
            )
        events.append(("gate.released", principal, {"try_number": rng.randint(1, 3)}))
        for kind, actor, data in events:
            if seq >= total:
                return
            seq += 1
            when += timedelta(milliseconds=rng.randint(5, 4000))
            yield (
                seq,
                format_ts(when),
                kind,
                request_id,
                actor,
                job,
                datasets,
                canonical_json(data),
            )


def fill(url: str, total: int, batch: int, seed: int) -> float:
    """Insert ``total`` chained rows and set the head; returns seconds taken."""
    from sqlalchemy import update

    from sluicegate.audit import GENESIS, row_hash
    from sluicegate.store import Store
    from sluicegate.store.schema import audit_events, audit_head

    store = Store(url)  # runs the migrations
    engine = store.engine
    t0 = time.perf_counter()
    prev = GENESIS
    seq = 0
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as conn:
            conn.execute(audit_events.insert(), chunk)
            conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=prev))
        chunk.clear()

    for seq, ts, kind, request_id, actor, job, datasets, data in _rows(total, seed):
        digest = row_hash(prev, seq, ts, kind, request_id, actor, job, datasets, data)
        chunk.append(
            {
                "seq": seq,
                "ts": ts,
                "kind": kind,
                "request_id": request_id,
                "actor": actor,
                "job": job,
                "datasets": datasets,
                "data": data,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
        if len(chunk) >= batch:
            flush()
            done = seq
            if done % (batch * 20) == 0:
                el = time.perf_counter() - t0
                print(f"  fill: {done:,} rows, {el:.1f} s", file=sys.stderr, flush=True)
    if chunk:
        flush()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE audit_events")
            conn.commit()
    seconds = time.perf_counter() - t0
    store.close()
    return seconds


# --------------------------------------------------------------------------- driver


def _pg_schema_url(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def _pg_admin(url: str, sql: str) -> None:
    from sluicegate.store import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def _fmt_mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="audit rows (1000000)")
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file in a temp dir)")
    ap.add_argument("--batch", type=int, default=10_000, help="rows per insert (10000)")
    ap.add_argument(
        "--steps",
        default=",".join(STEPS),
        help=f"comma-separated steps to measure ({','.join(STEPS)})",
    )
    ap.add_argument("--tmpdir", help="where to make the temp dir (default: system temp)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir / PostgreSQL schema")
    ap.add_argument("--_step", help=argparse.SUPPRESS)
    ap.add_argument("--_url", help=argparse.SUPPRESS)
    ap.add_argument("--_dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._step:  # child: one measured step, figures as JSON on stdout
        print(json.dumps(run_step(args._step, args._url, args._dir)))
        return 0

    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(steps) - set(STEPS)
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    workdir = tempfile.mkdtemp(prefix="sluicegate-bench-", dir=args.tmpdir)
    schema = None
    if args.db is None:
        url = f"sqlite:///{os.path.join(workdir, 'audit.db')}"
        where = f"SQLite file {workdir}/audit.db"
    elif args.db.split(":", 1)[0].startswith("postgres"):
        schema = f"sluicegate_bench_{os.getpid()}"
        _pg_admin(args.db, f'CREATE SCHEMA "{schema}"')
        url = _pg_schema_url(args.db, schema)
        where = f"PostgreSQL, fresh schema {schema}"
    else:
        url = args.db
        where = args.db
    print(f"database: {where}; rows: {args.rows:,}")
    try:
        seconds = fill(url, args.rows, args.batch, args.seed)
        size = ""
        if args.db is None:
            db_bytes = sum(os.path.getsize(os.path.join(workdir, f)) for f in os.listdir(workdir))
            size = f", database {db_bytes / 2**20:.0f} MiB"
        print(
            f"fill (not a goal): {args.rows:,} rows in {seconds:.1f} s "
            f"({args.rows / seconds:,.0f} rows/s){size}"
        )
        print(
            f"\n{'step':17} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'output':>9} "
            f"{'base RSS':>10} {'peak RSS':>10} {'growth':>10}"
        )
        results = {}
        for step in steps:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--_step",
                step,
                "--_url",
                url,
                "--_dir",
                workdir,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(f"{step}: failed\n{proc.stderr}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results[step] = r
            rate = r["rows"] / r["seconds"] if r["seconds"] else 0.0
            if "bytes" in r:
                output = f"{r['bytes'] / 2**20:.0f} MiB"
            else:
                output = "ok" if r["ok"] else "BROKEN"
            print(
                f"{step:17} {r['rows']:>10,} {r['seconds']:>8.2f} {rate:>10,.0f} {output:>9} "
                f"{_fmt_mib(r['base_rss_kib']):>10} {_fmt_mib(r['peak_rss_kib']):>10} "
                f"{_fmt_mib(r['growth_kib']):>10}"
            )
            if step == "verify" and not r["ok"]:
                print(f"  verify: {r['detail']}")
        print(f"\nfilters: reviewer={FILTER_REVIEWER!r}, dataset={FILTER_DATASET!r}")
        scale = args.rows / 1_000_000
        goals = [("verify", 10.0), ("export-jsonl", 20.0), ("export-csv", 20.0)]
        for step, limit in goals:
            if step in results:
                s = results[step]["seconds"]
                est = f" (x{1 / scale:g} rows linear: ~{s / scale:.1f} s)" if scale != 1 else ""
                print(f"goal {step} <= {limit:g} s at 1M rows: {s:.2f} s at {args.rows:,}{est}")
    finally:
        if schema and not args.keep:
            _pg_admin(args.db, f'DROP SCHEMA "{schema}" CASCADE')
        if args.keep:
            print(f"kept {workdir}" + (f" and schema {schema}" if schema else ""))
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
