"""Policy evaluation benchmark: how fast does a 1,000-rule policy decide an action?

What it measures
  1. Load: ``Policy.from_text`` on a generated, realistic policy (default 1,000 rules, ~50
     reviewers in 8 groups, ~30 ``classify`` rules): YAML parse + validation + compilation.
  2. Evaluate: ``Policy.evaluate(action, requester)`` on a few thousand realistic actions
     (15 action kinds, 1-4 datasets with OpenLineage namespaces, some classified, requesters
     with owner / triggered_by), each evaluation timed on its own with ``perf_counter_ns``.
     Figures are printed for all evaluations, for actions that match no rule (they walk every
     candidate rule and end at the policy default: the worst case) and for actions whose
     matching rule is among the last 10% of the file ("late match").

The goal stated in the issue is p99 <= 1 ms per evaluation. The script asserts nothing; it
prints figures.

Run it from the repository root with the core installed::

    python bench/bench_policy.py                      # 1,000 rules, 50,000 evaluations
    python bench/bench_policy.py --n 200000 --rules 2000
    python bench/bench_policy.py --unindexed 1.0      # stress: no rule names a literal kind,
                                                      # so the kind index skips nothing
    python bench/bench_policy.py --dump-policy /tmp/p.yaml   # look at the generated policy
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import yaml

from sluicegate.model import Action, Requester, parse_action
from sluicegate.policy import Policy

KINDS = [
    "export",
    "copy",
    "write",
    "delete",
    "grant",
    "revoke",
    "deploy",
    "read",
    "truncate",
    "drop",
    "merge",
    "backfill",
    "publish",
    "share",
    "train",
]
# How often each kind shows up in rules and in actions: sensitive moves dominate policies.
KIND_WEIGHTS = [14, 8, 14, 7, 5, 3, 6, 10, 3, 3, 6, 4, 5, 5, 4]

GROUPS = [
    "data-stewards",
    "platform",
    "security",
    "finance-data",
    "privacy",
    "ml-platform",
    "sre",
    "compliance",
]
DOMAINS = [
    "crm",
    "billing",
    "finance",
    "hr",
    "marketing",
    "sales",
    "support",
    "product",
    "ml",
    "logistics",
    "risk",
    "payments",
    "identity",
    "inventory",
    "web",
]
SCHEMAS = ["public", "raw", "staging", "mart", "archive", "curated"]
TABLES = [
    "customers",
    "contacts",
    "accounts",
    "invoices",
    "payments",
    "ledger",
    "employees",
    "salaries",
    "orders",
    "order_items",
    "events",
    "sessions",
    "features",
    "embeddings",
    "shipments",
    "transactions",
    "cards",
    "addresses",
    "consents",
    "tickets",
    "campaigns",
]
NAMESPACES = [
    "postgres://prod:5432",
    "postgres://staging:5432",
    "postgres://analytics-replica:5432",
    "snowflake://acme.eu-west-1",
    "bigquery",
    "s3://acme-raw",
    "s3://acme-lake",
    "kafka://broker-1:9092",
    "mysql://billing-db:3306",
    "gs://acme-ml-features",
    "redshift://dwh.acme.internal:5439",
]
CLASSES = ["pii", "secret", "pci", "phi", "prod", "confidential", "gdpr", "financial", "internal"]
ENVS = ["prod", "production", "staging", "qa"]
DESTS = ["s3://partner-*", "sftp://*", "https://api.vendor-*", "gs://external-*"]
ORCHESTRATORS = ["airflow", "dagster", "prefect"]
PEOPLE = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "xavier",
    "yolanda",
    "zoe",
    "amir",
    "bea",
    "chen",
    "dmitri",
    "elif",
    "farah",
    "goran",
    "hana",
    "igor",
    "jana",
    "kofi",
    "lena",
    "mateo",
    "noor",
    "oskar",
    "priya",
    "quinn",
    "rosa",
    "sven",
    "tariq",
    "uma",
    "vera",
    "wen",
    "ximena",
    "yusuf",
    "zara",
    "arjun",
    "bodil",
]


def _pick_kinds(rng: random.Random, k: int) -> list[str]:
    out: list[str] = []
    while len(out) < k:
        kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
        if kind not in out:
            out.append(kind)
    return out


def _dataset_glob(rng: random.Random) -> str:
    dom = rng.choice(DOMAINS)
    shape = rng.random()
    if shape < 0.35:
        glob = f"{dom}.*"
    elif shape < 0.65:
        glob = f"{dom}.{rng.choice(SCHEMAS)}.*"
    elif shape < 0.85:
        glob = f"{dom}.*.{rng.choice(TABLES)}*"
    else:
        glob = f"{dom}.{rng.choice(SCHEMAS)}.{rng.choice(TABLES)}"
    if rng.random() < 0.4:  # pinned to a namespace
        ns = rng.choice(NAMESPACES)
        if rng.random() < 0.3:
            ns = ns.split(":")[0] + "://*"  # any host of that scheme
        glob = f"{ns}::{glob}"
    return glob


def generate_policy(rules: int, unindexed: float, seed: int) -> tuple[str, dict[str, Any]]:
    """A realistic policy as YAML text (and as the dict it was dumped from)."""
    rng = random.Random(seed)
    members: dict[str, list[str]] = {g: [] for g in GROUPS}
    reviewers = []
    for i, person in enumerate(PEOPLE):
        groups = [GROUPS[i % len(GROUPS)]]  # every group gets >= 6 members
        if rng.random() < 0.3:
            extra = rng.choice(GROUPS)
            if extra not in groups:
                groups.append(extra)
        for g in groups:
            members[g].append(person)
        r: dict[str, Any] = {
            "id": person,
            "name": person.title() + " Example",
            "email": f"{person}@acme.example",
            "groups": groups,
        }
        if rng.random() < 0.7:
            r["slack_id"] = f"U0{i:04d}{person.upper()[:4]}"
        reviewers.append(r)

    classify = []
    for _ in range(30):
        globs = [_dataset_glob(rng) for _ in range(rng.randint(1, 3))]
        classify.append({"datasets": globs, "add": rng.sample(CLASSES, rng.randint(1, 2))})

    late_from = int(rules * 0.94)  # the last 6%: rules only "legacy" actions reach
    out_rules = []
    for i in range(rules):
        match: dict[str, Any] = {}
        if i >= late_from:
            k = i - late_from
            match["actions"] = _pick_kinds(rng, rng.randint(1, 2))
            glob = f"legacy_{k}.*"
            if rng.random() < 0.5:
                glob = f"oracle://legacy-erp:1521::{glob}"
            match["datasets"] = [glob]
        else:
            roll = rng.random()
            if roll < unindexed / 2:
                pass  # no action condition: applies to every kind
            elif roll < unindexed:
                match["actions"] = [rng.choice(["ex*", "*copy", "de*", "gr*", "re*"])]
            else:
                match["actions"] = _pick_kinds(rng, rng.choice([1, 1, 2, 2, 3]))
            # 1-3 further conditions, so that no rule matches everything of a kind.
            conds = rng.sample(
                [
                    "datasets",
                    "datasets",
                    "classifications",
                    "classifications",
                    "environments",
                    "namespaces",
                    "destinations",
                    "requester",
                ],
                rng.choice([1, 1, 2, 2, 3]),
            )
            for c in dict.fromkeys(conds):
                if c == "datasets":
                    match["datasets"] = [_dataset_glob(rng) for _ in range(rng.randint(1, 3))]
                elif c == "classifications":
                    match["classifications"] = rng.sample(CLASSES, rng.randint(1, 2))
                elif c == "environments":
                    match["environments"] = rng.sample(ENVS, rng.randint(1, 2))
                elif c == "namespaces":
                    match["namespaces"] = [
                        rng.choice(
                            [
                                "postgres://prod*",
                                "snowflake://*",
                                "s3://acme-*",
                                "redshift://*",
                                "mysql://billing-*",
                            ]
                        )
                    ]
                elif c == "destinations":
                    match["destinations"] = rng.sample(DESTS, rng.randint(1, 2))
                else:
                    req: dict[str, Any] = {}
                    if rng.random() < 0.5:
                        req["job"] = [f"{rng.choice(DOMAINS)}_*"]
                    if rng.random() < 0.5 or not req:
                        req["owner"] = [f"team-{rng.choice(DOMAINS)}"]
                    if rng.random() < 0.3:
                        req["triggered_by"] = ["svc-*"]
                    if rng.random() < 0.3:
                        req["orchestrator"] = [rng.choice(ORCHESTRATORS)]
                    match["requester"] = req
        outcome = rng.choices(["allow", "deny", "require"], [3, 2, 5])[0]
        rule: dict[str, Any] = {"name": f"rule-{i:04d}", "match": match, "outcome": outcome}
        if rng.random() < 0.3:
            rule["description"] = f"Generated rule {i} for the benchmark"
        if outcome == "require":
            groups = rng.sample(GROUPS, rng.choice([1, 1, 2]))
            size = len({p for g in groups for p in members[g]})
            rule["require"] = {
                "approvals": rng.randint(1, min(3, size)),
                "groups": groups,
                "timeout": rng.choice(["30m", "2h", "4h", "24h", "2d"]),
                "on_timeout": rng.choice(["deny", "deny", "allow"]),
                "comment_on_deny": rng.random() < 0.4,
            }
            if rng.random() < 0.5:
                rule["notify"] = [f"slack:#{groups[0]}-approvals"]
        elif outcome == "deny":
            rule["reason"] = "Not allowed by data governance."
        out_rules.append(rule)

    doc = {
        "version": 1,
        "default": "allow",
        "reviewers": reviewers,
        "classify": classify,
        "rules": out_rules,
    }
    return yaml.safe_dump(doc, sort_keys=False, width=120), doc


@dataclass
class Case:
    action: Action
    requester: Requester
    category: str  # "typical", "no-match" or "late" (as generated; the result decides)


def _asset(rng: random.Random, scratch: bool = False, legacy: int | None = None) -> dict[str, Any]:
    if legacy is not None:
        ns = "oracle://legacy-erp:1521"
        name = f"legacy_{legacy}.{rng.choice(SCHEMAS)}.{rng.choice(TABLES)}"
    elif scratch:
        ns = rng.choice(
            ["duckdb:///tmp/scratch.duckdb", "file:///home/scratch", "sqlite:///tmp/work.db"]
        )
        name = f"scratch.tmp_{rng.randint(1, 9999)}"
    else:
        ns = rng.choice(NAMESPACES)
        name = f"{rng.choice(DOMAINS)}.{rng.choice(SCHEMAS)}.{rng.choice(TABLES)}"
        if rng.random() < 0.15:
            name += f"_{rng.randint(2019, 2025)}"
    asset: dict[str, Any] = {"namespace": ns, "name": name}
    if not scratch and legacy is None and rng.random() < 0.25:
        asset["classifications"] = rng.sample(CLASSES, rng.randint(1, 2))
    return asset


def _requester(rng: random.Random, plain: bool) -> Requester:
    orch = rng.choice(ORCHESTRATORS)
    if plain:  # fields no requester rule names
        job, owner = f"adhoc.notebook_{rng.randint(1, 500)}", "contractor-x"
        trig = rng.choice(PEOPLE)
    else:
        dom = rng.choice(DOMAINS)
        job = f"{dom}_daily.{rng.choice(['extract', 'load', 'publish', 'sync'])}"
        owner = f"team-{dom},{rng.choice(PEOPLE)}"
        trig = rng.choice(["svc-scheduler", "svc-backfill", *PEOPLE])
    return Requester(
        orchestrator=orch,
        job=job,
        run_id=f"scheduled__2025-06-{rng.randint(1, 30):02d}",
        step=job.rsplit(".", 1)[-1],
        try_number=rng.randint(1, 3),
        owner=owner,
        triggered_by=trig,
        principal=f"svc-{orch}-prod",
    )


def generate_actions(count: int, seed: int, late_rules: list[list[str]]) -> list[Case]:
    """Realistic actions; ~20% are built to match no rule and ~15% to match a late rule."""
    rng = random.Random(seed + 1)
    cases = []
    for i in range(count):
        roll = rng.random()
        n_in, n_out = rng.choice([(1, 0), (1, 1), (2, 1), (1, 2), (3, 1), (2, 2), (0, 1)])
        if roll < 0.20:
            category = "no-match"
            kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
            inputs = [_asset(rng, scratch=True) for _ in range(n_in)]
            outputs = [_asset(rng, scratch=True) for _ in range(n_out)]
            env, dest, plain = "dev", None, True
        elif roll < 0.35:
            category = "late"
            k = rng.randrange(len(late_rules))
            kind = rng.choice(late_rules[k])
            inputs = [_asset(rng, legacy=k)]
            outputs = [_asset(rng, scratch=True) for _ in range(n_out)]
            env, dest, plain = None, None, True
        else:
            category = "typical"
            kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
            inputs = [_asset(rng) for _ in range(n_in)]
            outputs = [_asset(rng) for _ in range(n_out)]
            env = rng.choice(["prod", "prod", "staging", "dev", None])
            dest = (
                rng.choice(
                    [
                        "s3://partner-acme/drop/",
                        "sftp://files.vendor.example/in",
                        "https://api.vendor-crm.example/v2/import",
                    ]
                )
                if kind in ("export", "copy", "share", "publish") and rng.random() < 0.6
                else None
            )
            plain = False
        data = {
            "kind": kind,
            "summary": f"{kind} {n_in} dataset(s) -> {n_out} dataset(s), step {i}",
            "inputs": inputs,
            "outputs": outputs,
            "destination": dest,
            "environment": env,
            "context": {
                "row_count": rng.randint(0, 5_000_000),
                "query": "SELECT * FROM t WHERE updated_at > :since",
            },
        }
        cases.append(Case(parse_action(data), _requester(rng, plain), category))
    return cases


def pct(sorted_ns: list[int], p: float) -> float:
    """Nearest-rank percentile of sorted nanosecond samples, in microseconds."""
    if not sorted_ns:
        return float("nan")
    k = max(0, min(len(sorted_ns) - 1, round(p / 100 * len(sorted_ns) + 0.5) - 1))
    return sorted_ns[k] / 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", type=int, default=1000, help="rules in the policy (1000)")
    ap.add_argument("--actions", type=int, default=3000, help="distinct actions (3000)")
    ap.add_argument("--n", type=int, default=50_000, help="timed evaluations in all (50000)")
    ap.add_argument(
        "--unindexed",
        type=float,
        default=0.15,
        help="share of rules with no literal action kind (no index help) (0.15)",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-gc", action="store_true", help="disable the GC while timing")
    ap.add_argument("--dump-policy", metavar="PATH", help="also write the generated YAML here")
    args = ap.parse_args(argv)

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )

    text, doc = generate_policy(args.rules, args.unindexed, args.seed)
    if args.dump_policy:
        with open(args.dump_policy, "w", encoding="utf-8") as fh:
            fh.write(text)
    print(
        f"policy: {len(doc['rules'])} rules, {len(doc['reviewers'])} reviewers in "
        f"{len(GROUPS)} groups, {len(doc['classify'])} classify rules, "
        f"{len(text.splitlines())} lines / {len(text) / 1024:.0f} KiB of YAML"
    )

    loads = []
    policy = None
    for _ in range(3):
        t0 = time.perf_counter()
        policy = Policy.from_text(text, source="bench-policy.yaml")
        loads.append(time.perf_counter() - t0)
    assert policy is not None
    from sluicegate.policy.loading import parse_yaml  # from_text's loader (libyaml if present)

    t0 = time.perf_counter()
    parse_yaml(text, "bench-policy.yaml")
    yaml_s = time.perf_counter() - t0
    print(
        f"load (Policy.from_text): median {statistics.median(loads) * 1000:.1f} ms, "
        f"min {min(loads) * 1000:.1f} ms over 3 loads "
        f"(of which parsing the YAML: {yaml_s * 1000:.1f} ms)"
    )

    late_from = int(args.rules * 0.94)
    late_rules = [r["match"]["actions"] for r in doc["rules"][late_from:]]
    t0 = time.perf_counter()
    cases = generate_actions(args.actions, args.seed, late_rules)
    print(f"actions: {len(cases)} built in {time.perf_counter() - t0:.2f} s")

    # Classify each case by what the policy actually does with it (also warms up).
    rule_index = {r["name"]: i for i, r in enumerate(doc["rules"])}
    late_cut = int(args.rules * 0.9)
    by_kind: dict[str, list[Any]] = getattr(policy, "_by_kind", {})
    any_kind: list[Any] = getattr(policy, "_any_kind", [])
    cats: list[str] = []
    scanned: dict[str, list[int]] = {"no-match (default)": [], "late match": [], "all": []}
    outcomes: Counter[str] = Counter()
    for c in cases:
        ev = policy.evaluate(c.action, c.requester)
        outcomes[ev.outcome] += 1
        n_cand = len(by_kind.get(c.action.kind, any_kind))
        if ev.rule is None:
            cat = "no-match (default)"
        elif rule_index[ev.rule] >= late_cut:
            cat = "late match"
        else:
            cat = "other"
        cats.append(cat)
        scanned["all"].append(n_cand)
        if cat in scanned:
            scanned[cat].append(n_cand)
    print(
        f"outcomes: {dict(outcomes)}; by result: no rule matched "
        f"{cats.count('no-match (default)')}, "
        f"matched a rule in the last 10% {cats.count('late match')}, other {cats.count('other')}"
    )
    for cat in ("no-match (default)", "late match"):
        if scanned[cat]:
            print(
                f"  {cat}: candidate rules walked per evaluation (kind index): mean "
                f"{statistics.mean(scanned[cat]):.0f}, max {max(scanned[cat])} of {args.rules}"
            )

    # Timed loop: round-robin over the actions, one perf_counter_ns pair per evaluation.
    samples: dict[str, list[int]] = {"all": [], "no-match (default)": [], "late match": []}
    evaluate = policy.evaluate
    clock = time.perf_counter_ns
    m = len(cases)
    if args.no_gc:
        gc.disable()
    wall0 = time.perf_counter()
    for j in range(args.n):
        i = j % m
        c = cases[i]
        t0 = clock()
        evaluate(c.action, c.requester)
        dt = clock() - t0
        samples["all"].append(dt)
        cat = cats[i]
        if cat != "other":
            samples[cat].append(dt)
    wall = time.perf_counter() - wall0
    gc.enable()

    print(
        f"\n{args.n} evaluations in {wall:.2f} s wall ({args.n / wall:,.0f}/s including "
        f"the timing loop); GC {'off' if args.no_gc else 'on'}"
    )
    print(
        f"{'':20} {'count':>7} {'evals/s':>9} {'p50 µs':>8} {'p95 µs':>8} {'p99 µs':>8} "
        f"{'max µs':>9}"
    )
    for cat, ns in samples.items():
        if not ns:
            print(f"{cat:20} {0:>7}")
            continue
        total = sum(ns) / 1e9
        s = sorted(ns)
        print(
            f"{cat:20} {len(ns):>7} {len(ns) / total:>9,.0f} {pct(s, 50):>8.1f} "
            f"{pct(s, 95):>8.1f} {pct(s, 99):>8.1f} {s[-1] / 1000:>9.1f}"
        )
    worst = max(pct(sorted(ns), 99) for ns in samples.values() if ns)
    print(
        f"\ngoal p99 <= 1000 µs: worst p99 above is {worst:.1f} µs "
        f"({'met' if worst <= 1000 else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
